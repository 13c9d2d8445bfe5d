"""A lean HTTP/1.1 connection pool for the client's own requests under asyncio (private).

Why: per request, ``httpx.AsyncClient.send`` + httpcore cost more CPU than everything else the
client does, and httpcore's pool re-scans every queued request against every connection on each
state change (quadratic at high concurrency). Against one plain-HTTP Ollama server the client
needs very little of that machinery: keep-alive connections to one host, ``Content-Length`` or
chunked bodies, timeouts. This module does just that on ``asyncio.Protocol`` and hands back
ordinary ``httpx.Response`` objects, so the rest of the client (retries, error mapping,
streaming) is unchanged.

It is used only where it cannot change behaviour (see :func:`eligible` and
:meth:`FastSender.usable`): the :class:`~ollama_async.AsyncClient` created its own
``httpx.AsyncClient`` with no transport, proxy, TLS, auth, cookie or hook settings; the host is
``http://``; the running backend is asyncio; and nothing has patched httpx or httpcore (respx,
pytest-httpx, tracing instrumentation: they keep seeing every request). Under trio, with an
injected ``http_client``, for streamed uploads and when ``OLLAMA_ASYNC_TRANSPORT=httpx`` is set,
requests go through httpx as before. Redirects are followed by re-sending through httpx; a
``Set-Cookie`` reply is stored in the httpx client's jar, after which httpx carries on.

Failures are raised as the httpx exceptions httpcore would raise (``ConnectError``,
``ConnectTimeout``, ``ReadTimeout``, ``PoolTimeout``, ``RemoteProtocolError``, ``ReadError``),
so the transport's retry and error mapping apply as they are. The write timeout is not enforced
separately: a request body is handed to the socket at once, and a server that stops reading it
runs into the read timeout.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpcore
import httpx

__all__ = ["FastSender", "FastStream", "eligible"]

#: httpx_kwargs that do not change how a request goes over the wire.
_NEUTRAL_KWARGS = frozenset({"follow_redirects", "limits", "trust_env", "max_redirects", "default_encoding"})

_MAX_HEAD = 64 * 1024
_HIGH_WATER = 1 << 20  # a stream pauses reading the socket beyond this many unread bytes
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

# (connect, read, pool) in seconds, None = no limit
Timeouts = tuple[float | None, float | None, float | None]


def _is_original(func: object, package: str) -> bool:
    return getattr(func, "__module__", "").startswith(package)


def _hooks() -> tuple[object, object, object]:
    return (
        httpx.AsyncClient._transport_for_url,
        httpx.AsyncHTTPTransport.handle_async_request,
        httpcore.AsyncConnectionPool.handle_async_request,
    )


_ORIGINAL_HOOKS: tuple[object, object, object] | None = _hooks()
if not all(_is_original(f, p) for f, p in zip(_hooks(), ("httpx", "httpx", "httpcore"), strict=True)):
    _ORIGINAL_HOOKS = None  # imported while something patched httpx: never bypass it


def _unpatched() -> bool:
    """True while nobody (respx, pytest-httpx, instrumentation) has hooked httpx's send path."""
    hooks = _ORIGINAL_HOOKS
    return (
        hooks is not None
        and httpx.AsyncClient._transport_for_url is hooks[0]
        and httpx.AsyncHTTPTransport.handle_async_request is hooks[1]
        and httpcore.AsyncConnectionPool.handle_async_request is hooks[2]
    )


def eligible(base_url: str, http: httpx.AsyncClient, httpx_kwargs: Mapping[str, Any]) -> bool:
    """Whether requests of a client that owns ``http`` may bypass httpx (static part)."""
    if os.environ.get("OLLAMA_ASYNC_TRANSPORT", "").strip().lower() == "httpx":
        return False
    if not base_url.startswith("http://") or not set(httpx_kwargs) <= _NEUTRAL_KWARGS:
        return False
    try:  # an environment proxy (HTTP_PROXY, ALL_PROXY) mounts another transport for the host
        return http._transport_for_url(httpx.URL(base_url)) is http._transport
    except Exception:
        return False


