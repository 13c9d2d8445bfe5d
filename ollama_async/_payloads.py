"""Request bodies: validated, and byte-identical to the official client's for the same call.

The official client builds a pydantic request model and dumps it with ``exclude_none``; httpx
then serialises it compactly. Servers, proxies and recorded fixtures therefore see keys in the
order of the official models' fields. We build the same dicts directly (no model construction on
the hot path) in that order, and check every argument first, so bad input fails here with a
:class:`~ollama_async.RequestError` that names the field, before anything is sent.

Where the official client loses information we keep it (unknown message keys, tool call ids,
nested tool schemas): the README lists each such difference.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from ._errors import RequestError
from ._format import normalize_format
from ._images import encode_images
from ._tools import normalize_tools

__all__ = [
    "chat_body",
    "check_model",
    "create_body",
    "dumps",
    "embed_body",
    "embeddings_body",
    "generate_body",
    "keep_alive_value",
    "options_value",
]

_INT_OPTIONS = frozenset(
    "num_ctx num_batch num_gpu main_gpu num_thread num_keep seed num_predict top_k repeat_last_n mirostat".split()
)
_FLOAT_OPTIONS = frozenset(
    "top_p tfs_z typical_p min_p temperature repeat_penalty presence_penalty frequency_penalty "
    "mirostat_tau mirostat_eta".split()
)
_BOOL_OPTIONS = frozenset(
    "numa low_vram f16_kv logits_all vocab_only use_mmap use_mlock embedding_only penalize_newline".split()
)
_THINK_LEVELS = ("low", "medium", "high", "max")
_DURATION = re.compile(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$")
_MESSAGE_KEYS = ("role", "content", "thinking", "images", "tool_name", "tool_calls")


def _default(obj: Any) -> Any:
    """JSON fallback for numpy scalars and arrays (``.item()``/``.tolist()``)."""
    for attr in ("tolist", "item"):
        method = getattr(obj, attr, None)
        if callable(method):
            return method()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def dumps(body: Mapping[str, Any]) -> bytes:
    """Serialise exactly as httpx's ``json=`` does (compact, UTF-8, no NaN)."""
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_default).encode()
    except (TypeError, ValueError) as exc:
        raise RequestError(f"request body is not valid JSON: {exc}", field="body") from None


def check_model(model: object, field: str = "model") -> str:
    if not isinstance(model, str):
        raise RequestError(f"must be a model name string, not {type(model).__name__}", field=field)
    if not model or model != model.strip() or any(c.isspace() for c in model):
        raise RequestError(f"invalid model name {model!r} (expected [host/][namespace/]model[:tag])", field=field)
    return model


def keep_alive_value(keep_alive: object) -> float | str | None:
    """A number of seconds (sent as a float, as the official client does) or a Go duration."""
    if keep_alive is None:
        return None
    if isinstance(keep_alive, bool):
        raise RequestError("must be seconds (a number) or a duration string like '5m'", field="keep_alive")
    if isinstance(keep_alive, (int, float)):
        if not math.isfinite(keep_alive):
            raise RequestError(f"must be finite, not {keep_alive!r}", field="keep_alive")
        return float(keep_alive)
    if isinstance(keep_alive, str):
        if keep_alive == "0" or _DURATION.match(keep_alive):
            return keep_alive
        raise RequestError(
            f"{keep_alive!r} is not a duration: give a number of seconds or a string with a unit "
            "('30s', '5m', '1h', '-1m' for forever); the server refuses a bare number string",
            field="keep_alive",
        )
    raise RequestError(f"must be a number or a duration string, not {type(keep_alive).__name__}", field="keep_alive")


def options_value(options: object, field: str = "options") -> dict[str, Any] | None:
    """Options as sent: a mapping as given (the server ignores unknown keys), a model dumped.

    Known keys are type-checked, since a wrongly typed option is an opaque HTTP 500 on the server.
    """
    if options is None:
        return None
    if isinstance(options, BaseModel):
        return options.model_dump(exclude_none=True)
    if not isinstance(options, Mapping):
        raise RequestError(f"must be a dict or Options, not {type(options).__name__}", field=field)
    for key, value in options.items():
        if value is None:
            continue
        where = f"{field}.{key}"
        if key in _INT_OPTIONS:
            if isinstance(value, bool) or not (
                isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            ):
                raise RequestError(f"must be an integer, not {value!r}", field=where)
        elif key in _FLOAT_OPTIONS:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise RequestError(f"must be a finite number, not {value!r}", field=where)
        elif key in _BOOL_OPTIONS:
            if not isinstance(value, bool):
                raise RequestError(f"must be true or false, not {value!r}", field=where)
        elif key == "stop" and (
            isinstance(value, (str, bytes))
            or not isinstance(value, Sequence)
            or not all(isinstance(s, str) for s in value)
        ):
            raise RequestError(f"must be a list of strings (e.g. ['\\n']), not {value!r}", field=where)
    return dict(options)


