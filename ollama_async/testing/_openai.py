"""The OpenAI-compatible ``/v1`` routes, built the way the real server builds them.

The real server converts each ``/v1`` request into a native one (``/v1/chat/completions`` →
the chat handler, ``/v1/completions`` → generate, ``/v1/embeddings`` → embed, ``/v1/models`` →
tags/show, ``/v1/responses`` → chat) and wraps the response writer so that every native reply
(or NDJSON line) is rewritten into OpenAI's shape: SSE ``data: {...}`` events ending
``data: [DONE]`` (Responses: ``event:``/``data:`` pairs ending ``response.completed``) and
``{"error": {"message", "type", "param", "code"}}`` error bodies. This module does the same:
it registers the routes; ``_v1_requests.py`` converts the request bodies and ``_v1_writers.py``
holds the writers that stand in for the connection. So ``/v1`` requests take the same slots,
produce the same text and the same vectors as the native routes, and honour the same faults
(``Simulator.inject(..., path="/v1/chat/completions")``).

Known quirks of the real server are kept: an in-band error after a stream began comes out as an
empty chunk and the stream ends without ``[DONE]``; legacy completions drop logprobs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

from ._http import Connection, Request
from ._json import dumps
from ._requests import ApiError, read_body
from ._v1_requests import chat_request, completion_request, embedding_request, responses_request
from ._v1_writers import (
    JSON,
    ChatWriter,
    CompletionWriter,
    EmbedWriter,
    ItemCache,
    ListWriter,
    ResponsesWriter,
    RetrieveWriter,
    Writer,
    openai_error,
)

if TYPE_CHECKING:
    from ._handlers import App

__all__ = ["v1_model_route", "v1_routes"]

Handler = Callable[[Request, Connection], Awaitable[None]]


def _rebody(req: Request, native: dict[str, Any]) -> Request:
    """The request as the native handler sees it: same path (faults match ``/v1/...``), new body."""
    req.body = dumps(native)
    return req


def v1_routes(app: App) -> dict[str, dict[str, Handler]]:
    """The ``/v1`` routes of ``app``, to merge into its route table."""
    cache = ItemCache()

    async def run(writer: Writer, handler: Handler, req: Request) -> None:
        try:
            await handler(req, cast(Connection, writer))
        except ApiError as exc:
            writer.error(exc)

    def route(make: Callable[[Request, Connection, dict[str, Any]], tuple[Writer, Handler, dict[str, Any]]],
              struct_name: str) -> Handler:
        async def handle(req: Request, conn: Connection) -> None:
            try:
                body = read_body(req.body, struct_name)
                writer, handler, native = make(req, conn, body)
            except ApiError as exc:
                conn.respond(exc.status, openai_error(exc.status, exc.message), JSON, exc.headers)
                return
            await run(writer, handler, _rebody(req, native))

        return handle

    def chat(req: Request, conn: Connection, body: dict[str, Any]) -> tuple[Writer, Handler, dict[str, Any]]:
        return ChatWriter(conn, body), app.chat, chat_request(body)

    def completions(req: Request, conn: Connection, body: dict[str, Any]) -> tuple[Writer, Handler, dict[str, Any]]:
        return CompletionWriter(conn, body), app.generate, completion_request(body)

    def embeddings(req: Request, conn: Connection, body: dict[str, Any]) -> tuple[Writer, Handler, dict[str, Any]]:
        native, b64 = embedding_request(body)
        return EmbedWriter(conn, body.get("model") or "", b64, cache), app.embed, native

    def responses(req: Request, conn: Connection, body: dict[str, Any]) -> tuple[Writer, Handler, dict[str, Any]]:
        return ResponsesWriter(conn, body), app.chat, responses_request(body)

    async def models(req: Request, conn: Connection) -> None:
        await run(ListWriter(conn), app.tags, req)

    return {
        "/v1/chat/completions": {"POST": route(chat, "ChatCompletionRequest")},
        "/v1/completions": {"POST": route(completions, "CompletionRequest")},
        "/v1/embeddings": {"POST": route(embeddings, "EmbedRequest")},
        "/v1/responses": {"POST": route(responses, "ResponsesRequest")},
        "/v1/models": {"GET": models},
    }


def v1_model_route(app: App) -> dict[str, Handler]:
    """``GET /v1/models/{model}`` (the show handler, its reply rewritten)."""

    async def retrieve(req: Request, conn: Connection) -> None:
        name = unquote(req.path[len("/v1/models/"):])
        writer = RetrieveWriter(conn, name)
        try:
            await app.show(_rebody(req, {"model": name}), cast(Connection, writer))
        except ApiError as exc:
            writer.error(exc)

    return {"GET": retrieve}
