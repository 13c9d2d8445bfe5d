"""JSON encoding for the simulator: orjson when installed, the standard library otherwise.

Both produce compact UTF-8 bytes (no spaces after separators), as Go's encoder does, so the
wire format does not depend on which one is in use.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

_orjson: Any
try:
    _orjson = importlib.import_module("orjson")
except ImportError:  # pragma: no cover - exercised only without orjson
    _orjson = None

HAVE_ORJSON = _orjson is not None

JSONDecodeError = json.JSONDecodeError

if _orjson is not None:
    _dumps = _orjson.dumps
    _loads = _orjson.loads

    def dumps(obj: Any) -> bytes:
        """Encode ``obj`` as compact JSON bytes."""
        return _dumps(obj)  # type: ignore[no-any-return]

    def loads(data: bytes | str) -> Any:
        """Decode JSON; raises :class:`json.JSONDecodeError` (orjson's is a subclass)."""
        return _loads(data)

else:  # pragma: no cover - exercised only without orjson
    _encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)

    def dumps(obj: Any) -> bytes:
        """Encode ``obj`` as compact JSON bytes."""
        return _encoder.encode(obj).encode()

    def loads(data: bytes | str) -> Any:
        """Decode JSON; raises :class:`json.JSONDecodeError`."""
        return json.loads(data)


def decode_error_text(body: bytes, exc: ValueError) -> str:
    """The message Go's ``encoding/json`` would give for this malformed body.

    The real server answers a truncated body with ``unexpected EOF`` and a stray character with
    ``invalid character 'x' ...``; clients and tests key on those texts.
    """
    stripped = body.strip()
    if not stripped:
        return "missing request body"
    pos = getattr(exc, "pos", None)
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return "invalid character looking for beginning of value"
    if pos is None:
        # orjson reports the position in the message only; find the first bad spot ourselves.
        try:
            json.loads(text)
        except json.JSONDecodeError as std_exc:
            pos = std_exc.pos
        else:  # pragma: no cover - both decoders agree in practice
            return "unexpected EOF"
    if pos >= len(text.rstrip()):
        return "unexpected EOF"
    ch = text[pos]
    if pos == 0 or text[:pos].rstrip()[-1:] in ("[", ":", ","):
        return f"invalid character {ch!r} looking for beginning of value"
    if text[:pos].rstrip()[-1:] in ("{",):
        return f"invalid character {ch!r} looking for beginning of object key string"
    return (
        f"invalid character {ch!r} after top-level value"
        if _complete_prefix(text[:pos])
        else (f"invalid character {ch!r} after object key:value pair")
    )


def _complete_prefix(prefix: str) -> bool:
    try:
        json.loads(prefix)
    except ValueError:
        return False
    return True