def _think(think: object) -> bool | str | None:
    if think is None or isinstance(think, bool):
        return think
    if isinstance(think, str) and think in _THINK_LEVELS:
        return think
    raise RequestError(f"must be true, false or one of {', '.join(_THINK_LEVELS)}; got {think!r}", field="think")


def _top_logprobs(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 20:
        raise RequestError(f"must be an integer from 0 to 20, not {value!r}", field="top_logprobs")
    return value


def _opt_str(value: object, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise RequestError(f"must be a string, not {type(value).__name__}", field=field)


def _opt_bool(value: object, field: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise RequestError(f"must be true or false, not {value!r}", field=field)


def _opt_int(value: object, field: str, minimum: int = 1) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RequestError(f"must be an integer >= {minimum}, not {value!r}", field=field)
    return value


def _context(context: object) -> list[int] | None:
    if context is None:
        return None
    if isinstance(context, (str, bytes)) or not isinstance(context, Sequence):
        raise RequestError("must be a list of token ids (ints)", field="context")
    out = list(context)
    for i, token in enumerate(out):
        if isinstance(token, bool) or not isinstance(token, int):
            raise RequestError(f"must be an int token id, not {token!r}", field=f"context[{i}]")
    return out


def _plain(value: Any) -> Any:
    return value.model_dump(exclude_none=True, by_alias=True) if isinstance(value, BaseModel) else value


def _tool_calls(calls: object, field: str) -> list[dict[str, Any]]:
    if isinstance(calls, (str, bytes)) or not isinstance(calls, Sequence):
        raise RequestError("must be a list of tool calls", field=field)
    out = []
    for i, call in enumerate(calls):
        call = _plain(call)
        where = f"{field}[{i}]"
        if not isinstance(call, Mapping) or not isinstance(call.get("function"), Mapping):
            raise RequestError("must be {'function': {'name': ..., 'arguments': {...}}}", field=where)
        function = dict(call["function"])
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise RequestError("must be a non-empty string", field=f"{where}.function.name")
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):  # OpenAI-style JSON text: accept it, send an object
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError:
                raise RequestError("is a string but not JSON", field=f"{where}.function.arguments") from None
        if not isinstance(arguments, Mapping):
            raise RequestError("must be an object", field=f"{where}.function.arguments")
        fn: dict[str, Any] = {"name": name, "arguments": dict(arguments)}
        fn.update((k, v) for k, v in function.items() if k not in fn and v is not None)
        item: dict[str, Any] = {"function": fn}
        item.update((k, v) for k, v in call.items() if k != "function" and v is not None)
        out.append(item)
    return out


def message_value(message: object, index: int) -> dict[str, Any]:
    """One chat message, as the official client sends it (falsy fields dropped, fixed key order)."""
    field = f"messages[{index}]"
    if isinstance(message, BaseModel):
        data: Mapping[str, Any] = message.model_dump(exclude_none=True)
    elif isinstance(message, Mapping):
        data = message
    else:
        raise RequestError(f"must be a dict or Message, not {type(message).__name__}", field=field)
    role = data.get("role")
    if not isinstance(role, str) or not role:
        raise RequestError("must be a non-empty string such as 'user', 'assistant', 'system' or 'tool'",
                           field=f"{field}.role")
    out: dict[str, Any] = {"role": role}
    for key in _MESSAGE_KEYS[1:]:
        value = data.get(key)
        if not value:
            continue
        if key == "images":
            out[key] = encode_images(value, field=f"{field}.images")
        elif key == "tool_calls":
            out[key] = _tool_calls(value, f"{field}.tool_calls")
        elif not isinstance(value, str):
            hint = " (a list of parts is the OpenAI format; put text here and images in 'images')" if (
                key == "content" and isinstance(value, list)) else ""
            raise RequestError(f"must be a string, not {type(value).__name__}{hint}", field=f"{field}.{key}")
        else:
            out[key] = value
    for key, value in data.items():
        if key not in out and key not in _MESSAGE_KEYS and value:
            out[key] = value
    return out


def _messages(messages: object, field: str = "messages") -> list[dict[str, Any]]:
    if messages is None:
        return []
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise RequestError("must be a list of messages", field=field)
    return [message_value(m, i) for i, m in enumerate(messages)]


def _put(body: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        body[key] = value


def generate_body(
    model: str,
    prompt: str | None,
    suffix: str | None,
    *,
    system: str | None,
    template: str | None,
    context: Sequence[int] | None,
    stream: bool,
    think: bool | str | None,
    logprobs: bool | None,
    top_logprobs: int | None,
    raw: bool | None,
    format: Any,
    images: Sequence[Any] | None,
    options: Any,
    keep_alive: float | str | None,
    width: int | None = None,
    height: int | None = None,
    steps: int | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": check_model(model), "stream": bool(stream)}
    _put(body, "options", options_value(options))
    _put(body, "format", normalize_format(format))
    _put(body, "keep_alive", keep_alive_value(keep_alive))
    _put(body, "prompt", _opt_str(prompt, "prompt"))
    _put(body, "suffix", _opt_str(suffix, "suffix"))
    _put(body, "system", _opt_str(system, "system"))
    _put(body, "template", _opt_str(template, "template"))
    _put(body, "context", _context(context))
    _put(body, "raw", _opt_bool(raw, "raw"))
    _put(body, "images", encode_images(images) if images else None)
    _put(body, "think", _think(think))
    _put(body, "logprobs", _opt_bool(logprobs, "logprobs"))
    _put(body, "top_logprobs", _top_logprobs(top_logprobs))
    _put(body, "width", _opt_int(width, "width"))
    _put(body, "height", _opt_int(height, "height"))
    _put(body, "steps", _opt_int(steps, "steps"))
    return body


def chat_body(
    model: str,
    messages: Any,
    *,
    tools: Any,
    stream: bool,
    think: bool | str | None,
    logprobs: bool | None,
    top_logprobs: int | None,
    format: Any,
    options: Any,
    keep_alive: float | str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": check_model(model), "stream": bool(stream)}
    _put(body, "options", options_value(options))
    _put(body, "format", normalize_format(format))
    _put(body, "keep_alive", keep_alive_value(keep_alive))
    body["messages"] = _messages(messages)
    body["tools"] = normalize_tools(tools)
    _put(body, "think", _think(think))
    _put(body, "logprobs", _opt_bool(logprobs, "logprobs"))
    _put(body, "top_logprobs", _top_logprobs(top_logprobs))
    return body


def embed_input(value: object) -> str | list[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, Mapping)) or not isinstance(value, Sequence):
        raise RequestError(f"must be a string or a list of strings, not {type(value).__name__}", field="input")
    items = value if isinstance(value, list) else list(value)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise RequestError(f"must be a string, not {type(item).__name__}", field=f"input[{i}]")
    return items


def embed_body(
    model: str,
    input: Any,
    truncate: bool | None,
    options: Any,
    keep_alive: float | str | None,
    dimensions: int | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": check_model(model), "input": embed_input(input)}
    _put(body, "truncate", _opt_bool(truncate, "truncate"))
    _put(body, "options", options_value(options))
    _put(body, "keep_alive", keep_alive_value(keep_alive))
    _put(body, "dimensions", _opt_int(dimensions, "dimensions"))
    return body


def embeddings_body(model: str, prompt: str | None, options: Any, keep_alive: float | str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": check_model(model)}
    _put(body, "prompt", _opt_str(prompt, "prompt"))
    _put(body, "options", options_value(options))
    _put(body, "keep_alive", keep_alive_value(keep_alive))
    return body


def _str_map(value: object, field: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise RequestError("must be a mapping of file name to blob digest ('sha256:...')", field=field)
    return dict(value)


def create_body(
    model: str,
    *,
    stream: bool,
    quantize: str | None,
    from_: str | None,
    files: Mapping[str, str] | None,
    adapters: Mapping[str, str] | None,
    template: str | None,
    license: str | Sequence[str] | None,
    system: str | None,
    parameters: Any,
    messages: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": check_model(model), "stream": bool(stream)}
    _put(body, "quantize", _opt_str(quantize, "quantize"))
    _put(body, "files", _str_map(files, "files"))
    _put(body, "adapters", _str_map(adapters, "adapters"))
    _put(body, "template", _opt_str(template, "template"))
    if license is not None and not isinstance(license, str):
        if not isinstance(license, Sequence) or not all(isinstance(x, str) for x in license):
            raise RequestError("must be a string or a list of strings", field="license")
        license = list(license)
    _put(body, "license", license)
    _put(body, "system", _opt_str(system, "system"))
    _put(body, "parameters", options_value(parameters, "parameters"))
    if messages is not None:
        if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
            raise RequestError("must be a list of messages", field="messages")
        body["messages"] = [_plain(m) for m in messages]
    _put(body, "from", check_model(from_, "from_") if from_ is not None else None)
    return body
