"""The OpenAI-compatible ``/v1`` routes, built the way the real server builds them.

The real server converts each ``/v1`` request into a native one (``/v1/chat/completions`` →
the chat handler, ``/v1/completions`` → generate, ``/v1/embeddings`` → embed, ``/v1/models`` →
tags/show, ``/v1/responses`` → chat) and wraps the response writer so that every native reply
(or NDJSON line) is rewritten into OpenAI's shape: SSE ``data: {...}`` events ending
``data: [DONE]`` (Responses: ``event:``/``data:`` pairs ending ``response.completed``) and
``{"error": {"message", "type", "param", "code"}}`` error bodies. This module does the same
with a :class:`_Writer` around the connection, so ``/v1`` requests take the same slots, produce
the same text and the same vectors as the native routes, and honour the same faults
(``Simulator.inject(..., path="/v1/chat/completions")``).

Known quirks of the real server are kept: an in-band error after a stream began comes out as an
empty chunk and the stream ends without ``[DONE]``; legacy completions drop logprobs.
"""

from __future__ import annotations

import base64
import importlib
import json
import random
import struct
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

from ._http import Connection, Request
from ._json import dumps, loads
from ._requests import ApiError, Fields, check_fields, read_body

if TYPE_CHECKING:
    from ._handlers import App

__all__ = ["v1_model_route", "v1_routes"]

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
Handler = Callable[[Request, Connection], Awaitable[None]]

_INVALID_EFFORT = (
    'invalid reasoning value: "{}" (must be "minimal", "low", "medium", "high", "xhigh", "ultra", "max", or "none")'
)
_EFFORT = {"": None, "none": False, "minimal": "low", "low": "low", "medium": "medium", "high": "high",
           "max": "max", "xhigh": "max", "ultra": "max"}

CHAT_FIELDS: Fields = {
    "model": ("string", "string"), "messages": ("array", "[]openai.Message"), "stream": ("bool", "bool"),
    "stream_options": ("object", "openai.StreamOptions"), "max_tokens": ("number", "int"),
    "seed": ("number", "int"), "temperature": ("number", "float64"), "frequency_penalty": ("number", "float64"),
    "presence_penalty": ("number", "float64"), "top_p": ("number", "float64"),
    "response_format": ("object", "openai.ResponseFormat"), "tools": ("array", "[]api.Tool"),
    "reasoning": ("object", "openai.Reasoning"), "reasoning_effort": ("string", "string"),
    "logprobs": ("bool", "bool"), "top_logprobs": ("number", "int"),
}
COMPLETION_FIELDS: Fields = {
    "model": ("string", "string"), "prompt": ("string", "string"), "stream": ("bool", "bool"),
    "stream_options": ("object", "openai.StreamOptions"), "max_tokens": ("number", "int"),
    "seed": ("number", "int"), "temperature": ("number", "float32"), "frequency_penalty": ("number", "float32"),
    "presence_penalty": ("number", "float32"), "top_p": ("number", "float32"), "suffix": ("string", "string"),
    "logprobs": ("number", "int"),
}
EMBED_FIELDS: Fields = {"model": ("string", "string"), "dimensions": ("number", "int"),
                        "encoding_format": ("string", "string")}
RESPONSES_FIELDS: Fields = {
    "model": ("string", "string"), "instructions": ("string", "string"), "max_output_tokens": ("number", "int"),
    "temperature": ("number", "float64"), "top_p": ("number", "float64"), "stream": ("bool", "bool"),
    "tools": ("array", "[]openai.ResponsesTool"), "reasoning": ("object", "openai.ResponsesReasoning"),
    "text": ("object", "openai.ResponsesText"), "truncation": ("string", "string"),
}


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


def _go_type(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "float64"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return "[]interface {}" if isinstance(value, list) else "string"


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


def _think(body: dict[str, Any]) -> bool | str | None:
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else body.get("reasoning_effort")
    effort = effort or ""
    if effort not in _EFFORT:
        raise ApiError(400, _INVALID_EFFORT.format(effort))
    return _EFFORT[effort]


def _stops(stop: Any, strict: bool) -> list[str] | None:
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list):
        if strict:
            for s in stop:
                if not isinstance(s, str):
                    raise ApiError(400, f"invalid type for 'stop' field: {_go_type(s)}")
        return [s for s in stop if isinstance(s, str)]
    return None


