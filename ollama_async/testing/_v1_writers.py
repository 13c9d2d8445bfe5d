"""The response side of the ``/v1`` routes: writers that rewrite native replies into OpenAI's.

A writer stands in for the connection a native handler writes to (``_openai.py`` explains the
design): a whole reply becomes one ``/v1`` JSON body, each NDJSON line of a stream becomes SSE
events, an error becomes ``{"error": {"message", "type", "param", "code"}}``. One class per
route, after the real server's ``middleware`` writers and ``openai`` converters.
"""

from __future__ import annotations

import base64
import importlib
import json
import random
import struct
import time
from datetime import datetime
from typing import Any, cast

from ._http import Connection
from ._json import dumps, loads
from ._requests import ApiError

_np: Any
try:
    _np = importlib.import_module("numpy")
except ImportError:  # pragma: no cover
    _np = None
_orjson: Any
try:
    _orjson = importlib.import_module("orjson")
except ImportError:  # pragma: no cover
    _orjson = None

JSON = "application/json"
SSE = "text/event-stream"


def openai_error(status: int, message: str) -> bytes:
    """The real server's ``openai.NewError`` body (with the encoder's trailing newline)."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return dumps({"error": {"message": message, "type": kind, "param": None, "code": None}}) + b"\n"


def _sorted_dumps(obj: Any) -> bytes:
    """JSON with map keys sorted, as Go marshals ``map[string]any`` (the Responses events)."""
    if _orjson is not None:
        return cast(bytes, _orjson.dumps(obj, option=_orjson.OPT_SORT_KEYS))
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()  # pragma: no cover


def _unix(stamp: object) -> int:
    """Seconds of an RFC 3339 time (``created_at``, ``modified_at``); now when absent."""
    if isinstance(stamp, str) and stamp:
        text = stamp.replace("Z", "+00:00")
        dot = text.find(".")
        if dot > 0:  # Go gives nanoseconds; Python parses up to microseconds
            end = dot + 1
            while end < len(text) and text[end].isdigit():
                end += 1
            text = text[: dot + 1] + text[dot + 1 : end][:6].ljust(6, "0") + text[end:]
        try:
            return int(datetime.fromisoformat(text).timestamp())
        except ValueError:
            pass
    return int(time.time())


def _namespace(name: str) -> str:
    """``model.ParseName(name).Namespace``: ``library`` unless the name has one."""
    parts = name.split(":")[0].split("/")
    return parts[-2] if len(parts) >= 2 else "library"


def _usage(reply: dict[str, Any]) -> dict[str, int]:
    prompt, completion = int(reply.get("prompt_eval_count") or 0), int(reply.get("eval_count") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _tool_calls(calls: Any) -> list[dict[str, Any]]:
    """``openai.ToToolCalls``: arguments become JSON text, the index moves up."""
    out = []
    for call in calls or ():
        fn = call.get("function") or {}
        out.append({"id": call.get("id", ""), "index": fn.get("index", 0), "type": "function",
                    "function": {"name": fn.get("name", ""), "arguments": dumps(fn.get("arguments") or {}).decode()}})
    return out


class Writer:
    """The connection a native handler writes to, rewriting each reply into ``/v1``'s shape.

    Everything not overridden (drain, pending_bytes, closed, abort, ...) is the connection's.
    """

    def __init__(self, conn: Connection, body: dict[str, Any] | None = None, prefix: str = "") -> None:
        self.conn = conn
        self.id = f"{prefix}{random.randrange(999)}"
        options = (body or {}).get("stream_options")
        self.include_usage = isinstance(options, dict) and bool(options.get("include_usage"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    # -- native reply → /v1 reply --------------------------------------------------------------

    def respond(self, status: int, body: bytes, content_type: str | None,
                extra_headers: list[tuple[str, str]] | None = None, *, declared_length: int | None = None) -> None:
        if status != 200:
            try:
                message = str(loads(body).get("error"))
            except (ValueError, AttributeError):
                message = body.decode("utf-8", "replace")
            self.conn.respond(status, openai_error(status, message), JSON, extra_headers)
            return
        try:
            reply = loads(body)
        except ValueError:  # a fault cut or mangled the body: let it through as it is
            self.conn.respond(status, body, content_type, extra_headers, declared_length=declared_length)
            return
        self.conn.respond(status, self.whole(reply), JSON, extra_headers)

    def respond_parts(self, status: int, parts: list[bytes], content_type: str) -> None:
        self.respond(status, b"".join(parts), content_type)

    def start_stream(self, status: int, content_type: str, extra_headers: list[tuple[str, str]] | None = None) -> None:
        self.conn.start_stream(status, SSE, extra_headers)

    def line(self, data: bytes) -> None:
        try:
            chunk = loads(data)
        except ValueError:  # a malformed-line fault
            self.conn.line(data)
            return
        for event in self.events(chunk if isinstance(chunk, dict) else {}):
            self.conn.line(event)

    def error(self, exc: ApiError) -> None:
        if self.conn.started:
            raise exc
        self.conn.respond(exc.status, openai_error(exc.status, exc.message), JSON, exc.headers)

    # -- per route (the defaults pass the native shape through) ----------------------------------

    def whole(self, reply: dict[str, Any]) -> bytes:
        return dumps(reply) + b"\n"

    def events(self, chunk: dict[str, Any]) -> list[bytes]:
        return [_sse(chunk)]


def _sse(obj: Any) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"


DONE = b"data: [DONE]\n\n"


class ChatWriter(Writer):
    """``middleware.ChatWriter``: chat replies → chat.completion / chat.completion.chunk."""

    def __init__(self, conn: Connection, body: dict[str, Any]) -> None:
        super().__init__(conn, body, "chatcmpl-")
        self.first_sent = self.tool_call_sent = False
        self.created = 0

    def whole(self, reply: dict[str, Any]) -> bytes:
        msg = reply.get("message") or {}
        calls = _tool_calls(msg.get("tool_calls"))
        message: dict[str, Any] = {"role": msg.get("role", ""), "content": msg.get("content", "")}
        if msg.get("thinking"):
            message["reasoning"] = msg["thinking"]
        if calls:
            message["tool_calls"] = calls
        reason = reply.get("done_reason") or None
        if reason == "stop" and calls:
            reason = "tool_calls"
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": reason}
        if reply.get("logprobs"):
            choice["logprobs"] = {"content": reply["logprobs"]}
        return dumps({"id": self.id, "object": "chat.completion", "created": _unix(reply.get("created_at")),
                      "model": reply.get("model", ""), "system_fingerprint": "fp_ollama", "choices": [choice],
                      "usage": _usage(reply)}) + b"\n"

    def _chunk(self, reply: dict[str, Any], delta: dict[str, Any], logprobs: bool = True,
               finish: str | None = None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        if logprobs and reply.get("logprobs"):
            choice["logprobs"] = {"content": reply["logprobs"]}
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": reply.get("model", ""), "system_fingerprint": "fp_ollama", "choices": [choice]}

    def events(self, reply: dict[str, Any]) -> list[bytes]:
        if not self.created:
            self.created = _unix(reply.get("created_at"))
        msg = reply.get("message") or {}
        content, thinking, calls = msg.get("content", ""), msg.get("thinking", ""), _tool_calls(msg.get("tool_calls"))
        done = reply.get("done") is True
        out: list[bytes] = []
        empty_trailer = done and self.first_sent and not (content or thinking or calls or reply.get("logprobs"))
        if not empty_trailer:
            role = {} if self.first_sent else {"role": "assistant"}
            if thinking and (content or calls):  # split: reasoning first, then content / tool calls
                out.append(_sse(self._chunk(reply, {**role, "reasoning": thinking})))
                second: dict[str, Any] = {"content": content}
                if calls:
                    second["tool_calls"] = calls
                out.append(_sse(self._chunk(reply, second, logprobs=False)))
            else:
                delta: dict[str, Any] = {**role, "content": content}
                if thinking:
                    delta["reasoning"] = thinking
                if calls:
                    delta["tool_calls"] = calls
                out.append(_sse(self._chunk(reply, delta)))
            self.tool_call_sent = self.tool_call_sent or bool(calls)
            self.first_sent = True
        if done:
            reason = reply.get("done_reason") or "stop"
            if reason == "stop" and self.tool_call_sent:
                reason = "tool_calls"
            finish = self._chunk(reply, {}, finish=reason)
            out.append(_sse(finish))
            if self.include_usage:
                out.append(_sse({**finish, "choices": [], "usage": _usage(reply)}))
            out.append(DONE)
        return out


class CompletionWriter(Writer):
    """``middleware.CompleteWriter``: generate replies → text_completion."""

    def __init__(self, conn: Connection, body: dict[str, Any]) -> None:
        super().__init__(conn, body, "cmpl-")

    def _object(self, reply: dict[str, Any], created: int) -> dict[str, Any]:
        return {"id": self.id, "object": "text_completion", "created": created,
                "choices": [{"text": reply.get("response", ""), "index": 0,
                             "finish_reason": reply.get("done_reason") or None}],
                "model": reply.get("model", ""), "system_fingerprint": "fp_ollama"}

    def whole(self, reply: dict[str, Any]) -> bytes:
        obj = self._object(reply, _unix(reply.get("created_at")))
        ordered = {k: obj[k] for k in ("id", "object", "created", "model", "system_fingerprint", "choices")}
        return dumps({**ordered, "usage": _usage(reply)}) + b"\n"

    def events(self, reply: dict[str, Any]) -> list[bytes]:
        chunk = self._object(reply, int(time.time()))
        if self.include_usage:
            chunk["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        out = [_sse(chunk)]
        if reply.get("done") is True:
            if self.include_usage:
                out.append(_sse({**chunk, "choices": [], "usage": _usage(reply)}))
            out.append(DONE)
        return out


class ItemCache:
    """The ``data[i]`` JSON of a vector up to its index, in base64, by the native reply's vector
    bytes (bounded).

    The native handler hands out the same ``bytes`` object for a text while its own cache holds
    it, so entries are found by identity (no hashing of kilobytes per vector) and checked with
    ``is`` (an id can be reused once that object is gone).
    """

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.items: dict[int, tuple[bytes, bytes]] = {}
        self.size = 0
        self.max_bytes = max_bytes

    def get(self, vec_json: bytes) -> bytes:
        hit = self.items.get(id(vec_json))
        if hit is not None and hit[0] is vec_json:
            return hit[1]
        floats = loads(vec_json)
        raw = (_np.asarray(floats, dtype="<f4").tobytes() if _np is not None
               else struct.pack(f"<{len(floats)}f", *floats))
        item = b'{"object":"embedding","embedding":"' + base64.b64encode(raw) + b'","index":'
        if self.size > self.max_bytes:
            self.items.clear()
            self.size = 0
        self.items[id(vec_json)] = (vec_json, item)
        self.size += len(vec_json) + len(item)
        return item


_FLOAT_ITEM = b'{"object":"embedding","embedding":'


class EmbedWriter(Writer):
    """``middleware.EmbedWriter``: embed replies → an embedding list, floats or base64.

    The native handler's reply parts are ``head, vector, ",", vector, ..., tail``; the vectors'
    JSON is used as it is (floats) or through :class:`ItemCache`, never re-parsed per request,
    and the reply goes out in one join.
    """

    def __init__(self, conn: Connection, model: str, b64: bool, cache: ItemCache) -> None:
        super().__init__(conn)
        self.model, self.b64, self.cache = model, b64, cache

    def respond_parts(self, status: int, parts: list[bytes], content_type: str) -> None:
        if (status == 200 and len(parts) >= 3 and parts[0].endswith(b'"embeddings":[')
                and parts[-1].startswith(b"],") and all(p == b"," for p in parts[2:-1:2])):
            self.conn.respond_parts(200, self._list(parts[1:-1:2], loads(b"{" + parts[-1][2:])), JSON)
        else:
            super().respond_parts(status, parts, content_type)

    def whole(self, reply: dict[str, Any]) -> bytes:
        vectors = reply.get("embeddings")
        if vectors is None:
            return dumps({"object": "", "data": None, "model": "", "usage": {"prompt_tokens": 0, "total_tokens": 0}})
        return b"".join(self._list([dumps(v) for v in vectors], reply))

    def _list(self, vectors: list[bytes], reply: dict[str, Any]) -> list[bytes]:
        parts = [b'{"object":"list","data":' + (b"[" if vectors else b"null")]
        get = self.cache.get
        for i, vec in enumerate(vectors):
            if self.b64:
                parts.append(get(vec))
                parts.append(b"%d}," % i)
            else:
                parts += (_FLOAT_ITEM, vec, b',"index":%d},' % i)
        if vectors:
            parts[-1] = parts[-1][:-1] + b"]"
        tokens = int(reply.get("prompt_eval_count") or 0)
        parts.append(b',"model":' + dumps(self.model)
                     + b',"usage":{"prompt_tokens":%d,"total_tokens":%d}}\n' % (tokens, tokens))
        return parts


class ListWriter(Writer):
    def whole(self, reply: dict[str, Any]) -> bytes:
        data = [{"id": m.get("model") or m.get("name", ""), "object": "model", "created": _unix(m.get("modified_at")),
                 "owned_by": _namespace(m.get("model") or m.get("name", ""))} for m in reply.get("models") or ()]
        return dumps({"object": "list", "data": data or None}) + b"\n"


class RetrieveWriter(Writer):
    def __init__(self, conn: Connection, model: str) -> None:
        super().__init__(conn)
        self.model = model

    def whole(self, reply: dict[str, Any]) -> bytes:
        return dumps({"id": self.model, "object": "model", "created": _unix(reply.get("modified_at")),
                      "owned_by": _namespace(self.model)}) + b"\n"


class ResponsesWriter(Writer):
    """``middleware.ResponsesWriter`` and ``openai.ResponsesStreamConverter``."""

    def __init__(self, conn: Connection, body: dict[str, Any]) -> None:
        super().__init__(conn)
        self.request = body
        self.response_id = f"resp_{random.randrange(999999)}"
        self.item_id = f"msg_{random.randrange(999999)}"
        self.seq = 0
        self.first = True
        self.output_index = 0
        self.text = ""
        self.content_started = self.tool_calls_sent = False
        self.thinking = ""
        self.reasoning_id = ""
        self.completed: list[dict[str, Any]] = []

    def _object(self, status: str, output: list[Any], usage: Any) -> dict[str, Any]:
        req = self.request
        effort = (req.get("reasoning") or {}).get("effort")
        fmt = (req.get("text") or {}).get("format") or {"type": "text"}
        return {
            "id": self.response_id, "object": "response", "created_at": int(time.time()), "completed_at": None,
            "status": status, "incomplete_details": None, "model": req.get("model", ""),
            "previous_response_id": None, "instructions": req.get("instructions") or None, "output": output,
            "error": None, "tools": req.get("tools") or [], "tool_choice": "auto",
            "truncation": req.get("truncation") or "disabled", "parallel_tool_calls": True,
            "text": {"format": fmt}, "top_p": req.get("top_p", 1.0), "presence_penalty": 0,
            "frequency_penalty": 0, "top_logprobs": 0, "temperature": req.get("temperature", 1.0),
            "reasoning": {"effort": effort, "summary": None} if effort else None, "usage": usage,
            "max_output_tokens": req.get("max_output_tokens"), "max_tool_calls": None, "store": False,
            "background": bool(req.get("background")), "service_tier": "default", "metadata": {},
            "safety_identifier": None, "prompt_cache_key": None,
        }

    @staticmethod
    def _usage(reply: dict[str, Any]) -> dict[str, Any]:
        usage = _usage(reply)
        return {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"],
                "total_tokens": usage["total_tokens"], "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0}}

    @staticmethod
    def _message(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
        return {"id": item_id, "type": "message", "status": status, "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}

    def whole(self, reply: dict[str, Any]) -> bytes:
        msg = reply.get("message") or {}
        output: list[dict[str, Any]] = []
        if msg.get("thinking"):
            output.append({"id": f"rs_{self.response_id}", "type": "reasoning",
                           "summary": [{"type": "summary_text", "text": msg["thinking"]}],
                           "encrypted_content": msg["thinking"]})
        calls = _tool_calls(msg.get("tool_calls"))
        for i, tc in enumerate(calls):
            output.append({"id": f"fc_{self.response_id}_{i}", "type": "function_call", "status": "completed",
                           "call_id": tc["id"], "name": tc["function"]["name"],
                           "arguments": tc["function"]["arguments"]})
        if not calls:
            output.append(self._message(self.item_id, msg.get("content", "")))
        obj = self._object("completed", output, self._usage(reply))
        obj["created_at"] = _unix(reply.get("created_at"))
        obj["completed_at"] = int(time.time())
        return dumps(obj) + b"\n"

    def _event(self, kind: str, **data: Any) -> bytes:
        data["type"] = kind
        data["sequence_number"] = self.seq
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + _sorted_dumps(data) + b"\n\n"

    def _finish_reasoning(self) -> list[bytes]:
        if not self.reasoning_id:
            return []
        item = {"id": self.reasoning_id, "type": "reasoning",
                "summary": [{"type": "summary_text", "text": self.thinking}], "encrypted_content": self.thinking}
        self.completed.append(item)
        index, self.reasoning_id, text, self.thinking = self.output_index, "", self.thinking, ""
        self.output_index += 1
        return [self._event("response.reasoning_summary_text.done", item_id=item["id"], output_index=index,
                            summary_index=0, text=text),
                self._event("response.output_item.done", output_index=index, item=item)]

    def events(self, reply: dict[str, Any]) -> list[bytes]:
        msg = reply.get("message") or {}
        out: list[bytes] = []
        if self.first:
            self.first = False
            for kind in ("response.created", "response.in_progress"):
                out.append(self._event(kind, response=self._object("in_progress", [], None)))
        if msg.get("thinking"):
            if not self.reasoning_id:
                self.reasoning_id = f"rs_{random.randrange(999999)}"
                out.append(self._event("response.output_item.added", output_index=self.output_index,
                                       item={"id": self.reasoning_id, "type": "reasoning", "summary": []}))
            self.thinking += msg["thinking"]
            out.append(self._event("response.reasoning_summary_text.delta", item_id=self.reasoning_id,
                                   output_index=self.output_index, summary_index=0, delta=msg["thinking"]))
        calls = _tool_calls(msg.get("tool_calls"))
        if calls:
            out += self._finish_reasoning()
            for i, tc in enumerate(calls):
                index, fc_id = self.output_index + i, f"fc_{random.randrange(999999)}_{i}"
                args = tc["function"]["arguments"]
                item = {"id": fc_id, "type": "function_call", "status": "completed", "call_id": tc["id"],
                        "name": tc["function"]["name"], "arguments": args}
                self.completed.append(item)
                out += [self._event("response.output_item.added", output_index=index,
                                    item={**item, "status": "in_progress", "arguments": ""}),
                        self._event("response.function_call_arguments.delta", item_id=fc_id, output_index=index,
                                    delta=args),
                        self._event("response.function_call_arguments.done", item_id=fc_id, output_index=index,
                                    arguments=args),
                        self._event("response.output_item.done", output_index=index, item=item)]
            self.output_index += len(calls)
            self.tool_calls_sent = True
        elif not self.tool_calls_sent and msg.get("content"):
            out += self._finish_reasoning()
            if not self.content_started:
                self.content_started = True
                out += [self._event("response.output_item.added", output_index=self.output_index,
                                    item={**self._message(self.item_id, "", "in_progress"), "content": []}),
                        self._event("response.content_part.added", item_id=self.item_id,
                                    output_index=self.output_index, content_index=0,
                                    part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})]
            self.text += msg["content"]
            out.append(self._event("response.output_text.delta", item_id=self.item_id, output_index=self.output_index,
                                   content_index=0, delta=msg["content"], logprobs=[]))
        if reply.get("done") is True:
            out += self._complete(reply)
        return out

    def _complete(self, reply: dict[str, Any]) -> list[bytes]:
        out = self._finish_reasoning()
        final = list(self.completed)
        if not self.tool_calls_sent and self.content_started:
            part = {"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}
            item = self._message(self.item_id, self.text)
            final.append(item)
            out += [self._event("response.output_text.done", item_id=self.item_id, output_index=self.output_index,
                                content_index=0, text=self.text, logprobs=[]),
                    self._event("response.content_part.done", item_id=self.item_id, output_index=self.output_index,
                                content_index=0, part=part),
                    self._event("response.output_item.done", output_index=self.output_index, item=item)]
        response = self._object("completed", final, self._usage(reply))
        response["completed_at"] = int(time.time())
        out.append(self._event("response.completed", response=response))
        return out
