"""The request side of the ``/v1`` routes: OpenAI request bodies → native ones.

After the real server's ``openai.FromChatRequest`` / ``FromCompleteRequest`` /
``FromResponsesRequest`` and its middleware's checks, with the same error texts (Go binding
errors included), so a ``/v1`` request runs through the native handler it maps to.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from ._requests import ApiError, Fields, check_fields

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


def native_options(body: dict[str, Any], *, top_p_default: float | None, penalties: str) -> dict[str, Any]:
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


def chat_request(body: dict[str, Any]) -> dict[str, Any]:
    check_fields(body, CHAT_FIELDS, "ChatCompletionRequest")
    messages = body.get("messages") or []
    if not messages:
        raise ApiError(400, "[] is too short - 'messages'")
    native: dict[str, Any] = {"model": body.get("model") or "", "messages": _chat_messages(messages),
                              "options": native_options(body, top_p_default=1.0, penalties="given"),
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


def responses_request(body: dict[str, Any]) -> dict[str, Any]:
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
                              "options": native_options(body, top_p_default=None, penalties="given"),
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


def completion_request(body: dict[str, Any]) -> dict[str, Any]:
    """``openai.FromCompleteRequest``: a generate request (penalties always sent, logprobs kept)."""
    check_fields(body, COMPLETION_FIELDS, "CompletionRequest")
    native: dict[str, Any] = {"model": body.get("model") or "", "prompt": body.get("prompt") or "",
                              "options": native_options(body, top_p_default=1.0, penalties="always"),
                              "stream": bool(body.get("stream"))}
    if body.get("suffix"):
        native["suffix"] = body["suffix"]
    if isinstance(body.get("logprobs"), int) and body["logprobs"] > 0:
        native["logprobs"], native["top_logprobs"] = True, body["logprobs"]
    return native


def embedding_request(body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``middleware.EmbeddingsMiddleware``: the embed request, and whether base64 was asked for."""
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
    return native, fmt.lower() == "base64"
