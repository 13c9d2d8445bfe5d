"""NDJSON stream writing with stream faults applied at the right line.

Handlers append lines with :meth:`NdjsonStream.line`; a scripted or random stream fault fires
before line ``after`` (or before the final line of a shorter stream). Faults that end the stream
raise :class:`StreamAborted`, which the handler turns into "stop generating, free the slot".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ._faults import STREAM_KINDS, Fault
from ._http import JSON_CT, Connection
from ._json import dumps

MALFORMED_LINE = b'{"model": this line is not JSON\n'


class StreamAborted(Exception):
    """A fault ended the stream (error line, EOF without done, reset)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class NdjsonStream:
    """Lines out to one connection, with at most one stream fault to apply."""

    __slots__ = ("conn", "fault", "long_line", "n")

    def __init__(
        self, conn: Connection, fault: Fault | None, long_line: Callable[[int], bytes] | None
    ) -> None:
        self.conn = conn
        self.fault = fault if fault is not None and fault.kind in STREAM_KINDS else None
        self.long_line = long_line
        self.n = 0

    def line(self, data: bytes, final: bool = False) -> None:
        """Queue ``data`` (one JSON line ending in ``\\n``), applying a due fault first."""
        f = self.fault
        if f is not None and (self.n >= f.after or final):
            self.fault = None
            self._apply(f)
        self.conn.line(data)
        self.n += 1

    def _apply(self, f: Fault) -> None:
        conn = self.conn
        kind = f.kind
        if kind == "error_line":
            conn.line(dumps({"error": f.error}) + b"\n")
            conn.end_stream()
            raise StreamAborted(kind)
        if kind == "eof":
            conn.end_stream()
            raise StreamAborted(kind)
        if kind == "reset":
            raise StreamAborted(kind)
        if kind == "malformed_line":
            conn.line(MALFORMED_LINE)
        elif kind == "blank_lines":
            for _ in range(f.count):
                conn.line(b"\n")
        elif kind == "long_line" and self.long_line is not None:
            conn.line(self.long_line(f.size_bytes))

    async def abort(self, exc: StreamAborted) -> None:
        """Finish what a fault started: a reset goes out after the lines already queued."""
        if exc.kind == "reset":
            await self.conn.drain_fully()
            await asyncio.sleep(0.005)
            self.conn.abort()


def padding_text(size: int) -> str:
    """Filler text of exactly ``size`` characters (ASCII words) for long-line faults."""
    unit = "lorem ipsum dolor sit amet "
    return (unit * (size // len(unit) + 1))[:size]


def send_reply(
    conn: Connection, body: bytes, fault: Fault | None, content_type: str = JSON_CT, status: int = 200
) -> None:
    """A non-stream reply, with stream faults degraded to their non-stream meaning.

    ``error_line`` becomes a 500 with the error; ``eof`` a body cut in half (the declared length
    is kept) and a closed connection; ``reset`` a TCP reset; ``malformed_line`` a body that is
    not JSON; ``blank_lines`` trailing newlines (still valid JSON).
    """
    if fault is None:
        conn.respond(status, body, content_type)
        return
    kind = fault.kind
    if kind == "error_line":
        conn.respond(500, dumps({"error": fault.error}), JSON_CT)
    elif kind == "eof":
        conn.respond(status, body[: len(body) // 2], content_type, declared_length=len(body))
        conn.close()
    elif kind == "reset":
        conn.abort()
    elif kind == "malformed_line":
        conn.respond(status, body[: max(len(body) // 2, 1)] + b" <- not JSON", content_type)
    elif kind == "blank_lines":
        conn.respond(status, body + b"\n" * fault.count, content_type)
    else:
        conn.respond(status, body, content_type)
