"""``/v1`` request bodies: checked field by field, then built in openai-python's key order.

Every argument is checked before anything is sent; a bad one raises
:class:`~ollama_async.RequestError` naming the field. Bodies are built as plain dicts in the
order openai-python puts the same keys on the wire, so a call moved over from ``AsyncOpenAI``
sends the same bytes. ``None`` means "not given" (the key is left out).

Where Ollama would silently ignore or drop something, the request is corrected or refused here
instead: ``max_completion_tokens`` is sent as ``max_tokens`` (the only one Ollama reads), ``n > 1``
and a forced ``tool_choice`` are refused (Ollama gives one choice and cannot force a call),
``tool_choice="none"`` leaves the tools out, and Responses features Ollama does not have
(``background``, ``conversation``, ``previous_response_id``) are refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from .._errors import RequestError
from .._payloads import check_model
from .._tools import normalize_tools

__all__ = ["chat_body", "completion_body", "embedding_body", "response_body"]

#: reasoning effort values the server accepts (it maps them onto its think levels)
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max", "ultra")
_IMAGE_PREFIXES = ("data:;base64,", "data:image/jpeg;base64,", "data:image/jpg;base64,",
                   "data:image/png;base64,", "data:image/webp;base64,")


def _put(body: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        body[key] = value


def _number(value: object, field: str, lo: float, hi: float) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(f"must be a number, not {value!r}", field=field)
    if not lo <= value <= hi:
        raise RequestError(f"must be between {lo:g} and {hi:g}, not {value!r}", field=field)
    return value


def _int(value: object, field: str, lo: int, hi: int | None = None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise RequestError(f"must be an integer {bound}, not {value!r}", field=field)
    return value


def _bool(value: object, field: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise RequestError(f"must be true or false, not {value!r}", field=field)


def _str(value: object, field: str, choices: Sequence[str] | None = None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestError(f"must be a string, not {type(value).__name__}", field=field)
    if choices is not None and value not in choices:
        raise RequestError(f"must be one of {', '.join(map(repr, choices))}, not {value!r}", field=field)
    return value


def _mapping(value: object, field: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_none=True, by_alias=True)
    if not isinstance(value, Mapping):
        raise RequestError(f"must be an object (dict), not {type(value).__name__}", field=field)
    return dict(value)


def _stop(value: object) -> str | list[str] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Sequence) and all(isinstance(s, str) for s in value):
        return list(value)
    raise RequestError("must be a string or a list of strings", field="stop")


def _stream_options(value: object, stream: bool) -> dict[str, Any] | None:
    options = _mapping(value, "stream_options")
    if options is None:
        return None
    if not stream:
        raise RequestError("is only allowed with stream=True", field="stream_options")
    _bool(options.get("include_usage"), "stream_options.include_usage")
    return options


def _n(value: object) -> int | None:
    n = _int(value, "n", 1)
    if n is not None and n > 1:
        raise RequestError("Ollama returns one choice per request; send n requests instead", field="n")
    return n


def _extra(body: dict[str, Any], extra_body: Mapping[str, Any] | None) -> dict[str, Any]:
    if extra_body is not None:
        body.update(_mapping(extra_body, "extra_body") or {})
    return body


# -- chat ----------------------------------------------------------------------------------------


def _content_part(part: object, field: str) -> dict[str, Any]:
    data = _mapping(part, field) or {}
    kind = data.get("type")
    if kind == "text":
        if not isinstance(data.get("text"), str):
            raise RequestError("must be a string", field=f"{field}.text")
    elif kind == "image_url":
        image = data.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        if not isinstance(url, str):
            raise RequestError("must be {'url': 'data:image/...;base64,...'}", field=f"{field}.image_url")
        if url.startswith(("http://", "https://")):
            raise RequestError("Ollama takes images as base64 data URLs, not web URLs", field=f"{field}.image_url")
        if not url.startswith(_IMAGE_PREFIXES):
            raise RequestError("must be a data:image/(jpeg|png|webp);base64,... URL", field=f"{field}.image_url")
    elif kind != "input_audio":
        raise RequestError(f"unknown content part type {kind!r} (text, image_url, input_audio)", field=f"{field}.type")
    return data


def _tool_call(call: object, field: str) -> dict[str, Any]:
    data = _mapping(call, field) or {}
    function = _mapping(data.get("function"), f"{field}.function")
    if function is None or not isinstance(function.get("name"), str) or not function["name"]:
        raise RequestError("must be {'name': ..., 'arguments': '<JSON>'}", field=f"{field}.function")
    args = function.get("arguments", "{}")
    if isinstance(args, Mapping):  # an object (the native shape): send it as the JSON text OpenAI uses
        args = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
    if not isinstance(args, str):
        raise RequestError("must be a JSON string", field=f"{field}.function.arguments")
    try:
        json.loads(args or "{}")
    except ValueError:
        raise RequestError("is not valid JSON", field=f"{field}.function.arguments") from None
    out = {**data, "function": {**function, "arguments": args}}
    out.setdefault("type", "function")
    return out


def _message(message: object, index: int) -> dict[str, Any]:
    field = f"messages[{index}]"
    data = _mapping(message, field)
    assert data is not None
    if not isinstance(data.get("role"), str) or not data["role"]:
        raise RequestError("must be a non-empty string ('system', 'user', 'assistant', 'tool')", field=f"{field}.role")
    content = data.get("content")
    calls = data.get("tool_calls")
    if calls is not None:
        if isinstance(calls, (str, bytes, Mapping)) or not isinstance(calls, Sequence):
            raise RequestError("must be a list of tool calls", field=f"{field}.tool_calls")
        data["tool_calls"] = [_tool_call(c, f"{field}.tool_calls[{i}]") for i, c in enumerate(calls)]
    if isinstance(content, list):
        data["content"] = [_content_part(p, f"{field}.content[{i}]") for i, p in enumerate(content)]
    elif content is None:
        if calls is None:
            raise RequestError("must be a string or a list of parts (None only with tool_calls)",
                               field=f"{field}.content")
    elif not isinstance(content, str):
        raise RequestError(f"must be a string or a list of parts, not {type(content).__name__}", field=f"{field}.content")
    return data


def _messages(messages: object) -> list[dict[str, Any]]:
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise RequestError("must be a list of messages", field="messages")
    if not messages:
        raise RequestError("must not be empty", field="messages")
    return [_message(m, i) for i, m in enumerate(messages)]


def _response_format(value: object) -> dict[str, Any] | None:
    if isinstance(value, type) and issubclass(value, BaseModel):
        return {"type": "json_schema",
                "json_schema": {"name": value.__name__, "schema": value.model_json_schema(), "strict": True}}
    fmt = _mapping(value, "response_format")
    if fmt is None:
        return None
    _str(fmt.get("type"), "response_format.type", ("text", "json_object", "json_schema"))
    if fmt["type"] == "json_schema":
        spec = _mapping(fmt.get("json_schema"), "response_format.json_schema")
        if spec is None or _mapping(spec.get("schema"), "response_format.json_schema.schema") is None:
            raise RequestError("must hold the JSON schema under 'schema'", field="response_format.json_schema")
    return fmt


def _tools(tools: object, tool_choice: object) -> list[dict[str, Any]] | None:
    choice = tool_choice
    if choice is not None and choice not in ("auto", "none"):
        raise RequestError("Ollama cannot force a tool call; use 'auto' or 'none'", field="tool_choice")
    if tools is None or choice == "none":
        return None
    return normalize_tools(tools)  # type: ignore[arg-type]


def chat_body(model: object, messages: object, stream: bool, params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``/v1/chat/completions`` body (openai-python's key order)."""
    body: dict[str, Any] = {"model": check_model(model)}
    if stream:
        body["stream"] = True
    body["messages"] = _messages(messages)
    g = params.get
    frequency_penalty, logprobs, max_tokens, max_completion_tokens = (
        g("frequency_penalty"), g("logprobs"), g("max_tokens"), g("max_completion_tokens"))
    n, parallel_tool_calls, presence_penalty, reasoning_effort = (
        g("n"), g("parallel_tool_calls"), g("presence_penalty"), g("reasoning_effort"))
    response_format, seed, stop, stream_options, temperature = (
        g("response_format"), g("seed"), g("stop"), g("stream_options"), g("temperature"))
    tool_choice, tools, top_logprobs, top_p, user = (
        g("tool_choice"), g("tools"), g("top_logprobs"), g("top_p"), g("user"))
    _put(body, "frequency_penalty", _number(frequency_penalty, "frequency_penalty", -2, 2))
    _put(body, "logprobs", _bool(logprobs, "logprobs"))
    limit = _int(max_tokens, "max_tokens", 1)
    if limit is None:
        limit = _int(max_completion_tokens, "max_completion_tokens", 1)
    _put(body, "max_tokens", limit)
    _put(body, "n", _n(n))
    _put(body, "parallel_tool_calls", _bool(parallel_tool_calls, "parallel_tool_calls"))
    _put(body, "presence_penalty", _number(presence_penalty, "presence_penalty", -2, 2))
    _put(body, "reasoning_effort", _str(reasoning_effort, "reasoning_effort", EFFORTS))
    _put(body, "response_format", _response_format(response_format))
    _put(body, "seed", _int(seed, "seed", -(2**63)))
    _put(body, "stop", _stop(stop))
    _put(body, "stream_options", _stream_options(stream_options, stream))
    _put(body, "temperature", _number(temperature, "temperature", 0, 2))
    _put(body, "tool_choice", tool_choice if tools is not None else None)
    _put(body, "tools", _tools(tools, tool_choice))
    _put(body, "top_logprobs", _int(top_logprobs, "top_logprobs", 0, 20))
    _put(body, "top_p", _number(top_p, "top_p", 0, 1))
    _put(body, "user", _str(user, "user"))
    if body.get("tool_choice") == "none":
        del body["tool_choice"]
    return _extra(body, g("extra_body"))


