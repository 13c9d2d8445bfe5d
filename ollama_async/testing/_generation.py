"""Generate/chat replies: what a request produces (text, thinking, tool calls) and how it streams.

A :class:`Generation` is planned from the request (deterministic tokens, ``num_predict`` and
context limits, ``format``, ``think``, ``logprobs``) and then run while holding one of the
model's slots: prompt latency (``prompt_ms`` + ``prompt_token_ms`` per prompt token), then one
token per ``token_ms``, one NDJSON chunk per token, and a final chunk with the measured metrics
(nanoseconds; zero values omitted, as the real server does). A model with ``contention`` shares
its decode steps among the active requests (:mod:`._batching`), so each one runs slower the
more are active.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ._batching import Batch, sleep_until
from ._faults import Fault
from ._http import NDJSON_CT, Connection
from ._instructions import calls_tool, instructed_json, tool_arguments
from ._json import dumps
from ._models import ModelSpec
from ._requests import ApiError
from ._scheduler import Runner, Scheduler
from ._stream import NdjsonStream, StreamAborted, padding_text, send_reply
from ._text import (
    Rng,
    format_text,
    logprob_entry,
    seed_key,
    split_text,
    text_token_ids,
    token_stream,
)

INPUT_TOO_LONG = "the input length exceeds the context length"

_THINK_SALT = 0x5DEECE66D
_THINK_FACTOR = {True: 0.5, "low": 0.25, "medium": 0.5, "high": 1.0, "max": 2.0}
_sec_cache: list[Any] = [0, ""]


def now_rfc3339() -> str:
    """UTC time with nanoseconds, trailing zeros trimmed, ``Z``: Go's ``RFC3339Nano``."""
    ns = time.time_ns()
    sec, frac = divmod(ns, 1_000_000_000)
    if sec != _sec_cache[0]:
        _sec_cache[0] = sec
        _sec_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    if frac:
        return f"{_sec_cache[1]}.{frac:09d}".rstrip("0") + "Z"
    return f"{_sec_cache[1]}Z"


def tool_calls(tools: list[Any], text: str, seed: int) -> list[dict[str, Any]] | None:
    """Tool calls for every tool the user's message asks for (``_instructions.py``), in tool order."""
    calls: list[dict[str, Any]] = []
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        fn = tool.get("function")
        if not isinstance(fn, dict):
            continue
        name = fn.get("name")
        if not isinstance(name, str) or not name or not calls_tool(name, text):
            continue
        key = seed_key(text, name, seed)
        args = tool_arguments(name, fn.get("parameters"), text, Rng(key))
        call_id = "call_" + format(key & 0xFFFFFFFFFF, "010x")[:8]
        calls.append({"id": call_id, "function": {"index": len(calls), "name": name, "arguments": args}})
    return calls or None