class _ProtocolError(Exception):
    pass


# parser states
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILER, _EOF, _DONE = range(8)


class _Exchange:
    """One request/response on a connection: the parsed head and the body as it arrives."""

    __slots__ = (
        "body",
        "conn",
        "cookies",
        "done",
        "encoded",
        "error",
        "head_only",
        "headers",
        "queued",
        "reason",
        "received",
        "status",
        "stream",
        "waiter",
        "will_close",
    )

    def __init__(self, conn: _Conn, stream: bool, head_only: bool) -> None:
        self.conn = conn
        self.stream = stream
        self.head_only = head_only
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.will_close = False
        self.encoded = False  # a Content-Encoding other than identity
        self.cookies = False  # a Set-Cookie header
        self.body: collections.deque[bytes] = collections.deque()
        self.queued = 0
        self.done = False
        self.received = False  # any byte of the response arrived
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if self.error is None and not self.done:
            self.error = exc
        self._wake()


class _Conn(asyncio.Protocol):
    """One keep-alive connection and its response parser."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.state = _DONE
        self.remaining = 0
        self.ex: _Exchange | None = None
        self.closed = False
        self.paused = False
        self.idle_since = 0.0
        self.last_data = 0.0
        self.uses = 0
        self.counted_out = False
        self.timer: asyncio.TimerHandle | None = None
        self.read_timeout: float | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        ex = self.ex
        if ex is None or self.state == _DONE:  # nothing asked: the connection is unusable
            self.close()
            return
        self.last_data = self.loop.time()
        ex.received = True
        if self.state == _LENGTH and not self.buf and not ex.stream:
            # the middle of a large body: keep the bytes object as it is, no copy into the buffer
            take = self.remaining
            if len(data) <= take:
                ex.body.append(data)
                self.remaining = take - len(data)
                if self.remaining:
                    return
                data = b""
            else:
                ex.body.append(data[:take])
                self.remaining = 0
                data = data[take:]
            self.state = _DONE
        self.buf += data
        try:
            self._parse(ex)
        except (_ProtocolError, ValueError) as exc:
            ex.fail(httpx.RemoteProtocolError(f"invalid HTTP response: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        ex = self.ex
        if ex is not None and self.state == _EOF:
            self.state = _DONE
            ex.will_close = True
            self._finish(ex)
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        ex = self.ex
        if ex is not None and not ex.done:
            if self.state == _EOF:
                self.state = _DONE
                ex.will_close = True
                self._finish(ex)
            elif not ex.received:
                ex.fail(httpx.RemoteProtocolError("Server disconnected without sending a response."))
            else:
                ex.fail(httpx.RemoteProtocolError("peer closed connection without sending complete message body"))
        self.pool._lost(self)

    def pause_writing(self) -> None:  # request bodies are handed over whole; nothing to pause
        pass

    def resume_writing(self) -> None:
        pass

    # -- use ------------------------------------------------------------------------------------

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            if self.transport is not None:
                self.transport.close()
            self.pool._lost(self)

    # -- read timeout: one lazily re-armed timer per connection, not one per wait ------------------

    def arm(self, timeout: float) -> None:
        """A wait for the response starts: fail it after ``timeout`` seconds without a byte."""
        now = self.loop.time()
        self.last_data = now
        self.read_timeout = timeout
        timer = self.timer
        if timer is None or timer.when() > now + timeout + 1e-3:
            if timer is not None:
                timer.cancel()
            self.timer = self.loop.call_at(now + timeout, self._check_timeout)

    def _check_timeout(self) -> None:
        self.timer = None
        ex = self.ex
        timeout = self.read_timeout
        if ex is None or ex.waiter is None or timeout is None or self.closed:
            return  # nobody is waiting: stay disarmed until the next wait
        idle = self.loop.time() - self.last_data
        if idle >= timeout - 1e-3:
            ex.fail(httpx.ReadTimeout(f"read timed out after {timeout:g}s"))
        else:
            self.timer = self.loop.call_at(self.last_data + timeout, self._check_timeout)

    def start(self, request: bytes, body: bytes | None, stream: bool, head_only: bool) -> _Exchange:
        ex = _Exchange(self, stream, head_only)
        self.ex = ex
        self.state = _HEAD
        self.uses += 1
        transport = self.transport
        assert transport is not None
        if body is not None and len(body) > 65536:
            transport.write(request)
            transport.write(body)
        else:
            transport.write(request + body if body else request)
        return ex

    def consumed(self, ex: _Exchange, nbytes: int) -> None:
        ex.queued -= nbytes
        if self.ex is ex and self.paused and ex.queued < _HIGH_WATER // 4 and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    # -- parsing ------------------------------------------------------------------------------

    def _parse(self, ex: _Exchange) -> None:
        buf = self.buf
        pos = 0
        end = len(buf)
        state = self.state
        remaining = self.remaining
        out: list[bytearray] = []
        while True:
            if state == _CHUNK_SIZE:
                i = buf.find(b"\r\n", pos)
                if i < 0:
                    if end - pos > 1024:
                        raise _ProtocolError("chunk size line too long")
                    break
                try:
                    remaining = int(buf[pos:i], 16)
                except ValueError:  # a chunk extension (";name=value")
                    remaining = int(buf[pos:i].split(b";", 1)[0], 16)
                if remaining < 0:
                    raise _ProtocolError("negative chunk size")
                pos = i + 2
                stop = pos + remaining
                if remaining and stop + 2 <= end:  # the usual case: the whole chunk is here
                    if buf[stop:stop + 2] != b"\r\n":
                        raise _ProtocolError("chunk not followed by CRLF")
                    out.append(buf[pos:stop])
                    pos = stop + 2
                    continue
                state = _CHUNK_DATA if remaining else _TRAILER
            elif state == _CHUNK_DATA:
                avail = end - pos
                if avail >= remaining + 2:  # the whole chunk and its CRLF are here
                    out.append(buf[pos:pos + remaining])
                    pos += remaining
                    if buf[pos:pos + 2] != b"\r\n":
                        raise _ProtocolError("chunk not followed by CRLF")
                    pos += 2
                    state = _CHUNK_SIZE
                elif avail:
                    take = remaining if remaining < avail else avail
                    out.append(buf[pos:pos + take])
                    pos += take
                    remaining -= take
                    if remaining == 0:
                        state = _CHUNK_CRLF
                    break
                else:
                    break
            elif state == _CHUNK_CRLF:
                if end - pos < 2:
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    raise _ProtocolError("chunk not followed by CRLF")
                pos += 2
                state = _CHUNK_SIZE
            elif state == _LENGTH:
                avail = end - pos
                if not avail:
                    break
                take = remaining if remaining < avail else avail
                out.append(buf[pos:pos + take])
                pos += take
                remaining -= take
                if remaining == 0:
                    state = _DONE
                break
            elif state == _HEAD:
                i = buf.find(b"\r\n\r\n", pos)
                if i < 0:
                    if end - pos > _MAX_HEAD:
                        raise _ProtocolError("response head too large")
                    break
                head = bytes(buf[pos:i])
                pos = i + 4
                state, remaining = self._head(ex, head)
            elif state == _TRAILER:
                i = buf.find(b"\r\n", pos)
                if i < 0:
                    break
                if i == pos:
                    state = _DONE
                pos = i + 2
            elif state == _EOF:
                if end > pos:
                    out.append(buf[pos:end])
                    pos = end
                break
            if state == _DONE:
                break
        if pos:
            del buf[:pos]
        self.state = state
        self.remaining = remaining
        if out:
            piece = b"".join(out)
            ex.body.append(piece)
            if ex.stream:
                ex.queued += len(piece)
                if ex.queued > _HIGH_WATER and not self.paused and self.transport is not None:
                    self.paused = True
                    self.transport.pause_reading()
        if state == _DONE:
            if buf:  # bytes beyond the response: we never pipeline, so the peer is confused
                ex.will_close = True
                buf.clear()
            self._finish(ex)
        elif ex.stream and (out or ex.status):
            ex._wake()

    def _head(self, ex: _Exchange, head: bytes) -> tuple[int, int]:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise _ProtocolError(f"bad status line {lines[0][:80]!r}")
        status = int(parts[1])
        if 100 <= status < 200 and status != 101:
            return _HEAD, 0  # informational (100 Continue): the real response follows
        close = parts[0] == b"HTTP/1.0"
        length = -1
        chunked = False
        headers = ex.headers
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise _ProtocolError(f"bad header line {line[:80]!r}")
            value = value.strip()
            headers.append((name, value))
            lower = name.lower()
            if lower == b"content-length":
                length = int(value)
                if length < 0:
                    raise _ProtocolError("negative Content-Length")
            elif lower == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lower == b"connection":
                tokens = value.lower()
                if b"close" in tokens:
                    close = True
                elif b"keep-alive" in tokens:
                    close = False
            elif lower == b"content-encoding":
                ex.encoded = value.lower() not in (b"", b"identity")
            elif lower == b"set-cookie":
                ex.cookies = True
        ex.status = status
        ex.reason = parts[2] if len(parts) > 2 else b""
        ex.will_close = close
        if ex.head_only or status in (204, 304) or status == 101:
            return _DONE, 0
        if chunked:
            return _CHUNK_SIZE, 0
        if length >= 0:
            return (_LENGTH, length) if length else (_DONE, 0)
        ex.will_close = True
        return _EOF, 0

    def _finish(self, ex: _Exchange) -> None:
        ex.done = True
        ex._wake()
        self.release(ex)  # a stream's unread pieces stay with the exchange

    def release(self, ex: _Exchange) -> None:
        """The exchange is over: keep the connection for the next request, or close it."""
        if self.ex is not ex:
            return
        self.ex = None
        if ex.done and not ex.will_close and not self.closed:
            if self.paused and self.transport is not None:
                self.paused = False
                self.transport.resume_reading()
            self.pool._put(self)
        else:
            self.close()


class _Pool:
    """Keep-alive connections to one (host, port), at most ``max_connections`` at once."""

    def __init__(self, host: str, port: int, limits: httpx.Limits) -> None:
        self.loop = asyncio.get_running_loop()
        self.host = host
        self.port = port
        self.max_connections = limits.max_connections
        self.max_idle = limits.max_keepalive_connections
        self.expiry = limits.keepalive_expiry
        self.idle: list[_Conn] = []
        self.total = 0
        self.waiters: collections.deque[asyncio.Future[_Conn | None]] = collections.deque()
        self.closed = False
        self.created = 0

    async def acquire(self, timeouts: Timeouts, fresh: bool = False) -> _Conn:
        if self.closed:
            raise httpx.ConnectError("connection pool is closed")
        idle = self.idle
        now = self.loop.time()
        while idle and not fresh:
            conn = idle.pop()
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                conn.close()
                continue
            if self.expiry is not None and now - conn.idle_since > self.expiry:
                conn.close()
                continue
            return conn
        if self.max_connections is not None and self.total >= self.max_connections:
            if fresh and idle:  # make room: drop an idle connection
                idle.pop(0).close()
            else:
                conn_or_none = await self._wait(timeouts[2])
                if conn_or_none is not None:
                    return conn_or_none
        self.total += 1
        try:
            return await self._connect(timeouts[0])
        except BaseException:
            self.total -= 1
            self._wake_one()
            raise

    async def _wait(self, timeout: float | None) -> _Conn | None:
        fut: asyncio.Future[_Conn | None] = self.loop.create_future()
        self.waiters.append(fut)
        try:
            if timeout is None:
                return await fut
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise httpx.PoolTimeout("timed out waiting for a free connection") from None
        except BaseException:
            if fut.done() and not fut.cancelled():  # handed a connection we no longer want
                conn = fut.result()
                if conn is not None:
                    self._put(conn)
                else:
                    self._wake_one()
            else:
                with contextlib.suppress(ValueError):
                    self.waiters.remove(fut)
            raise

    async def _connect(self, timeout: float | None) -> _Conn:
        conn = _Conn(self)
        try:
            connect = self.loop.create_connection(lambda: conn, self.host, self.port)
            if timeout is None:
                await connect
            else:
                await asyncio.wait_for(connect, timeout)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connect to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        self.created += 1
        return conn

    def _put(self, conn: _Conn) -> None:
        """A connection is free again: to the first waiter, else to the idle stack."""
        if self.closed or conn.closed:
            conn.close()
            return
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        if self.max_idle is not None and len(self.idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = self.loop.time()
        self.idle.append(conn)

    def _lost(self, conn: _Conn) -> None:
        """A connection closed (by us or the peer): forget it and let a waiter open a new one."""
        if conn.counted_out:
            return
        conn.counted_out = True
        self.total -= 1
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)
        self._wake_one()

    def _wake_one(self) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def in_use(self) -> int:
        return self.total - len(self.idle)

    def close(self) -> None:
        self.closed = True
        for conn in list(self.idle):
            conn.close()
        self.idle.clear()
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(httpx.ConnectError("connection pool is closed"))


async def _wait(ex: _Exchange, read_timeout: float | None) -> None:
    """Wait for the next event of ``ex`` (head, data, end or failure) within the read timeout."""
    conn = ex.conn
    loop = conn.loop
    fut: asyncio.Future[None] = loop.create_future()
    ex.waiter = fut
    if read_timeout is None:
        await fut
        return
    conn.arm(read_timeout)
    await fut


class FastStream(httpx.AsyncByteStream):
    """The body of a streamed fast response; closing it early closes its connection."""

    def __init__(self, ex: _Exchange, read_timeout: float | None) -> None:
        self._ex = ex
        self._read_timeout = read_timeout
        self._closed = False

    @property
    def plain(self) -> bool:
        """The body is not content-encoded (its pieces are the bytes as sent)."""
        return not self._ex.encoded

    async def _next(self) -> bytes | None:
        ex = self._ex
        while True:
            if ex.body:
                piece = ex.body.popleft()
                ex.conn.consumed(ex, len(piece))
                return piece
            if ex.done:
                ex.conn.release(ex)
                return None
            if ex.error is not None:
                raise ex.error
            if self._closed:
                raise httpx.StreamClosed()
            try:
                await _wait(ex, self._read_timeout)
            except BaseException:
                self._abort()
                raise

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            piece = await self._next()
            if piece is None:
                return
            yield piece

    async def line_batches(self) -> AsyncIterator[list[bytes]]:
        """The body as lists of non-blank ``\\n``-separated lines, one list per arrival."""
        pending: list[bytes] = []
        while True:
            piece = await self._next()
            if piece is None:
                break
            if b"\n" not in piece:
                pending.append(piece)
                continue
            if pending:
                pending.append(piece)
                piece = b"".join(pending)
                pending = []
            lines = piece.split(b"\n")
            tail = lines.pop()
            if tail:
                pending.append(tail)
            batch = [line for line in lines if line and not line.isspace()]
            if batch:
                yield batch
        if pending:
            last = b"".join(pending)
            if not last.isspace():
                yield [last]

    def _abort(self) -> None:
        ex = self._ex
        if not ex.done:
            ex.will_close = True
        ex.conn.release(ex)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._abort()


def _set_content(response: httpx.Response, body: bytes) -> None:
    # What ``Response.read()`` stores, without its decoder pipeline (~10 µs) for plain bodies.
    response._content = body
    response.is_stream_consumed = True
    response.is_closed = True


class FastSender:
    """Sends one client's requests over a :class:`_Pool`; see the module docstring."""

    def __init__(self, base_url: str, limits: httpx.Limits, auth_header: bytes | None = None) -> None:
        url = httpx.URL(base_url)
        self._auth_header = auth_header
        self._base_url = base_url
        self._host = url.host
        self._port = url.port or 80
        self._host_header = b"Host: " + url.netloc + b"\r\n"
        self._base_path = url.raw_path.rstrip(b"/")
        self._limits = limits
        self._pool: _Pool | None = None
        self._targets: dict[str, bytes] = {}
        self._header_src: list[tuple[bytes, bytes]] = []
        self._header_block = b""
        self._timeout_src: object = None
        self._timeouts: Timeouts = (None, None, None)
        self._closed = False

    @staticmethod
    def usable(http: httpx.AsyncClient, transport: object) -> bool:
        """The per-request part of eligibility: the httpx client is still as we made it."""
        hooks = http._event_hooks
        return (
            _unpatched()
            and http._transport is transport
            and not hooks["request"]
            and not hooks["response"]
            and http._auth is None
            and not http._cookies.jar
            and not http._params
        )

    def in_use(self) -> int:
        """Connections busy with a request right now."""
        return self._pool.in_use() if self._pool is not None else 0

    def _target(self, path: str) -> bytes:
        target = self._targets.get(path)
        if target is None:
            target = httpx.URL(self._base_url + path).raw_path
            if len(self._targets) > 256:
                self._targets.clear()
            self._targets[path] = target
        return target

    def _headers(self, http: httpx.AsyncClient) -> bytes:
        raw = http.headers.raw
        if raw != self._header_src:
            self._header_src = raw
            self._header_block = b"".join(k + b": " + v + b"\r\n" for k, v in raw)
        return self._header_block

    def timeouts(self, timeout: Any) -> Timeouts:
        if timeout is self._timeout_src:
            return self._timeouts
        t = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        result = (t.connect, t.read, t.pool)
        self._timeout_src, self._timeouts = timeout, result
        return result

    async def send(
        self,
        http: httpx.AsyncClient,
        method: str,
        path: str,
        body: bytes | None,
        extra_headers: Mapping[str, str] | None,
        timeout: Any,
        stream: bool,
    ) -> httpx.Response | None:
        """Send one request; ``None`` means "send it through httpx instead" (a redirect)."""
        if self._closed:
            raise httpx.ConnectError("connection pool is closed")
        pool = self._pool
        if pool is None:
            pool = self._pool = _Pool(self._host, self._port, self._limits)
        timeouts = self.timeouts(timeout)
        head = [method.encode(), b" ", self._target(path), b" HTTP/1.1\r\n", self._host_header, self._headers(http)]
        if extra_headers:
            head.extend(k.encode() + b": " + v.encode() + b"\r\n" for k, v in extra_headers.items())
        if self._auth_header is not None and not (
            extra_headers and any(k.lower() == "authorization" for k in extra_headers)
        ):
            head.append(self._auth_header)
        if body is not None:
            head.append(b"Content-Length: %d\r\n" % len(body))
        elif method in ("POST", "PUT", "PATCH"):
            head.append(b"Content-Length: 0\r\n")
        head.append(b"\r\n")
        request = b"".join(head)
        head_only = method == "HEAD"
        read_timeout = timeouts[1]

        conn = await pool.acquire(timeouts)
        while True:
            reused = conn.uses > 0
            ex = conn.start(request, body, stream, head_only)
            try:
                while not (ex.done or (stream and ex.status)):
                    if ex.error is not None:
                        raise ex.error
                    await _wait(ex, read_timeout)
            except httpx.RemoteProtocolError:
                conn.release(ex)
                if reused and not ex.received:  # a kept-alive connection the server had closed
                    conn = await pool.acquire(timeouts, fresh=True)
                    continue
                raise
            except BaseException:
                ex.will_close = True
                conn.release(ex)
                raise
            break

        response = httpx.Response(
            ex.status,
            headers=ex.headers,
            stream=FastStream(ex, read_timeout),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": ex.reason},
        )
        if not stream:
            data = b"".join(ex.body) if len(ex.body) != 1 else ex.body[0]
            ex.body.clear()
            if ex.encoded:
                response.stream = httpx.ByteStream(data)
                await response.aread()  # httpx decodes gzip/deflate/br/zstd
            else:
                _set_content(response, data)
        if ex.status in _REDIRECTS and http.follow_redirects:
            await response.aclose()
            return None
        if ex.cookies:
            response.request = httpx.Request(method, self._base_url + path)
            http.cookies.extract_cookies(response)
        return response

    async def aclose(self) -> None:
        self._closed = True
        if self._pool is not None:
            self._pool.close()