def _image(url: Any) -> str:
    if not isinstance(url, str):
        raise ApiError(400, "invalid message format")
    if url.startswith(("http://", "https://")):
        raise ApiError(400, "image URLs are not currently supported, please use base64 encoded data instead")
    for prefix in ("data:;base64,", "data:image/jpeg;base64,", "data:image/jpg;base64,", "data:image/png;base64,",
                   "data:image/webp;base64,"):
        if url.startswith(prefix):
            data = url[len(prefix):]
            try:
                base64.b64decode(data, validate=True)
            except ValueError:
                raise ApiError(400, "invalid image input") from None
            return data
    raise ApiError(400, "invalid image input")


def _native_calls(calls: Any) -> list[dict[str, Any]] | None:
    if not calls:
        return None
    out = []
    for call in calls if isinstance(calls, list) else ():
        if not isinstance(call, dict):
            raise ApiError(400, "invalid tool call arguments")
        fn: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
        try:
            args = json.loads(fn.get("arguments") or "")
        except (TypeError, ValueError):
            raise ApiError(400, "invalid tool call arguments") from None
        out.append({"id": call.get("id", ""), "function": {"name": fn.get("name", ""), "arguments": args}})
    return out


def _chat_messages(messages: list[Any]) -> list[dict[str, Any]]:
    """``openai.FromChatRequest``'s message conversion."""
    out: list[dict[str, Any]] = []
    for msg in messages:
        if not isinstance(msg, dict):
            raise ApiError(400, f"json: cannot unmarshal {_go_type(msg)} into Go struct field "
                                "ChatCompletionRequest.messages of type openai.Message")
        role, content, calls = msg.get("role") or "", msg.get("content"), msg.get("tool_calls")
        extra: dict[str, Any] = {}
        if role.lower() == "tool":
            name = msg.get("name") or ""
            if not name and msg.get("tool_call_id"):
                name = next((c["function"].get("name", "") for m in reversed(messages) if isinstance(m, dict)
                             for c in m.get("tool_calls") or () if isinstance(c, dict)
                             and isinstance(c.get("function"), dict) and c.get("id") == msg["tool_call_id"]), "")
            extra = {"tool_name": name, "tool_call_id": msg.get("tool_call_id", "")}
        if isinstance(content, str):
            out.append({"role": role, "content": content, "thinking": msg.get("reasoning", ""),
                        "tool_calls": _native_calls(calls), **extra})
        elif isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text" and isinstance(part.get("text"), str):
                    out.append({"role": role, "content": part["text"]})
                elif kind == "image_url":
                    image = part.get("image_url")
                    out.append({"role": role, "images": [_image(image.get("url") if isinstance(image, dict) else image)]})
                else:
                    raise ApiError(400, "invalid message format")
            if out and calls:
                out[-1].update(tool_calls=_native_calls(calls), **extra)
        elif calls is None:
            raise ApiError(400, f"invalid message content type: {_go_type(content)}")
        else:
            out.append({"role": role, "thinking": msg.get("reasoning", ""), "tool_calls": _native_calls(calls),
                        "tool_call_id": msg.get("tool_call_id", "")})
    return [{k: v for k, v in m.items() if v not in (None, "")} for m in out]


