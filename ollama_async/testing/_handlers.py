"""Routing and the inference endpoints: generate, chat, embed, embeddings.

:class:`App` is the request handler behind :class:`~._http.HttpServer`; management endpoints
come from :class:`~._management.ManagementHandlers`, shared state from
:class:`~._registry.AppState`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from ._batching import spend
from ._faults import BUSY_TEXT, Fault
from ._generation import INPUT_TOO_LONG, Generation, now_rfc3339, tool_calls
from ._http import JSON_CT, Connection, Request
from ._json import dumps
from ._management import ManagementHandlers
from ._models import ModelSpec, StatsCounter, full_name
from ._openai import v1_model_route, v1_routes
from ._registry import SIMULATED_VERSION, ModelEntry
from ._requests import (
    CHAT_FIELDS,
    EMBED_FIELDS,
    EMBEDDINGS_FIELDS,
    GENERATE_FIELDS,
    ApiError,
    check_fields,
    check_options,
    json_kind,
    load_options,
    parse_keep_alive,
    parse_think,
    read_body,
)
from ._scheduler import QueueFull, Runner
from ._stream import send_reply
from ._text import count_tokens, embedding_floats, seed_key, truncate_tokens, vector_list
from ._vision import image_tokens

NO_EMBEDDINGS = "this model does not support embeddings"

RouteHandler = Callable[[Request, Connection], Awaitable[None]]


class App(ManagementHandlers):
    """All endpoint handlers plus the state they share."""

    def __init__(
        self,
        models: Iterable[ModelSpec],
        *,
        max_queue: int,
        seed: int,
        keep_alive_s: float,
        version: str = SIMULATED_VERSION,
        pullable: Iterable[str | ModelSpec] | None = None,
    ) -> None:
        super().__init__(
            models,
            max_queue=max_queue,
            seed=seed,
            keep_alive_s=keep_alive_s,
            version=version,
            pullable=pullable,
        )
        self.routes: dict[str, dict[str, RouteHandler]] = {
            "/": {"GET": self.root, "HEAD": self.root},
            "/api/version": {"GET": self.version_handler, "HEAD": self.version_handler},
            "/api/generate": {"POST": self.generate},
            "/api/chat": {"POST": self.chat},
            "/api/embed": {"POST": self.embed},
            "/api/embeddings": {"POST": self.embeddings},
            "/api/tags": {"GET": self.tags, "HEAD": self.tags},
            "/api/show": {"POST": self.show},
            "/api/ps": {"GET": self.ps},
            "/api/pull": {"POST": self.pull},
            "/api/push": {"POST": self.push},
            "/api/create": {"POST": self.create},
            "/api/copy": {"POST": self.copy},
            "/api/delete": {"DELETE": self.delete},
        }
        self.routes.update(v1_routes(self))  # OpenAI-compatible, over the handlers above
        self._blob_routes: dict[str, RouteHandler] = {"HEAD": self.head_blob, "POST": self.post_blob}
        self._v1_model_routes = v1_model_route(self)

    # --- dispatch ----------------------------------------------------------------------------

    @staticmethod
    def hash_body(method: str, path: str) -> bool:
        """Blob uploads are hashed as they arrive instead of being kept in memory."""
        return method == "POST" and path.startswith("/api/blobs/")

    async def handle(self, req: Request, conn: Connection) -> None:
        routes = self.routes.get(req.path)
        if routes is None:
            if req.path.startswith("/api/blobs/"):
                routes = self._blob_routes
            elif req.path.startswith("/v1/models/"):
                routes = self._v1_model_routes
            else:
                conn.respond(404, b"404 page not found", "text/plain")
                return
        handler = routes.get(req.method)
        if handler is None:
            conn.respond(405, b"405 method not allowed", "text/plain")
            return
        try:
            await handler(req, conn)
        except ApiError as exc:
            if conn.started:
                raise
            conn.respond(exc.status, dumps({"error": exc.message}), JSON_CT, exc.headers)

    # --- inference helpers ----------------------------------------------------------------------

    def _options(self, body: dict[str, Any], entry: ModelEntry) -> tuple[dict[str, Any], tuple[object, ...]]:
        options = body.get("options")
        if not options:
            return {}, load_options(None, entry.spec.context_length)
        check_options(options)
        return options, load_options(options, entry.spec.context_length)

    async def _get_runner(
        self, entry: ModelEntry, load_opts: tuple[object, ...], keep_alive: float | None
    ) -> Runner:
        runner = entry.runner
        try:
            await self.scheduler.get_runner(runner, load_opts, keep_alive)
        except QueueFull:
            entry.stats.add("rejected_503")
            raise ApiError(503, BUSY_TEXT) from None
        return runner

    def _count_disconnect(self, conn: Connection, stats: StatsCounter) -> None:
        if conn.closed and not conn.shutting_down:
            stats.add("disconnects")

    async def _lookup(
        self, req: Request, conn: Connection, raw_model: str, stream: bool, missing: str
    ) -> tuple[ModelEntry, Fault | None] | None:
        """The model's entry and the fault scripted for this request.

        None when a fault already answered the request; ``missing`` is the 404 text when the
        model is unknown (faults apply to unknown models too, as a proxy in front would).
        """
        key = self.canon(raw_model)
        entry = self.models.get(key)
        fault = self._take_fault(req.path, key)
        if fault is not None and await self._pre_fault(fault, conn, entry.stats if entry else None, stream):
            return None
        if entry is None:
            raise ApiError(404, missing)
        return entry, fault

    @contextlib.asynccontextmanager
    async def _running(
        self, entry: ModelEntry, load_opts: tuple[object, ...], keep_alive: float | None, conn: Connection
    ) -> AsyncIterator[Runner]:
        """The loaded model for the length of a request; a client that leaves is counted."""
        try:
            runner = await self._get_runner(entry, load_opts, keep_alive)
        except asyncio.CancelledError:
            self._count_disconnect(conn, entry.stats)
            raise
        try:
            yield runner
        except asyncio.CancelledError:
            self._count_disconnect(conn, entry.stats)
            raise
        finally:
            self.scheduler.done(runner)

    # --- generate / chat -------------------------------------------------------------------------

    async def generate(self, req: Request, conn: Connection) -> None:
        t0 = time.perf_counter_ns()
        body = read_body(req.body, "GenerateRequest")
        check_fields(body, GENERATE_FIELDS, "GenerateRequest")
        keep_alive = parse_keep_alive(body.get("keep_alive"))
        think = parse_think(body.get("think"))
        top = body.get("top_logprobs") or 0
        if not 0 <= top <= 20:
            raise ApiError(400, "top_logprobs must be between 0 and 20")
        raw_model = body.get("model") or ""
        if not raw_model:
            raise ApiError(404, "model '' not found")
        stream = body.get("stream") is not False
        found = await self._lookup(req, conn, raw_model, stream, f"model '{raw_model}' not found")
        if found is None:
            return
        entry, fault = found
        spec = entry.spec
        if think and not spec.has("thinking"):
            raise ApiError(400, f'"{raw_model}" does not support thinking')
        if body.get("suffix") and not spec.has("insert"):
            raise ApiError(400, f"{full_name(raw_model)} does not support insert")
        if body.get("raw") and (body.get("template") or body.get("system") or body.get("context")):
            raise ApiError(400, "raw mode does not support template, system, or context")
        if not spec.has("completion"):
            raise ApiError(400, f'"{raw_model}" does not support generate')
        options, load_opts = self._options(body, entry)
        prompt = body.get("prompt") or ""
        if not prompt and keep_alive == 0:
            self.scheduler.expire(entry.runner)
            conn.respond(200, _final_reply(raw_model, chat=False, reason="unload"), JSON_CT)
            return
        async with self._running(entry, load_opts, keep_alive, conn) as runner:
            t_loaded = time.perf_counter_ns()
            if not prompt:
                conn.respond(200, _final_reply(raw_model, chat=False, reason="load"), JSON_CT)
                return
            system = body.get("system") or ""
            ctx_in = body.get("context") or []
            prompt_tokens = count_tokens(prompt) + count_tokens(system) + len(ctx_in) + 1
            prompt_tokens += image_tokens(body.get("images"))
            seed = options.get("seed")
            seed = int(seed) if isinstance(seed, (int, float)) else self.seed
            key64 = seed_key(prompt, system, seed)
            plan = Generation(
                self.scheduler, spec, runner, body, options, think, key64, prompt_tokens, top, fault
            )
            await plan.run(
                conn,
                stream,
                raw_model,
                t0,
                t_loaded,
                chat=False,
                prompt_text=system + " " + prompt,
                ctx_in=ctx_in,
            )

    async def chat(self, req: Request, conn: Connection) -> None:
        t0 = time.perf_counter_ns()
        body = read_body(req.body, "ChatRequest")
        check_fields(body, CHAT_FIELDS, "ChatRequest")
        keep_alive = parse_keep_alive(body.get("keep_alive"))
        think = parse_think(body.get("think"))
        top = body.get("top_logprobs") or 0
        if not 0 <= top <= 20:
            raise ApiError(400, "top_logprobs must be between 0 and 20")
        raw_model = body.get("model") or ""
        if not raw_model:
            raise ApiError(400, "model is required")
        messages = body.get("messages") or []
        for msg in messages:
            if not isinstance(msg, dict):
                raise ApiError(
                    400,
                    f"json: cannot unmarshal {json_kind(msg)} into Go struct field ChatRequest.messages of type api.Message",
                )
            content = msg.get("content")
            if content is not None and not isinstance(content, str):
                raise ApiError(
                    400,
                    "json: cannot unmarshal array into Go struct field Message.messages.content of type string",
                )
        tools = body.get("tools") or []
        stream = body.get("stream") is not False
        found = await self._lookup(req, conn, raw_model, stream, f"model '{raw_model}' not found")
        if found is None:
            return
        entry, fault = found
        spec = entry.spec
        if not messages and keep_alive == 0:
            self.scheduler.expire(entry.runner)
            conn.respond(200, _final_reply(raw_model, chat=True, reason="unload"), JSON_CT)
            return
        if think and not spec.has("thinking"):
            raise ApiError(400, f'"{raw_model}" does not support thinking')
        if tools and spec.has("completion") and not spec.has("tools"):
            raise ApiError(400, f"{full_name(raw_model)} does not support tools")
        if not spec.has("completion"):
            raise ApiError(400, f'"{raw_model}" does not support chat')
        options, load_opts = self._options(body, entry)
        async with self._running(entry, load_opts, keep_alive, conn) as runner:
            t_loaded = time.perf_counter_ns()
            if not messages:
                conn.respond(200, _final_reply(raw_model, chat=True, reason="load"), JSON_CT)
                return
            texts = [m.get("content") or "" for m in messages]
            prompt_text = " ".join(texts)
            prompt_tokens = count_tokens(prompt_text) + 4 * len(messages) + 1
            prompt_tokens += sum(image_tokens(m.get("images")) for m in messages)
            last = messages[-1]
            last_text = last.get("content") or ""
            seed = options.get("seed")
            seed = int(seed) if isinstance(seed, (int, float)) else self.seed
            key64 = seed_key(last_text, seed)
            plan = Generation(
                self.scheduler, spec, runner, body, options, think, key64, prompt_tokens, top, fault
            )
            if tools and last.get("role") == "user":
                plan.tool_calls = tool_calls(tools, last_text, seed)
            if spec.prompt_token_ms > 0:  # tokens a slot has cached from this conversation are free
                cached = self.prompt_caches.use(entry.key, spec.slots, entry.stats.loads, messages, "".join(plan.pieces))
                plan.prompt_ms -= spec.prompt_token_ms * min(cached, plan.prompt_tokens - 1)
            await plan.run(
                conn, stream, raw_model, t0, t_loaded, chat=True, prompt_text=prompt_text, ctx_in=[]
            )

    # --- embeddings ------------------------------------------------------------------------------

    async def embed(self, req: Request, conn: Connection) -> None:
        t0 = time.perf_counter_ns()
        body = read_body(req.body, "EmbedRequest")
        check_fields(body, EMBED_FIELDS, "EmbedRequest")
        keep_alive = parse_keep_alive(body.get("keep_alive"))
        raw_input = body.get("input")
        inputs: list[str]
        if raw_input is None:
            inputs = []
        elif isinstance(raw_input, str):
            inputs = [raw_input] if raw_input else []
        elif isinstance(raw_input, list):
            if not all(isinstance(x, str) for x in raw_input):
                raise ApiError(400, "invalid input type")
            inputs = raw_input
        else:
            raise ApiError(400, "invalid input type")
        raw_model = body.get("model") or ""
        if not raw_model:
            raise ApiError(404, "model '' not found")
        found = await self._lookup(req, conn, raw_model, False, f"model '{raw_model}' not found")
        if found is None:
            return
        entry, fault = found
        _, load_opts = self._options(body, entry)
        async with self._running(entry, load_opts, keep_alive, conn) as runner:
            t_loaded = time.perf_counter_ns()
            if not inputs:
                conn.respond(200, dumps({"model": raw_model, "embeddings": []}), JSON_CT)
                return
            spec = entry.spec
            if not spec.has("embedding"):
                raise ApiError(501, NO_EMBEDDINGS)
            ctx = runner.context_length
            truncate = body.get("truncate") is not False
            total_tokens = 0
            texts = inputs
            for i, text in enumerate(inputs):
                n = count_tokens(text)
                if n > ctx:
                    if not truncate:
                        raise ApiError(400, INPUT_TOO_LONG)
                    if texts is inputs:
                        texts = list(inputs)
                    texts[i] = truncate_tokens(text, ctx)
                    n = ctx
                total_tokens += n
            dims = body.get("dimensions") or 0
            slots, since = await self.scheduler.acquire_slot(runner)
            try:
                await spend(runner.batch, spec.embed_ms * len(texts) / 1000.0, since)
            finally:
                self.scheduler.release_slot(runner, slots)
            # The reply is written after the slot is free, as Ollama's server encodes the runner's
            # floats while the runner already computes the next request: the slot is model time only.
            cache = self.embed_cache
            dim = spec.dim
            parts = [b'{"model":' + dumps(raw_model) + b',"embeddings":[']
            comma = b","
            for t in texts:
                parts.append(cache.encoded(t, dim, int(dims)))
                parts.append(comma)
            parts.pop()
            t_end = time.perf_counter_ns()
            parts.append(
                b'],"total_duration":%d,"load_duration":%d,"prompt_eval_count":%d}'
                % (t_end - t0, max(t_loaded - t0, 1), total_tokens)
            )
            if fault is None:
                conn.respond_parts(200, parts, JSON_CT)
            else:
                send_reply(conn, b"".join(parts), fault)

    async def embeddings(self, req: Request, conn: Connection) -> None:
        body = read_body(req.body, "EmbeddingRequest")
        check_fields(body, EMBEDDINGS_FIELDS, "EmbeddingRequest")
        keep_alive = parse_keep_alive(body.get("keep_alive"))
        raw_model = body.get("model") or ""
        if not raw_model:
            raise ApiError(400, "model is required")
        found = await self._lookup(req, conn, raw_model, False, f'model "{raw_model}" not found, try pulling it first')
        if found is None:
            return
        entry, fault = found
        _, load_opts = self._options(body, entry)
        async with self._running(entry, load_opts, keep_alive, conn) as runner:
            prompt = body.get("prompt") or ""
            if not prompt:
                conn.respond(200, b'{"embedding":[]}', JSON_CT)
                return
            spec = entry.spec
            if not spec.has("embedding"):
                raise ApiError(500, NO_EMBEDDINGS)
            if count_tokens(prompt) > runner.context_length:
                raise ApiError(500, INPUT_TOO_LONG)
            slots, since = await self.scheduler.acquire_slot(runner)
            try:
                await spend(runner.batch, spec.embed_ms / 1000.0, since)
            finally:
                self.scheduler.release_slot(runner, slots)
            vec = vector_list(embedding_floats(prompt, spec.dim))
            send_reply(conn, dumps({"embedding": vec}), fault)


def _final_reply(raw_model: str, chat: bool, reason: str) -> bytes:
    """The one reply of a request that only loads ("load") or unloads ("unload") the model."""
    reply: dict[str, Any] = {"model": raw_model, "created_at": now_rfc3339()}
    if chat:
        reply["message"] = {"role": "assistant", "content": ""}
    else:
        reply["response"] = ""
    reply["done"] = True
    reply["done_reason"] = reason
    return dumps(reply)
