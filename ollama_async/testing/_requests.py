"""Request decoding and validation with the real server's error texts.

The real server binds JSON into Go structs, so a malformed body, a field of the wrong type, a
``keep_alive`` without a unit or a wrongly typed option each fail in a recognisable way (400 for
binding errors, 500 for options). These helpers reproduce those answers.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ._json import decode_error_text, loads

INF = float("inf")


class ApiError(Exception):
    """An error reply: HTTP ``status`` with body ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def json_kind(value: Any) -> str:
    """Go's name for a JSON value's kind in unmarshal errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def read_body(body: bytes, struct: str) -> dict[str, Any]:
    """Decode a JSON object body or raise the real server's 400."""
    if not body:
        raise ApiError(400, "missing request body")
    try:
        obj = loads(body)
    except ValueError as exc:
        raise ApiError(400, decode_error_text(body, exc)) from None
    if not isinstance(obj, dict):
        if obj is None:
            return {}
        raise ApiError(400, f"json: cannot unmarshal {json_kind(obj)} into Go value of type api.{struct}")
    return obj


# field -> (accepted python check name, Go type for the message)
Fields = dict[str, tuple[str, str]]

_CHECKS: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "bool": (bool,),
    "object": (dict,),
    "array": (list,),
    "number": (int, float),
}

GENERATE_FIELDS: Fields = {
    "model": ("string", "string"),
    "prompt": ("string", "string"),
    "suffix": ("string", "string"),
    "system": ("string", "string"),
    "template": ("string", "string"),
    "context": ("array", "[]int"),
    "stream": ("bool", "bool"),
    "raw": ("bool", "bool"),
    "images": ("array", "[]api.ImageData"),
    "options": ("object", "map[string]interface {}"),
    "truncate": ("bool", "bool"),
    "shift": ("bool", "bool"),
    "logprobs": ("bool", "bool"),
    "top_logprobs": ("number", "int"),
}
CHAT_FIELDS: Fields = {
    "model": ("string", "string"),
    "messages": ("array", "[]api.Message"),
    "tools": ("array", "api.Tools"),
    "stream": ("bool", "bool"),
    "options": ("object", "map[string]interface {}"),
    "truncate": ("bool", "bool"),
    "shift": ("bool", "bool"),
    "logprobs": ("bool", "bool"),
    "top_logprobs": ("number", "int"),
}
EMBED_FIELDS: Fields = {
    "model": ("string", "string"),
    "truncate": ("bool", "bool"),
    "dimensions": ("number", "int"),
    "options": ("object", "map[string]interface {}"),
}
EMBEDDINGS_FIELDS: Fields = {
    "model": ("string", "string"),
    "prompt": ("string", "string"),
    "options": ("object", "map[string]interface {}"),
}
PULL_FIELDS: Fields = {
    "model": ("string", "string"),
    "name": ("string", "string"),
    "insecure": ("bool", "bool"),
    "stream": ("bool", "bool"),
}
SHOW_FIELDS: Fields = {
    "model": ("string", "string"),
    "name": ("string", "string"),
    "verbose": ("bool", "bool"),
    "system": ("string", "string"),
}
COPY_FIELDS: Fields = {"source": ("string", "string"), "destination": ("string", "string")}
DELETE_FIELDS: Fields = {"model": ("string", "string"), "name": ("string", "string")}
CREATE_FIELDS: Fields = {
    "model": ("string", "string"),
    "name": ("string", "string"),
    "from": ("string", "string"),
    "files": ("object", "map[string]string"),
    "adapters": ("object", "map[string]string"),
    "template": ("string", "string"),
    "system": ("string", "string"),
    "parameters": ("object", "map[string]interface {}"),
    "messages": ("array", "[]api.Message"),
    "quantize": ("string", "string"),
    "stream": ("bool", "bool"),
}


def check_fields(body: dict[str, Any], fields: Fields, struct: str) -> None:
    """Raise the Go unmarshal error for the first present field of the wrong JSON type."""
    for key, value in body.items():
        spec = fields.get(key)
        if spec is None or value is None:
            continue
        kind, go_type = spec
        ok = isinstance(value, _CHECKS[kind])
        if ok and kind == "number" and isinstance(value, bool):
            ok = False
        if ok and kind != "bool" and isinstance(value, bool):
            ok = False
        if not ok:
            raise ApiError(
                400,
                f"json: cannot unmarshal {json_kind(value)} into Go struct field {struct}.{key} of type {go_type}",
            )