def _options(body: dict[str, Any], *, top_p_default: float | None, penalties: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    stop = _stops(body.get("stop"), strict=penalties == "always")
    if stop is not None:
        options["stop"] = stop
    for src, dst in (("max_tokens", "num_predict"), ("max_output_tokens", "num_predict")):
        if body.get(src) is not None:
            options[dst] = body[src]
    options["temperature"] = body["temperature"] if body.get("temperature") is not None else 1.0
    if body.get("seed") is not None:
        options["seed"] = body["seed"]
    for key in ("frequency_penalty", "presence_penalty"):
        if body.get(key) is not None or penalties == "always":
            options[key] = body.get(key) or 0.0
    if body.get("top_p"):
        options["top_p"] = body["top_p"]
    elif top_p_default is not None:
        options["top_p"] = top_p_default
    return options


def _chat_request(body: dict[str, Any]) -> dict[str, Any]:
    check_fields(body, CHAT_FIELDS, "ChatCompletionRequest")
    messages = body.get("messages") or []
    if not messages:
        raise ApiError(400, "[] is too short - 'messages'")
    native: dict[str, Any] = {"model": body.get("model") or "", "messages": _chat_messages(messages),
                              "options": _options(body, top_p_default=1.0, penalties="given"),
                              "stream": bool(body.get("stream"))}
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        kind = str(fmt.get("type") or "").strip().lower()
        if kind == "json_object":
            native["format"] = "json"
        elif kind == "json_schema" and isinstance(fmt.get("json_schema"), dict) and fmt["json_schema"].get("schema"):
            native["format"] = fmt["json_schema"]["schema"]
    if body.get("tools"):
        native["tools"] = body["tools"]
    think = _think(body)
    if think is not None:
        native["think"] = think
    if body.get("logprobs"):
        native["logprobs"] = True
    if body.get("top_logprobs"):
        native["top_logprobs"] = body["top_logprobs"]
    return native


class _Writer:
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


class _ChatWriter(_Writer):
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


class _CompletionWriter(_Writer):
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


class _ItemCache:
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


class _EmbedWriter(_Writer):
    """``middleware.EmbedWriter``: embed replies → an embedding list, floats or base64.

    The native handler's reply parts are ``head, vector, ",", vector, ..., tail``; the vectors'
    JSON is used as it is (floats) or through :class:`_ItemCache`, never re-parsed per request,
    and the reply goes out in one join.
    """

    def __init__(self, conn: Connection, model: str, b64: bool, cache: _ItemCache) -> None:
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


class _ListWriter(_Writer):
    def whole(self, reply: dict[str, Any]) -> bytes:
        data = [{"id": m.get("model") or m.get("name", ""), "object": "model", "created": _unix(m.get("modified_at")),
                 "owned_by": _namespace(m.get("model") or m.get("name", ""))} for m in reply.get("models") or ()]
        return dumps({"object": "list", "data": data or None}) + b"\n"


class _RetrieveWriter(_Writer):
    def __init__(self, conn: Connection, model: str) -> None:
        super().__init__(conn)
        self.model = model

    def whole(self, reply: dict[str, Any]) -> bytes:
        return dumps({"id": self.model, "object": "model", "created": _unix(reply.get("modified_at")),
                      "owned_by": _namespace(self.model)}) + b"\n"


# -- responses --------------------------------------------------------------------------------------


def _responses_request(body: dict[str, Any]) -> dict[str, Any]:
    """``openai.FromResponsesRequest`` (messages, tools, options, format, think)."""
    check_fields(body, RESPONSES_FIELDS, "ResponsesRequest")
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    items = body.get("input")
    if isinstance(items, str):
        if items:
            messages.append({"role": "user", "content": items})
    elif isinstance(items, list):
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ApiError(400, f"input[{i}]: json: cannot unmarshal {_go_type(item)} into Go value")
            kind = item.get("type") or ("message" if item.get("role") else "")
            if kind == "message":
                content = item.get("content")
                text = content if isinstance(content, str) else "".join(
                    c.get("text", "") for c in content or () if isinstance(c, dict))
                messages.append({"role": item.get("role", ""), "content": text})
            elif kind == "function_call":
                try:
                    args = json.loads(item.get("arguments") or "{}")
                except ValueError as exc:
                    raise ApiError(400, f"failed to parse function call arguments: {exc}") from None
                call = {"id": item.get("call_id", ""), "function": {"name": item.get("name", ""), "arguments": args}}
                if messages and messages[-1]["role"] == "assistant":
                    messages[-1].setdefault("tool_calls", []).append(call)
                else:
                    messages.append({"role": "assistant", "tool_calls": [call]})
            elif kind == "function_call_output":
                messages.append({"role": "tool", "content": str(item.get("output", "")),
                                 "tool_call_id": item.get("call_id", "")})
            elif kind not in ("reasoning", "web_search_call"):
                what = "input item missing required 'type' field" if not kind else f'unknown input item type: "{kind}"'
                raise ApiError(400, f"input[{i}]: {what}")
    elif items is not None:
        raise ApiError(400, "input must be a string or array")
    native: dict[str, Any] = {"model": body.get("model") or "", "messages": messages,
                              "options": _options(body, top_p_default=None, penalties="given"),
                              "stream": bool(body.get("stream"))}
    tools = [{"type": t.get("type"), "function": {"name": t.get("name", ""), "description": t.get("description") or "",
                                                   "parameters": t.get("parameters") or {}}}
             for t in body.get("tools") or () if isinstance(t, dict)]
    if tools:
        native["tools"] = tools
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and fmt.get("schema") is not None:
        native["format"] = fmt["schema"]
    think = _EFFORT.get(str((body.get("reasoning") or {}).get("effort") or ""), "bad")
    if think == "bad":
        raise ApiError(400, _INVALID_EFFORT.format(body["reasoning"]["effort"]))
    if think is not None:
        native["think"] = think
    return native


class _ResponsesWriter(_Writer):
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


# -- the routes ---------------------------------------------------------------------------------------


def _rebody(req: Request, native: dict[str, Any]) -> Request:
    """The request as the native handler sees it: same path (faults match ``/v1/...``), new body."""
    req.body = dumps(native)
    return req


def v1_routes(app: App) -> dict[str, dict[str, Handler]]:
    """The ``/v1`` routes of ``app``, to merge into its route table."""
    cache = _ItemCache()

    async def run(writer: _Writer, handler: Handler, req: Request) -> None:
        try:
            await handler(req, cast(Connection, writer))
        except ApiError as exc:
            writer.error(exc)

    def route(make: Callable[[Request, Connection, dict[str, Any]], tuple[_Writer, Handler, dict[str, Any]]],
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

    def chat(req: Request, conn: Connection, body: dict[str, Any]) -> tuple[_Writer, Handler, dict[str, Any]]:
        return _ChatWriter(conn, body), app.chat, _chat_request(body)

    def completions(req: Request, conn: Connection, body: dict[str, Any]) -> tuple[_Writer, Handler, dict[str, Any]]:
        check_fields(body, COMPLETION_FIELDS, "CompletionRequest")
        native: dict[str, Any] = {"model": body.get("model") or "", "prompt": body.get("prompt") or "",
                                  "options": _options(body, top_p_default=1.0, penalties="always"),
                                  "stream": bool(body.get("stream"))}
        if body.get("suffix"):
            native["suffix"] = body["suffix"]
        if isinstance(body.get("logprobs"), int) and body["logprobs"] > 0:
            native["logprobs"], native["top_logprobs"] = True, body["logprobs"]
        return _CompletionWriter(conn, body), app.generate, native

    def embeddings(req: Request, conn: Connection, body: dict[str, Any]) -> tuple[_Writer, Handler, dict[str, Any]]:
        check_fields(body, EMBED_FIELDS, "EmbedRequest")
        fmt = body.get("encoding_format") or ""
        if fmt and fmt.lower() not in ("float", "base64"):
            raise ApiError(400, f"Invalid value for 'encoding_format' = {fmt}. Supported values: ['float', 'base64'].")
        value = body.get("input")
        if value == "":
            value = [""]
        if value is None or value == []:
            raise ApiError(400, "invalid input")
        native = {"model": body.get("model") or "", "input": value}
        if body.get("dimensions"):
            native["dimensions"] = body["dimensions"]
        writer = _EmbedWriter(conn, body.get("model") or "", fmt.lower() == "base64", cache)
        return writer, app.embed, native

    def responses(req: Request, conn: Connection, body: dict[str, Any]) -> tuple[_Writer, Handler, dict[str, Any]]:
        return _ResponsesWriter(conn, body), app.chat, _responses_request(body)

    async def models(req: Request, conn: Connection) -> None:
        await run(_ListWriter(conn), app.tags, req)

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
        writer = _RetrieveWriter(conn, name)
        try:
            await app.show(_rebody(req, {"model": name}), cast(Connection, writer))
        except ApiError as exc:
            writer.error(exc)

    return {"GET": retrieve}
