"""Request-body parity with the official client.

The same call through ``ollama.AsyncClient`` and ``ollama_async.AsyncClient`` must put the same
method, path and JSON bytes on the wire (servers, proxies and recorded fixtures see no
difference). Both clients talk to a respx mock that records what was sent.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import ollama
import pytest
import respx

import ollama_async

from ._official import REPLY, capture

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16



def add_two_numbers(a: int, b: int) -> int:
    """Add two numbers.

    Args:
      a: The first number
      b: The second number
    """
    return a + b


Case = Callable[[Any], Awaitable[Any]]

CASES: dict[str, Case] = {
    "generate-min": lambda c: c.generate("llama3.2", "hi"),
    "generate-all": lambda c: c.generate(
        "llama3.2", "x", "suffix", system="sys", template="t", context=[1, 2, 3], think="high",
        logprobs=True, top_logprobs=3, raw=True, format="json", images=[PNG],
        options={"temperature": 0.5, "seed": 7, "stop": ["\n"], "num_ctx": 4096}, keep_alive=5,
    ),
    "generate-options-model": lambda c: c.generate("m", "hi", options=ollama.Options(temperature=1, top_k=3)),
    "generate-keepalive-str": lambda c: c.generate("m", "é ünïcode", keep_alive="10m", think=False),
    "generate-schema": lambda c: c.generate(
        "m", "hi", format={"type": "object", "properties": {"a": {"type": "string", "default": None}}}
    ),
    "chat-min": lambda c: c.chat("llama3.2", [{"role": "user", "content": "hi"}]),
    "chat-none": lambda c: c.chat("llama3.2"),
    "chat-falsy-dropped": lambda c: c.chat(
        "m", [{"content": "hi", "role": "user", "images": None}, {"role": "assistant", "content": ""}]
    ),
    "chat-message-objects": lambda c: c.chat("m", [ollama.Message(role="user", content="hi")]),
    "chat-images": lambda c: c.chat("m", [{"role": "user", "content": "see", "images": [PNG]}]),
    "chat-tool-callable": lambda c: c.chat("m", [{"role": "user", "content": "add"}], tools=[add_two_numbers]),
    "chat-tool-dict": lambda c: c.chat(
        "m", [{"role": "user", "content": "w"}],
        tools=[{"type": "function", "function": {"name": "weather", "description": "Get weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City"}},
                               "required": ["city"]}}}],
    ),
    "chat-tool-result": lambda c: c.chat(
        "m",
        [
            {"role": "user", "content": "add 1 2"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "add_two_numbers", "arguments": {"a": 1, "b": 2}}}]},
            {"role": "tool", "content": "3", "tool_name": "add_two_numbers"},
        ],
        think=True, logprobs=True, top_logprobs=0, options={"temperature": 0}, keep_alive=-1,
    ),
    "embed-list": lambda c: c.embed("nomic", ["a", "b"], truncate=False, dimensions=64, keep_alive="1h"),
    "embed-str": lambda c: c.embed("nomic", "one"),
    "embed-default": lambda c: c.embed("nomic"),
    "embeddings": lambda c: c.embeddings("nomic", "text", options={"num_ctx": 512}),
    "pull": lambda c: c.pull("llama3.2"),
    "pull-insecure": lambda c: c.pull("llama3.2", insecure=True),
    "push": lambda c: c.push("me/model"),
    "create": lambda c: c.create("mine", from_="llama3.2", system="be brief", parameters={"temperature": 0.2},
                                 template="{{ .Prompt }}", license="MIT",
                                 messages=[{"role": "user", "content": "hi"}]),
    "create-files": lambda c: c.create("mine", files={"model.gguf": "sha256:" + "0" * 64}, quantize="q4_K_M"),
    "show": lambda c: c.show("llama3.2"),
    "list": lambda c: c.list(),
    "ps": lambda c: c.ps(),
    "copy": lambda c: c.copy("a", "b"),
    "delete": lambda c: c.delete("a"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(CASES))
async def test_same_bytes_as_official_client(name: str) -> None:
    case = CASES[name]
    official = await capture(ollama.AsyncClient(host="http://h:1"), case)
    ours = await capture(ollama_async.AsyncClient(host="http://h:1"), case)
    assert ours == official


@pytest.mark.anyio
async def test_content_type_and_accept_headers_match() -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.route(host="h").mock(return_value=httpx.Response(200, json=REPLY))
        await ollama_async.AsyncClient(host="http://h:1").generate("m", "x")
        headers = route.calls.last.request.headers
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert headers["user-agent"].startswith("ollama-async/")


@pytest.mark.anyio
async def test_image_bytes_encode_like_official() -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.route(host="h").mock(return_value=httpx.Response(200, json=REPLY))
        await ollama_async.AsyncClient(host="http://h:1").generate("m", "x", images=[PNG])
        sent = route.calls.last.request.content
    assert base64.b64encode(PNG) in sent