# -- legacy completions -----------------------------------------------------------------------------


def completion_body(model: object, prompt: object, stream: bool, params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``/v1/completions`` body; Ollama takes one prompt string per request."""
    body: dict[str, Any] = {"model": check_model(model)}
    if stream:
        body["stream"] = True
    if not isinstance(prompt, str):
        raise RequestError(f"Ollama takes one prompt string per request, not {type(prompt).__name__}",
                           field="prompt")
    body["prompt"] = prompt
    g = params.get
    frequency_penalty, logprobs, max_tokens, n, presence_penalty = (
        g("frequency_penalty"), g("logprobs"), g("max_tokens"), g("n"), g("presence_penalty"))
    seed, stop, stream_options, suffix, temperature, top_p, user = (
        g("seed"), g("stop"), g("stream_options"), g("suffix"), g("temperature"), g("top_p"), g("user"))
    _put(body, "frequency_penalty", _number(frequency_penalty, "frequency_penalty", -2, 2))
    _put(body, "logprobs", _int(logprobs, "logprobs", 0, 20))
    _put(body, "max_tokens", _int(max_tokens, "max_tokens", 1))
    _put(body, "n", _n(n))
    _put(body, "presence_penalty", _number(presence_penalty, "presence_penalty", -2, 2))
    _put(body, "seed", _int(seed, "seed", -(2**63)))
    _put(body, "stop", _stop(stop))
    _put(body, "stream_options", _stream_options(stream_options, stream))
    _put(body, "suffix", _str(suffix, "suffix"))
    _put(body, "temperature", _number(temperature, "temperature", 0, 2))
    _put(body, "top_p", _number(top_p, "top_p", 0, 1))
    _put(body, "user", _str(user, "user"))
    return _extra(body, g("extra_body"))


# -- embeddings ---------------------------------------------------------------------------------------


def embedding_input(value: object) -> str | list[str]:
    """``input``: one string or a non-empty list of strings (Ollama takes no token arrays)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, Mapping)) or not isinstance(value, Sequence):
        raise RequestError(f"must be a string or a list of strings, not {type(value).__name__}", field="input")
    if not value:
        raise RequestError("must not be an empty list", field="input")
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise RequestError(f"must be a string, not {type(text).__name__}", field=f"input[{i}]")
    return list(value)


