"""A lean HTTP/1.1 server on ``asyncio.Protocol``: just what an Ollama client exercises.

Keep-alive, ``Content-Length`` and chunked request bodies (httpx streams uploads chunked),
``Expect: 100-continue``, fixed-length and chunked responses (NDJSON streams), ``Connection:
close``, HEAD. Pipelined requests are buffered and served in order. Each complete request runs
as one task; when the client goes away (``connection_lost``) that task is cancelled, which is how
the scheduler learns that a waiting request gives its place up or a running one frees its slot.

Stream writes are coalesced: lines appended between two awaits go out in one ``write`` (each
still its own HTTP chunk, as the real server flushes one per token), which keeps the server's
CPU per chunk low.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus

log = logging.getLogger("ollama_async.testing")

JSON_CT = "application/json; charset=utf-8"
PLAIN_JSON_CT = "application/json"
NDJSON_CT = "application/x-ndjson"
TEXT_CT = "text/plain; charset=utf-8"

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 1 << 30

_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Status"
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode())
    return line


_date_sec = 0
_date_hdr = b""


def _date_header() -> bytes:
    global _date_sec, _date_hdr
    now = int(time.time())
    if now != _date_sec:
        _date_sec = now
        _date_hdr = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
    return _date_hdr


def _header(head: bytes, lower: bytes, name: bytes) -> str | None:
    """The value of header ``name`` (given as ``b"\r\nname:"``) from a raw request head."""
    idx = lower.find(name)
    if idx < 0:
        return None
    start = idx + len(name)
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip().decode("latin-1")


_CRLF = b"\r\n"


class Request:
    """One parsed request. ``body`` is empty when the body was hashed instead of kept.

    Only the headers the server acts on are parsed eagerly; :attr:`headers` decodes the rest
    on first use.
    """

    __slots__ = (
        "_head",
        "_headers",
        "body",
        "body_size",
        "digest",
        "keep_alive",
        "method",
        "path",
        "query",
        "version",
    )

    def __init__(
        self, method: str, path: str, query: str, version: str, head: bytes, connection: str
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.version = version
        self._head = head
        self._headers: dict[str, str] | None = None
        self.body = b""
        self.body_size = 0
        self.digest = ""
        conn = connection.lower()
        self.keep_alive = ("close" not in conn) if version == "HTTP/1.1" else ("keep-alive" in conn)

    @property
    def headers(self) -> dict[str, str]:
        """All request headers, lower-cased names."""
        if self._headers is None:
            headers: dict[str, str] = {}
            for line in self._head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
            self._headers = headers
        return self._headers


Handler = Callable[[Request, "Connection"], Awaitable[None]]
HashPredicate = Callable[[str, str], bool]

_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS = range(6)


class HttpServer:
    """Owns the listening socket and the live connections."""

    def __init__(self, handler: Handler, hash_body: HashPredicate) -> None:
        self.handler = handler
        self.hash_body = hash_body
        self.connections: set[Connection] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self), host, port, reuse_address=True, backlog=1024
        )
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.shutdown()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None


class Connection(asyncio.Protocol):
    """One client connection: request parser plus the response writer handlers use."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._state = _HEAD
        self._req: Request | None = None
        self._body = bytearray()
        self._hasher: hashlib._Hash | None = None
        self._remaining = 0
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        self.shutting_down = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        # response state
        self._keep_alive = True
        self._head_only = False
        self.started = False
        self._finished = False
        self._chunked = True
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self._buf += data
        if self._task is None:
            self._parse()

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._server.connections.discard(self)
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        self._wake_drain()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain()

    def _wake_drain(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # --- request parsing -------------------------------------------------------------------

    def _parse(self) -> None:
        buf = self._buf
        while not self.closed and self._task is None:
            state = self._state
            if state == _HEAD:
                while buf[:2] == _CRLF:  # empty lines before a request line are ignored (RFC 9112 2.2)
                    del buf[:2]
                if buf and not 65 <= buf[0] <= 90 and buf != b"\r":
                    # a request line starts with a method (upper-case letters); anything else,
                    # such as a TLS ClientHello (0x16), is refused at once, as Go's server does,
                    # instead of waiting for a CRLF CRLF that never comes
                    self._fail(400, "malformed request line")
                    return
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEADER_BYTES:
                        self._fail(431, "request header fields too large")
                    return
                head = bytes(buf[:end])
                del buf[: end + 4]
                if not head:  # tolerate stray CRLFs between requests
                    continue
                if not self._start_request(head):
                    return
            elif state == _BODY:
                if not buf:
                    return
                take = min(self._remaining, len(buf))
                self._feed(buf[:take])
                del buf[:take]
                self._remaining -= take
                if self._remaining == 0:
                    self._dispatch()
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > 1024:
                        self._fail(400, "bad chunk size")
                    return
                line = bytes(buf[:end]).split(b";", 1)[0].strip()
                del buf[: end + 2]
                try:
                    size = int(line, 16)
                except ValueError:
                    self._fail(400, "bad chunk size")
                    return
                if size == 0:
                    self._state = _TRAILERS
                else:
                    self._remaining = size
                    self._state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                if not buf:
                    return
                take = min(self._remaining, len(buf))
                self._feed(buf[:take])
                del buf[:take]
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if len(buf) < 2:
                    return
                del buf[:2]
                self._state = _CHUNK_SIZE
            else:  # _TRAILERS
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                del buf[: end + 2]
                if end == 0:
                    self._dispatch()

    def _start_request(self, head: bytes) -> bool:
        eol = head.find(b"\r\n")
        request_line = head if eol < 0 else head[:eol]
        try:
            method_b, target_b, version_b = request_line.split(b" ", 2)
        except ValueError:
            self._fail(400, "malformed request line")
            return False
        version = version_b.decode("latin-1").strip().upper()
        if not version.startswith("HTTP/1."):
            self._fail(505, "HTTP version not supported")
            return False
        lower = head.lower()
        target = target_b.decode("latin-1")
        path, _, query = target.partition("?")
        method = method_b.decode("latin-1").upper()
        req = Request(method, path, query, version, head, _header(head, lower, b"\r\nconnection:") or "")
        self._req = req
        self._hasher = hashlib.sha256() if self._server.hash_body(method, path) else None
        self._body = bytearray()
        expect = _header(head, lower, b"\r\nexpect:") if b"\r\nexpect:" in lower else None
        if expect is not None and expect.lower() == "100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        te = _header(head, lower, b"\r\ntransfer-encoding:")
        if te is not None and "chunked" in te.lower():
            self._state = _CHUNK_SIZE
            return True
        cl = _header(head, lower, b"\r\ncontent-length:")
        if cl:
            try:
                length = int(cl)
            except ValueError:
                self._fail(400, "bad content length")
                return False
            if length < 0 or length > MAX_BODY_BYTES:
                self._fail(413, "request body too large")
                return False
            if length:
                self._remaining = length
                self._state = _BODY
                return True
        self._dispatch()
        return True

    def _feed(self, data: bytearray) -> None:
        req = self._req
        assert req is not None
        req.body_size += len(data)
        if self._hasher is not None:
            self._hasher.update(data)
        else:
            if req.body_size > MAX_BODY_BYTES:
                self._fail(413, "request body too large")
                return
            self._body += data

    def _dispatch(self) -> None:
        req = self._req
        assert req is not None
        self._state = _HEAD
        self._req = None
        if self._hasher is not None:
            req.digest = "sha256:" + self._hasher.hexdigest()
            self._hasher = None
        else:
            req.body = bytes(self._body)
        self._body = bytearray()
        self._keep_alive = req.keep_alive
        self._head_only = req.method == "HEAD"
        self._chunked = req.version != "HTTP/1.0"
        self.started = False
        self._finished = False
        self._task = self._loop.create_task(self._run(req))

    async def _run(self, req: Request) -> None:
        try:
            await self._server.handler(req, self)
        except asyncio.CancelledError:
            self._task = None
            return
        except Exception:
            log.exception("simulator handler failed for %s %s", req.method, req.path)
            if not self.closed:
                if not self.started:
                    self.respond(
                        500, b'{"error":"internal simulator error"}', "application/json; charset=utf-8"
                    )
                else:
                    self.abort()
        self._task = None
        if self.closed:
            return
        if self.started and not self._finished:
            self.end_stream()
        if not self.started:
            self.respond(500, b'{"error":"no response"}', "application/json; charset=utf-8")
        if not self._keep_alive:
            assert self.transport is not None
            self.transport.close()
            return
        if self._buf:
            self._parse()

    def _fail(self, status: int, message: str) -> None:
        self._keep_alive = False
        self._head_only = False
        self._chunked = True
        self.started = False
        self._finished = False
        self.respond(status, message.encode(), "text/plain; charset=utf-8")
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # --- response writing (used by handlers) -----------------------------------------------

    def _head(
        self, status: int, content_type: str | None, length: int | None, extra: list[tuple[str, str]] | None
    ) -> bytes:
        parts = [_status_line(status)]
        if content_type:
            parts.append(b"Content-Type: " + content_type.encode() + b"\r\n")
        parts.append(_date_header())
        if extra:
            for k, v in extra:
                parts.append(f"{k}: {v}\r\n".encode("latin-1"))
        if length is None:
            if self._chunked:
                parts.append(b"Transfer-Encoding: chunked\r\n")
            else:
                self._keep_alive = False
        else:
            parts.append(b"Content-Length: %d\r\n" % length)
        if not self._keep_alive:
            parts.append(b"Connection: close\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def respond(
        self,
        status: int,
        body: bytes,
        content_type: str | None,
        extra_headers: list[tuple[str, str]] | None = None,
        *,
        declared_length: int | None = None,
    ) -> None:
        """Send a complete fixed-length response (``declared_length`` may lie, for faults)."""
        if self.started:
            raise RuntimeError("response already started")
        self.started = True
        self._finished = True
        if self.closed or self.transport is None:
            return
        head = self._head(
            status, content_type, len(body) if declared_length is None else declared_length, extra_headers
        )
        self.transport.write(head if self._head_only else head + body)

    def respond_parts(self, status: int, parts: list[bytes], content_type: str) -> None:
        """A fixed-length response assembled from ``parts`` with a single copy (big bodies)."""
        if self.started:
            raise RuntimeError("response already started")
        self.started = True
        self._finished = True
        if self.closed or self.transport is None:
            return
        head = self._head(status, content_type, sum(map(len, parts)), None)
        if self._head_only:
            self.transport.write(head)
            return
        parts.insert(0, head)
        self.transport.write(b"".join(parts))

    def start_stream(
        self, status: int, content_type: str, extra_headers: list[tuple[str, str]] | None = None
    ) -> None:
        """Begin a chunked response; the head goes out with the first flushed line."""
        if self.started:
            raise RuntimeError("response already started")
        self.started = True
        self._pending = [self._head(status, content_type, None, extra_headers)]
        self._pending_bytes = 0

    def line(self, data: bytes) -> None:
        """Queue one NDJSON line (``data`` must end with ``\\n``) as its own HTTP chunk."""
        if self._chunked:
            self._pending.append(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self._pending.append(data)
        self._pending_bytes += len(data)

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def flush(self) -> None:
        """Write the queued lines now (one ``write`` call)."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self._pending_bytes = 0
        if self.closed or self.transport is None:
            return
        self.transport.write(b"".join(pending) if len(pending) > 1 else pending[0])

    async def drain(self) -> None:
        """Flush, then wait while the transport's buffer is over its high-water mark."""
        self.flush()
        while self._write_paused and not self.closed:
            fut: asyncio.Future[None] = self._loop.create_future()
            self._drain_waiters.append(fut)
            await fut

    async def drain_fully(self, timeout: float = 2.0) -> None:
        """Flush and wait until the kernel has everything we wrote (before a reset)."""
        self.flush()
        if self.closed or self.transport is None:
            return
        # With a high-water mark of 0 the transport pauses us while anything is buffered.
        self.transport.set_write_buffer_limits(0, 0)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.drain(), timeout)

    def end_stream(self) -> None:
        """Terminate a chunked response cleanly and flush it."""
        if self._finished:
            return
        self._finished = True
        if self._chunked:
            self._pending.append(b"0\r\n\r\n")
        self.flush()
        if not self._chunked and self.transport is not None:
            self._keep_alive = False

    def abort(self) -> None:
        """Reset the connection (RST): ``SO_LINGER`` 0, then close without flushing."""
        self._finished = True
        self.started = True
        self._keep_alive = False
        self._pending = []
        transport = self.transport
        if transport is None or self.closed:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    def close(self) -> None:
        """Close after what has been written (FIN), ending keep-alive."""
        self._finished = True
        self.started = True
        self._keep_alive = False
        self.flush()
        if self.transport is not None and not self.closed:
            self.transport.close()

    def shutdown(self) -> None:
        """Server stop: drop the connection and cancel its request."""
        self.shutting_down = True
        self.closed = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        if self.transport is not None:
            self.transport.abort()