_DURATION_RE = re.compile(r"([0-9]*(?:\.[0-9]*)?)([a-zµμ]*)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Seconds for a Go duration string (``"5m"``, ``"1h30m"``, ``"-1s"``); ``ValueError`` text as Go's."""
    orig = text
    s = text
    sign = 1.0
    if s[:1] in ("-", "+"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{orig}"')
    total = 0.0
    while s:
        m = _DURATION_RE.match(s)
        if m is None or m.group(1) in ("", "."):
            raise ValueError(f'time: invalid duration "{orig}"')
        number, unit = m.group(1), m.group(2)
        if not unit:
            raise ValueError(f'time: missing unit in duration "{orig}"')
        if unit not in _UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{orig}"')
        total += float(number) * _UNITS[unit]
        s = s[m.end() :]
    return sign * total


def parse_keep_alive(value: Any) -> float | None:
    """Seconds (``inf`` for negative = forever) or ``None`` when absent; 400 when invalid."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ApiError(400, "Unsupported type: 'bool'")
    if isinstance(value, (int, float)):
        return INF if value < 0 else float(value)
    if isinstance(value, str):
        try:
            seconds = parse_go_duration(value)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return INF if seconds < 0 else seconds
    raise ApiError(400, f"Unsupported type: '{json_kind(value)}'")


THINK_LEVELS = ("low", "medium", "high", "max")


def parse_think(value: Any) -> bool | str | None:
    """``think``: absent, a bool, or a level; 400 with the real text otherwise."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value in THINK_LEVELS:
        return value
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    raise ApiError(400, f'invalid think value: {shown} (must be "high", "medium", "low", true, or false)')


_INT_OPTS = frozenset(
    {
        "num_keep",
        "seed",
        "num_predict",
        "top_k",
        "repeat_last_n",
        "mirostat",
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "num_thread",
    }
)
_FLOAT_OPTS = frozenset(
    {
        "top_p",
        "min_p",
        "typical_p",
        "temperature",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
        "tfs_z",
        "mirostat_tau",
        "mirostat_eta",
    }
)
_BOOL_OPTS = frozenset(
    {
        "penalize_newline",
        "numa",
        "low_vram",
        "f16_kv",
        "vocab_only",
        "use_mmap",
        "use_mlock",
        "logits_all",
        "embedding_only",
    }
)


def check_options(options: dict[str, Any]) -> None:
    """Raise the real server's 500 for a wrongly typed option (unknown keys are ignored)."""
    for key, value in options.items():
        if value is None:
            continue
        if key in _INT_OPTS:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ApiError(500, f'option "{key}" must be of type integer')
        elif key in _FLOAT_OPTS:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ApiError(500, f'option "{key}" must be of type float32')
        elif key in _BOOL_OPTS:
            if not isinstance(value, bool):
                raise ApiError(500, f'option "{key}" must be of type boolean')
        elif key == "stop":
            if not isinstance(value, list):
                raise ApiError(500, f'option "{key}" must be of type array')
            if not all(isinstance(v, str) for v in value):
                raise ApiError(500, f'option "{key}" must be of an array of strings')


def load_options(options: dict[str, Any] | None, default_ctx: int) -> tuple[object, ...]:
    """The load-time options that, when changed, make the real server reload a model.

    Values default as the real server's do, so leaving an option out equals sending its default.
    ``num_ctx`` comes first (the scheduler reads the context length from it).
    """
    if not options:
        return (default_ctx, 512, -1, 0, None, 0)
    num_ctx = options.get("num_ctx")
    ctx = (
        int(num_ctx)
        if isinstance(num_ctx, (int, float)) and not isinstance(num_ctx, bool) and num_ctx > 0
        else default_ctx
    )

    def _int(name: str, default: int) -> int:
        v = options.get(name)
        return (
            int(v)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            else default
        )

    return (
        ctx,
        _int("num_batch", 512),
        _int("num_gpu", -1),
        _int("main_gpu", 0),
        options.get("use_mmap"),
        _int("num_thread", 0),
    )
