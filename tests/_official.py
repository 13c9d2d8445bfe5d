"""What a client puts on the wire for one call, captured with respx.

Used to compare our request bodies with the official ``ollama`` client's, byte for byte.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import ollama
import respx

HOST = "http://h:1"

#: One reply that every endpoint's response model accepts.
REPLY: dict[str, Any] = {
    "model": "m",
    "created_at": "2026-01-01T00:00:00Z",
    "response": "ok",
    "message": {"role": "assistant", "content": "ok"},
    "done": True,
    "embeddings": [[0.5, 0.5]],
    "embedding": [0.5],
    "status": "success",
    "models": [],
    "model_info": {},
}

Call = Callable[[Any], Awaitable[Any]]


async def capture(client: Any, call: Call) -> tuple[str, str, bytes]:
    """Run ``call(client)`` against a mock server; return the request's method, path and body."""
    with respx.mock(assert_all_called=False) as mock:
        route = mock.route(host="h").mock(return_value=httpx.Response(200, json=REPLY))
        await call(client)
        request = route.calls.last.request
        return request.method, request.url.path, request.content


def official_body(call: Call) -> dict[str, Any]:
    """The JSON body the official AsyncClient sends for ``call`` (keys in wire order)."""
    _, _, body = asyncio.run(capture(ollama.AsyncClient(host=HOST), call))
    result: dict[str, Any] = json.loads(body)
    return result