def embedding_body(
    model: object, input: object, *, user: object, dimensions: object, encoding_format: str,
    extra_body: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The ``/v1/embeddings`` body (openai-python's key order)."""
    body: dict[str, Any] = {"model": check_model(model), "input": embedding_input(input)}
    _put(body, "user", _str(user, "user"))
    _put(body, "dimensions", _int(dimensions, "dimensions", 1))
    body["encoding_format"] = _str(encoding_format, "encoding_format", ("float", "base64"))
    return _extra(body, extra_body)


# -- responses ----------------------------------------------------------------------------------------


def _response_tools(tools: object) -> list[dict[str, Any]] | None:
    """Responses tools are flat (``{type, name, parameters}``); callables and native tools are
    converted to that shape."""
    if tools is None:
        return None
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise RequestError("must be a list of tools", field="tools")
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        if isinstance(tool, Mapping) and tool.get("type") in ("web_search", "namespace"):
            out.append(dict(tool))
            continue
        if isinstance(tool, Mapping) and "function" not in tool:
            if not isinstance(tool.get("name"), str) or not tool["name"]:
                raise RequestError("must have a non-empty 'name'", field=f"tools[{i}].name")
            out.append({"type": "function", **tool})
            continue
        native = normalize_tools([tool])[0]["function"]  # a callable, a native tool dict or model
        flat = {"type": "function", "name": native["name"]}
        flat.update((k, v) for k, v in native.items() if k in ("description", "parameters"))
        out.append(flat)
    return out


def _refuse(value: object, field: str, why: str) -> None:
    if value:
        raise RequestError(why, field=field)


def response_body(model: object, input: object, stream: bool, params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``/v1/responses`` body (openai-python's key order)."""
    g = params.get
    background, conversation, include, instructions = (
        g("background"), g("conversation"), g("include"), g("instructions"))
    max_output_tokens, metadata, parallel_tool_calls, previous_response_id = (
        g("max_output_tokens"), g("metadata"), g("parallel_tool_calls"), g("previous_response_id"))
    reasoning, store, temperature, text, tool_choice = (
        g("reasoning"), g("store"), g("temperature"), g("text"), g("tool_choice"))
    tools, top_p, truncation, user = g("tools"), g("top_p"), g("truncation"), g("user")
    no_state = "Ollama keeps no state between requests; send the whole conversation as input"
    _refuse(background, "background", "Ollama runs no background responses")
    _refuse(conversation, "conversation", no_state)
    _refuse(previous_response_id, "previous_response_id", no_state)
    body: dict[str, Any] = {"model": check_model(model)}
    if stream:
        body["stream"] = True
    _put(body, "include", include)
    if isinstance(input, str):
        body["input"] = input
    elif isinstance(input, Sequence) and not isinstance(input, (bytes, Mapping)):
        items = [_mapping(item, f"input[{i}]") for i, item in enumerate(input)]
        for i, item in enumerate(items):
            if item is not None and not item.get("type") and not item.get("role"):
                raise RequestError("must have a 'type' (or a 'role' for a message)", field=f"input[{i}]")
        body["input"] = items
    else:
        raise RequestError(f"must be a string or a list of input items, not {type(input).__name__}", field="input")
    _put(body, "instructions", _str(instructions, "instructions"))
    _put(body, "max_output_tokens", _int(max_output_tokens, "max_output_tokens", 1))
    _put(body, "metadata", _mapping(metadata, "metadata"))
    _put(body, "parallel_tool_calls", _bool(parallel_tool_calls, "parallel_tool_calls"))
    effort = _mapping(reasoning, "reasoning")
    if effort is not None:
        _str(effort.get("effort"), "reasoning.effort", EFFORTS)
    _put(body, "reasoning", effort)
    _put(body, "store", _bool(store, "store"))
    _put(body, "temperature", _number(temperature, "temperature", 0, 2))
    fmt = _mapping(text, "text")
    if fmt is not None and fmt.get("format") is not None:
        inner = _mapping(fmt["format"], "text.format") or {}
        _str(inner.get("type"), "text.format.type", ("text", "json_schema", "json_object"))
    _put(body, "text", fmt)
    if tool_choice is not None and tool_choice not in ("auto", "none"):
        raise RequestError("Ollama cannot force a tool call; use 'auto' or 'none'", field="tool_choice")
    _put(body, "tool_choice", tool_choice)
    _put(body, "tools", None if tool_choice == "none" else _response_tools(tools))
    _put(body, "top_p", _number(top_p, "top_p", 0, 1))
    _put(body, "truncation", _str(truncation, "truncation", ("auto", "disabled")))
    _put(body, "user", _str(user, "user"))
    if body.get("tool_choice") == "none":
        del body["tool_choice"]
    return _extra(body, g("extra_body"))

