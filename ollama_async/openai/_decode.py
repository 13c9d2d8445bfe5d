"""Decoding ``/v1`` replies: SSE event lines, and base64 embeddings straight into float32.

**SSE.** Streams come as ``data: {...}`` lines (blank-line separated; ``event:`` lines before
them in Responses streams), ending ``data: [DONE]`` for chat and completions, or a
``response.completed`` event for Responses. The lines are split by the same reader as the
native NDJSON streams (``_streaming.py``: one list of lines per arrival on the fast path, blank
lines dropped), so each event costs a prefix test, a slice and one pydantic pass over the JSON
bytes: no ``str`` decoding, no intermediate dict. Ollama and OpenAI put each event's JSON on one
``data:`` line; that is what is parsed.

**base64 embeddings.** Each ``data[i].embedding`` is the base64 of the vector as little-endian
float32 (``/v1/embeddings`` with ``encoding_format: "base64"``). The vectors are decoded with
pybase64 (SIMD; ``binascii`` without the ``fast`` extra) and joined into one buffer that numpy views as an ``(n, dim)`` float32 matrix: no
float parsing at all, and bit-identical to ``/api/embed``'s floats (the server encodes the same
float32 values).
"""

from __future__ import annotations

import binascii
import json
import sys
from array import array
from collections.abc import Callable
from typing import Any

from .._errors import StreamError

try:
    import numpy
except ImportError:  # pragma: no cover - exercised only without the extra
    numpy = None  # type: ignore[assignment]
try:  # SIMD base64 (the [fast] extra): several times binascii's speed on megabyte replies
    import pybase64

    _b64decode: Callable[[str], bytes] = pybase64.b64decode
except ImportError:  # pragma: no cover - exercised only without the extra
    _b64decode = binascii.a2b_base64
try:
    import orjson

    loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover
    loads = json.loads

__all__ = [
    "DONE", "SKIP", "ErrorEvent", "Marker", "b64_matrix", "loads", "numpy", "sse_decoder",
    "stream_error",
]


class Marker:
    """A decoded SSE line that is not an event for the caller (``[DONE]``, ``event:``, comments).

    ``total_duration`` lets the limiter count a finished stream (see ``_types.py``)."""

    __slots__ = ("name",)
    total_duration = 0

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


DONE = Marker("DONE")
SKIP = Marker("SKIP")


class ErrorEvent(Marker):
    """An ``{"error": ...}`` event: the stream turns it into a :class:`StreamError`."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        super().__init__("error")
        self.text = text


def sse_decoder(validate: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """A line decoder for :func:`~ollama_async._streaming.iter_parts`: event JSON → ``validate``."""

    def decode(line: bytes) -> Any:
        if line[:5] != b"data:":
            return SKIP  # event:, id:, retry: and ": comment" lines
        payload = line[6:] if line[5:6] == b" " else line[5:]
        if payload[:6] == b"[DONE]":
            return DONE
        if b'"error"' in payload[:16] and (text := _error_text(payload)) is not None:
            return ErrorEvent(text)
        return validate(payload)

    return decode


def _error_text(payload: bytes) -> str | None:
    """The JSON of an ``{"error": {...}}`` event (its ``error`` set), else None."""
    try:
        obj = loads(payload)
    except ValueError:
        return None
    if isinstance(obj, dict) and obj.get("error"):
        return payload.decode("utf-8", "replace")
    return None


def stream_error(event: ErrorEvent, handed: int, **where: Any) -> StreamError:
    return StreamError(event.text, chunks_received=handed, **where)


def b64_vectors(data: list[Any]) -> list[bytes]:
    """The raw float32 bytes of each ``data[i].embedding``, in ``index`` order."""
    if any(not isinstance(d, dict) or d.get("index", i) != i for i, d in enumerate(data)):
        data = sorted(data, key=_index)
    out = []
    for i, item in enumerate(data):
        value = item.get("embedding") if isinstance(item, dict) else None
        if not isinstance(value, str):
            raise ValueError(f"data[{i}].embedding is not a base64 string")
        out.append(_b64decode(value))
    return out


def _index(item: Any) -> int:
    index = item.get("index") if isinstance(item, dict) else None
    return index if isinstance(index, int) else 0


def b64_matrix(data: list[Any]) -> Any:
    """The vectors of a base64 ``/v1/embeddings`` reply (its ``data`` list) as one float32
    ``(n, dim)`` array (a list of ``list[float]`` without numpy)."""
    raw = b64_vectors(data)
    if not raw:
        return numpy.zeros((0, 0), dtype=numpy.float32) if numpy is not None else []
    size = len(raw[0])
    if size % 4 or any(len(r) != size for r in raw):
        raise ValueError("embeddings of different lengths (or not float32)")
    if numpy is not None:
        return numpy.frombuffer(bytearray().join(raw), dtype="<f4").reshape(len(raw), size // 4)
    rows = []  # pragma: no cover - numpy-less fallback
    for r in raw:  # pragma: no cover
        floats = array("f")
        floats.frombytes(r)
        if sys.byteorder != "little":
            floats.byteswap()
        rows.append(floats.tolist())
    return rows  # pragma: no cover