class Generation:
    """What one generate/chat request will emit, and the loop that emits it."""

    __slots__ = (
        "_out",
        "body",
        "done_reason",
        "fault",
        "ids",
        "key",
        "logprobs",
        "pieces",
        "prompt_ms",
        "prompt_tokens",
        "runner",
        "scheduler",
        "spec",
        "think_pieces",
        "tool_calls",
        "top",
    )

    def __init__(
        self,
        scheduler: Scheduler,
        spec: ModelSpec,
        runner: Runner,
        body: dict[str, Any],
        options: dict[str, Any],
        think: bool | str | None,
        key: int,
        prompt_tokens: int,
        top: int,
        fault: Fault | None,
    ) -> None:
        self.scheduler = scheduler
        self.spec = spec
        self.runner = runner
        self.body = body
        self.key = key
        self.top = int(top)
        self.logprobs = bool(body.get("logprobs")) or self.top > 0
        self.fault = fault
        self.tool_calls: list[dict[str, Any]] | None = None
        n = spec.tokens
        fmt = body.get("format")
        if fmt == "json" or isinstance(fmt, dict):
            text = instructed_json(body, key, max(n, 1)) or format_text(fmt, key, max(n, 1))
            self.pieces = split_text(text, max(n, 1))
            self.ids = token_stream(key, len(self.pieces))[1]
        else:
            self.pieces, self.ids = token_stream(key, n)
        if think:
            factor = _THINK_FACTOR.get(think, 0.5)
            self.think_pieces = token_stream(key ^ _THINK_SALT, max(1, int(n * factor)))[0]
        else:
            self.think_pieces = ()
        ctx = runner.context_length
        truncate = body.get("truncate") is not False
        if prompt_tokens > ctx:
            if not truncate:
                raise ApiError(400, INPUT_TOO_LONG)
            prompt_tokens = ctx
        self.prompt_tokens = prompt_tokens
        self.prompt_ms = spec.prompt_ms + spec.prompt_token_ms * prompt_tokens  # a chat's cache may lower it
        self.done_reason = "stop"
        budget: int | None = None
        num_predict = options.get("num_predict")
        if isinstance(num_predict, (int, float)) and not isinstance(num_predict, bool) and num_predict > 0:
            budget = int(num_predict)
        if body.get("shift") is False:
            room = max(ctx - prompt_tokens, 0)
            budget = room if budget is None else min(budget, room)
        total = len(self.think_pieces) + len(self.pieces)
        if budget is not None and budget < total:
            self.done_reason = "length"
            nt = min(budget, len(self.think_pieces))
            self.think_pieces = self.think_pieces[:nt]
            self.pieces = self.pieces[: budget - nt]
            self.ids = self.ids[: budget - nt]

    async def run(
        self,
        conn: Connection,
        stream: bool,
        model: str,
        t0: int,
        t_loaded: int,
        *,
        chat: bool,
        prompt_text: str,
        ctx_in: list[Any],
    ) -> None:
        runner = self.runner
        sched = self.scheduler
        fault = self.fault
        slots, since = await sched.acquire_slot(runner)
        batch = runner.batch
        held = True
        joined = False
        try:
            t_slot = time.perf_counter_ns()
            prompt_s = self.prompt_ms / 1000.0  # spec.prompt_ms + prompt_token_ms per uncached token
            n = len(self.think_pieces) + len(self.pieces)
            hide_content = self.tool_calls is not None
            if batch is not None:
                # Batched decoding: the prompt and every token take steps shared with the others.
                origin = batch.join() + prompt_s
                joined = True
                if stream:
                    await batch.until(origin)
                    t_prompt = time.perf_counter_ns()
                    await self._stream(conn, model, chat, hide_content, batch, origin)
                    t_end = time.perf_counter_ns()
                else:
                    work = prompt_s + n * self.spec.token_ms / 1000.0
                    await batch.until(origin - prompt_s + work)
                    t_end = time.perf_counter_ns()
                    # One wait for the whole reply; the prompt's share of it, in proportion.
                    t_prompt = t_slot + int((t_end - t_slot) * (prompt_s / work)) if work > 0 else t_end
                joined = False
                batch.leave()
            else:
                start = since
                if prompt_s > 0:
                    await sleep_until(start + prompt_s)
                t_prompt = time.perf_counter_ns()
                if stream:
                    await self._stream(conn, model, chat, hide_content, None, 0.0)
                else:
                    await self._pace(start + prompt_s, n)
                t_end = time.perf_counter_ns()
            final = self._final(
                model, chat, stream, prompt_text, ctx_in, t0, t_loaded, t_slot, t_prompt, t_end
            )
            # Free the slot before the last bytes go out, so a client that has its reply never
            # sees the request still counted in flight.
            held = False
            sched.release_slot(runner, slots)
            if stream:
                out = self._out
                try:
                    out.line(dumps(final) + b"\n", final=True)
                except StreamAborted as exc:
                    await out.abort(exc)
                    return
                conn.end_stream()
            else:
                send_reply(conn, dumps(final), fault)
        except StreamAborted as exc:
            await self._out.abort(exc)
        finally:
            if joined and batch is not None:
                batch.leave()
            if held:
                sched.release_slot(runner, slots)

    async def _pace(self, start: float, n: int) -> None:
        """Spend ``token_ms`` per token after ``start`` (loop time) for a non-stream reply."""
        token_ms = self.spec.token_ms
        if token_ms > 0 and n > 0:
            await sleep_until(start + token_ms * n / 1000.0)

    def _long_line(self, model: str, chat: bool) -> Callable[[int], bytes]:
        def make(size: int) -> bytes:
            text = padding_text(size)
            if chat:
                obj: dict[str, Any] = {
                    "model": model,
                    "created_at": now_rfc3339(),
                    "message": {"role": "assistant", "content": text},
                    "done": False,
                }
            else:
                obj = {"model": model, "created_at": now_rfc3339(), "response": text, "done": False}
            return dumps(obj) + b"\n"

        return make

    async def _stream(
        self, conn: Connection, model: str, chat: bool, hide_content: bool, batch: Batch | None, origin: float
    ) -> None:
        """One chunk per token; with ``batch``, token ``i`` is due at ``origin + i * token`` of its work."""
        conn.start_stream(200, NDJSON_CT)
        out = self._out = NdjsonStream(conn, self.fault, self._long_line(model, chat))
        token_s = self.spec.token_ms / 1000.0
        loop = asyncio.get_running_loop()
        start = loop.time()
        logprobs = self.logprobs
        top = self.top
        key = self.key
        i = 0
        events: list[tuple[bool, str]] = [(True, p) for p in self.think_pieces]
        events += [(False, p) for p in self.pieces]
        for thinking, piece in events:
            if batch is not None:
                await batch.until(origin + (i + 1) * token_s)
            elif token_s > 0 and start + (i + 1) * token_s > loop.time():
                await sleep_until(start + (i + 1) * token_s)
            i += 1
            if hide_content and not thinking:
                continue
            if chat:
                msg: dict[str, Any] = (
                    {"role": "assistant", "content": "", "thinking": piece}
                    if thinking
                    else {"role": "assistant", "content": piece}
                )
                obj: dict[str, Any] = {
                    "model": model,
                    "created_at": now_rfc3339(),
                    "message": msg,
                    "done": False,
                }
            elif thinking:
                obj = {
                    "model": model,
                    "created_at": now_rfc3339(),
                    "response": "",
                    "thinking": piece,
                    "done": False,
                }
            else:
                obj = {"model": model, "created_at": now_rfc3339(), "response": piece, "done": False}
            if logprobs:
                obj["logprobs"] = [logprob_entry(piece, key, i, top)]
            out.line(dumps(obj) + b"\n")
            if token_s > 0 or conn.pending_bytes > 65536:
                await conn.drain()

    def _final(
        self,
        model: str,
        chat: bool,
        stream: bool,
        prompt_text: str,
        ctx_in: list[Any],
        t0: int,
        t_loaded: int,
        t_slot: int,
        t_prompt: int,
        t_end: int,
    ) -> dict[str, Any]:
        think_text = "" if stream else "".join(self.think_pieces)
        content = "" if stream or self.tool_calls is not None else "".join(self.pieces)
        fault = self.fault
        if not stream and fault is not None and fault.kind == "long_line":
            content += padding_text(fault.size_bytes)
        obj: dict[str, Any] = {"model": model, "created_at": now_rfc3339()}
        if chat:
            msg: dict[str, Any] = {"role": "assistant", "content": content}
            if think_text:
                msg["thinking"] = think_text
            if self.tool_calls is not None:
                msg["tool_calls"] = self.tool_calls
            obj["message"] = msg
        else:
            obj["response"] = content
            if think_text:
                obj["thinking"] = think_text
        obj["done"] = True
        obj["done_reason"] = self.done_reason
        if not chat and not self.body.get("raw"):
            obj["context"] = (
                [int(x) for x in ctx_in if isinstance(x, int)] + text_token_ids(prompt_text) + list(self.ids)
            )
        eval_count = len(self.think_pieces) + len(self.pieces)
        metrics = (
            ("total_duration", t_end - t0),
            ("load_duration", t_loaded - t0),
            ("prompt_eval_count", self.prompt_tokens),
            ("prompt_eval_duration", t_prompt - t_slot),
            ("eval_count", eval_count),
            ("eval_duration", t_end - t_prompt),
        )
        for name, value in metrics:
            if value > 0:
                obj[name] = value
        if not stream and self.logprobs:
            entries = [
                logprob_entry(p, self.key, i + 1, self.top)
                for i, p in enumerate(self.think_pieces + self.pieces)
            ]
            if entries:
                obj["logprobs"] = entries
        return obj
