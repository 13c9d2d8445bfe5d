"""The client's own HTTP/1.1 connection pool under asyncio (private), framed by llhttp.

Why: per request, ``httpx.AsyncClient.send`` + httpcore + h11 cost more CPU than everything
else the client does, and httpcore's pool re-scans every queued request against every connection
on each state change (quadratic at high concurrency). Against one plain-HTTP Ollama server the
client needs very little of that machinery: keep-alive connections to one host, timeouts, and an
HTTP/1.1 response parser. The parser is llhttp (Node.js's, through ``httptools``): about 1.4 µs a
response against h11's 34 µs (``benchmarks/README.md``), and stricter than h11 wherever the two
differ (conflicting or signed Content-Lengths, ``0x`` chunk sizes, bad status codes, bare LF,
control characters, a 101 nobody asked for). What llhttp allows and h11 does not is refused here
(a Transfer-Encoding other than ``chunked``, an HTTP version other than 1.0/1.1), so this path
accepts no response the httpx path would refuse; the one thing llhttp refuses and RFC 9112 asks a
client to accept, obs-fold, is unfolded before parsing (:func:`_unfold`). Hand-written code keeps only the pool, the
timeouts and the hand-over: ordinary ``httpx.Response`` objects, so the rest of the client
(retries, error mapping, streaming) is the same on both paths.

It is used only where it cannot change behaviour (see :func:`eligible` and
:meth:`FastSender.usable`): the :class:`~ollama_async.AsyncClient` created its own
``httpx.AsyncClient`` with no transport, proxy, TLS, auth, cookie or hook settings; the host is
``http://``; the running backend is asyncio; and nothing has patched httpx or httpcore (respx,
pytest-httpx, tracing instrumentation: they keep seeing every request). Under trio, with an
injected ``http_client``, for streamed uploads and when ``OLLAMA_ASYNC_TRANSPORT=httpx`` is set,
requests go through httpx. Redirects are followed here with httpx's own rules (each request is
sent once); a ``Set-Cookie`` reply is stored in the httpx client's jar, after which httpx carries on.

Each request is written exactly once: an idle connection found closed (or readable) is replaced
*before* anything is written; a connection that breaks after the request was written raises, and
the transport's retry policy decides. Bytes after a complete response close the connection. Failures
are the httpx exceptions httpcore would raise (``ConnectError``, ``ConnectTimeout``,
``ReadTimeout``, ``PoolTimeout``, ``RemoteProtocolError``, ``ReadError``) or
:class:`~ollama_async._wire.LimitExceeded`. The write timeout is not enforced separately: a
request body is handed to the socket at once, and a server that stops reading it runs into the
read timeout.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import select
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpcore
import httptools
import httpx

from ._wire import DEFAULT_WIRE_LIMITS, LimitExceeded, WireLimits

__all__ = ["FastSender", "FastStream", "eligible", "read_capped"]

#: httpx_kwargs that do not change how a request goes over the wire.
_NEUTRAL_KWARGS = frozenset({"follow_redirects", "limits", "trust_env", "max_redirects", "default_encoding"})

_HAS_POLL = hasattr(select, "poll")
_STALE_TRIES = 3  # connections found closed before writing, replaced per request (a server closing every one)
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


class _Stop(Exception):
    """Raised from a parser callback to stop parsing (the rest of the bytes is not ours)."""


class _Bad(Exception):
    """Raised from a parser callback: the response is not one h11 would accept either."""


class _Exchange:
    """One request/response on a connection: the llhttp parser's callbacks fill it in."""

    __slots__ = (
        "body",
        "complete",
        "conn",
        "cookies",
        "done",
        "encoded",
        "eof_body",
        "error",
        "extra",
        "gap",
        "head_only",
        "head_size",
        "head_timer",
        "headers",
        "informational",
        "length",
        "limits",
        "parser",
        "progress",
        "queued",
        "reason",
        "received",
        "size",
        "status",
        "stream",
        "te",
        "waiter",
        "will_close",
    )

    def __init__(self, conn: _Conn, stream: bool, head_only: bool, limits: WireLimits) -> None:
        self.conn = conn
        self.stream = stream
        self.head_only = head_only
        self.limits = limits
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.te: bytes | None = None
        self.length = -1
        self.will_close = False
        self.encoded = False  # a Content-Encoding other than identity
        self.cookies = False  # a Set-Cookie header
        self.informational = False
        self.eof_body = False  # the body ends when the server closes the connection
        self.complete = False  # the parser saw the end of the (final) message
        self.extra = False  # bytes arrived beyond the response
        self.body: collections.deque[bytes] = collections.deque()
        self.queued = 0
        self.size = 0
        self.head_size = 0
        self.gap = 0  # bytes received in a row without a body byte (head, chunk lines, trailers)
        self.progress = False
        self.done = False
        self.received = False  # any byte of the response arrived
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.head_timer: asyncio.TimerHandle | None = None

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

    # -- llhttp callbacks (httptools) -------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if self.head_size > self.limits.max_head:
            what = "trailers" if self.status else "response head"
            raise LimitExceeded(f"{what} exceed max_head ({self.limits.max_head} bytes)", limit="max_head")
        if self.status:  # a trailer: read (and bounded by max_head) but not kept
            return
        self.headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length":
            self.length = int(value)  # llhttp has checked it is digits and not a conflicting duplicate
        elif lower == b"transfer-encoding":
            self.te = value if self.te is None else self.te + b", " + value
        elif lower == b"content-encoding":
            self.encoded = value.lower() not in (b"", b"identity")
        elif lower == b"set-cookie":
            self.cookies = True

    def on_headers_complete(self) -> None:
        if self.complete:  # the head of a second response nobody asked for: not ours to read
            self.extra = True
            raise _Stop
        parser = self.parser
        assert parser is not None
        status = parser.get_status_code()
        if status < 200:  # 1xx (100 Continue, 103 Early Hints): the final response follows
            self.informational = True
            self.headers = []
            self.reason = b""
            self.te = None
            self.length = -1
            self.encoded = self.cookies = False
            return
        if parser.get_http_version() not in ("1.1", "1.0"):
            raise _Bad(f"unsupported HTTP version {parser.get_http_version()}")
        te = self.te
        if te is not None and te.strip().lower() != b"chunked":
            raise _Bad(f"unsupported Transfer-Encoding {te[:80]!r} (only chunked)")
        self.status = status
        self.will_close = not parser.should_keep_alive()
        if self.head_only:  # no body follows, whatever Content-Length says; llhttp cannot be told
            self.will_close = True
            self.complete = True
            raise _Stop
        if te is None and self.length < 0 and status not in (204, 304):
            self.eof_body = self.will_close = True
        if not self.stream and self.length > self.limits.max_body:
            raise LimitExceeded(f"response body of {self.length} bytes exceeds max_body", limit="max_body")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        n = len(body)
        self.size += n
        self.progress = True
        if self.stream:
            self.queued += n
        elif self.size > self.limits.max_body:
            raise LimitExceeded(f"response body exceeds max_body ({self.limits.max_body} bytes)", limit="max_body")

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
        else:
            self.complete = True


def _unfold(data: bytes) -> bytes:
    """Replace obs-folds (CRLF + SP/HT inside a head) with spaces, as RFC 9112 asks of a user agent.

    ``data`` is the first read of a reply. llhttp refuses obs-fold; h11 unfolds it. Same length,
    so nothing else moves. Only a head that ends within ``data`` is touched (never body bytes); a
    fold in a head spread over several reads is refused by llhttp (a typed error, never a desync).
    """
    first = data.find(b"\r\n")  # the status line is never continued
    end = data.find(b"\r\n\r\n", first)
    if first < 0 or end < 0:
        return data
    head = data[first + 2:end].replace(b"\r\n ", b"   ").replace(b"\r\n\t", b"  \t")
    return data[:first + 2] + head + data[end:]


class _Conn(asyncio.Protocol):
    """One keep-alive connection; parsing is the llhttp parser's, framing decisions are h11's."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.fd = -1
        self.poller: Any = None  # select.poll where the platform has it
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
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else -1
        if self.fd >= 0 and _HAS_POLL:  # one registered poll object: ~2 µs a check, select ~5
            self.poller = select.poll()
            self.poller.register(self.fd, select.POLLIN)

    def data_received(self, data: bytes) -> None:
        ex = self.ex
        if ex is None or ex.done or ex.parser is None:  # nothing asked: the connection is unusable
            self.close()
            return
        self.last_data = self.loop.time()
        ex.received = True
        had_status = ex.status
        ex.progress = False
        if not ex.gap and not had_status and (b"\r\n " in data or b"\r\n\t" in data):
            data = _unfold(data)  # the first read of a reply: it starts with the status line
        try:
            ex.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            cause = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else exc
            if ex.complete:  # whatever follows a complete response is not ours: deliver it, then close
                ex.will_close = True
            elif not isinstance(cause, _Stop):
                self._broken(ex, cause if cause is not None else exc)
                return
        except httptools.HttpParserUpgrade:
            self._broken(ex, _Bad("unrequested protocol upgrade (101 Switching Protocols)"))
            return
        if ex.progress:
            ex.gap = 0
        else:
            ex.gap += len(data)
            if ex.gap > ex.limits.max_head:
                what = "response head" if not ex.status else "framing (chunk lines or trailers)"
                self._broken(ex, LimitExceeded(f"{what} exceeds max_head ({ex.limits.max_head} bytes)",
                                               limit="max_head"))
                return
        if ex.complete:
            if ex.extra:  # we never pipeline: the peer is confused, or trying to confuse us
                ex.will_close = True
            self._finish(ex)
            return
        if not ex.status:
            if ex.head_timer is None:  # the head did not come in one piece: bound the whole of it
                ex.head_timer = self.loop.call_later(ex.limits.head_timeout, self._head_expired, ex)
        elif ex.stream:
            if ex.queued > _HIGH_WATER and not self.paused and self.transport is not None:
                self.paused = True
                self.transport.pause_reading()
            if ex.progress or not had_status:
                ex._wake()

    def _broken(self, ex: _Exchange, cause: BaseException) -> None:
        if isinstance(cause, httpx.TransportError):
            ex.fail(cause)
        else:
            ex.fail(httpx.RemoteProtocolError(f"invalid HTTP response: {cause}"))
        self.close()

    def _head_expired(self, ex: _Exchange) -> None:
        ex.head_timer = None
        if self.ex is ex and not ex.status and not ex.done:
            self._broken(ex, httpx.ReadTimeout(
                f"response head not complete {ex.limits.head_timeout:g}s after its first byte"))

    def eof_received(self) -> bool | None:
        ex = self.ex
        if ex is not None and not ex.done and ex.eof_body and ex.status:
            ex.complete = True  # a clean close ends a close-delimited body (a reset does not)
            self._finish(ex)
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        ex = self.ex
        if ex is not None and not ex.done:
            if not ex.received:
                ex.fail(httpx.RemoteProtocolError("Server disconnected without sending a response."))
            elif isinstance(exc, OSError):
                ex.fail(httpx.ReadError(f"connection broken while reading the response: {exc}"))
            else:
                ex.fail(httpx.RemoteProtocolError("peer closed connection without sending complete message body"))
        self.pool._lost(self)

    def pause_writing(self) -> None:  # request bodies are handed over whole; nothing to pause
        pass

    def resume_writing(self) -> None:
        pass

    # -- use ------------------------------------------------------------------------------------

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._disarm()
            ex = self.ex
            if ex is not None:
                ex.fail(httpx.ReadError("connection closed"))
            if self.transport is not None:
                self.transport.close()
            self.pool._lost(self)

    def abort(self) -> None:
        """Close at once (a connection abandoned half-made)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self.pool._lost(self)

    def stale(self) -> bool:
        """An idle connection that cannot carry a request: closed, or readable (EOF or junk)."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return True
        if self.fd < 0:
            return False
        try:
            if self.poller is not None:
                return bool(self.poller.poll(0))
            readable, _, _ = select.select((self.fd,), (), (), 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

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
        if ex is None or ex.waiter is None or timeout is None:
            return  # nobody is waiting: stay disarmed until the next wait
        idle = self.loop.time() - self.last_data
        if idle >= timeout - 1e-3:
            ex.fail(httpx.ReadTimeout(f"read timed out after {timeout:g}s"))
        else:
            self.timer = self.loop.call_at(self.last_data + timeout, self._check_timeout)

    def start(self, request: bytes, body: bytes | None, stream: bool, head_only: bool,
              limits: WireLimits) -> _Exchange:
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            # found closed before anything was written (accept-and-close): nothing was sent
            self.close()
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        ex = _Exchange(self, stream, head_only, limits)
        self.ex = ex
        self.uses += 1
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

    def _finish(self, ex: _Exchange) -> None:
        ex.done = True
        ex._wake()
        self.release(ex)  # a stream's unread pieces stay with the exchange

    def release(self, ex: _Exchange) -> None:
        """The exchange is over: keep the connection for the next request, or close it."""
        if ex.head_timer is not None:
            ex.head_timer.cancel()
            ex.head_timer = None
        ex.parser = None  # break the parser <-> exchange cycle
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
        self.conns: set[_Conn] = set()  # every open connection, idle or busy (closed by close())
        self.total = 0
        self.waiters: collections.deque[asyncio.Future[_Conn | None]] = collections.deque()
        self.closed = False
        self.created = 0
        self.stale = 0  # idle connections found closed (or readable) before a request was written

    async def acquire(self, timeouts: Timeouts) -> _Conn:
        if self.closed:
            raise httpx.ConnectError("connection pool is closed")
        idle = self.idle
        now = self.loop.time()
        while idle:
            conn = idle.pop()
            if self.expiry is not None and now - conn.idle_since > self.expiry:
                conn.close()
                continue
            return conn  # checked for staleness by the caller, as connections from _wait are
        if self.max_connections is not None and self.total >= self.max_connections:
            conn_or_none = await self._wait(timeouts[2])
            if conn_or_none is not None:
                return conn_or_none
        return await self._connect(timeouts[0])

    async def _wait(self, timeout: float | None) -> _Conn | None:
        fut: asyncio.Future[_Conn | None] = self.loop.create_future()
        self.waiters.append(fut)
        try:
            if timeout is None:
                return await fut
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
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
        self.total += 1  # counted down exactly once, by _lost (connection_lost or a failed connect)
        self.conns.add(conn)
        try:
            connect = self.loop.create_connection(lambda: conn, self.host, self.port)
            if timeout is None:
                await connect
            else:
                await asyncio.wait_for(connect, timeout)
        except BaseException as exc:
            conn.abort()
            if isinstance(exc, asyncio.TimeoutError):
                raise httpx.ConnectTimeout(f"connect to {self.host}:{self.port} timed out") from None
            if isinstance(exc, OSError):
                raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
            raise
        if self.closed:  # the client closed while we connected
            conn.close()
            raise httpx.ConnectError("connection pool is closed")
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
        self.conns.discard(conn)
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
        """Close every connection, busy ones too: a stream still open fails with a read error."""
        self.closed = True
        for conn in list(self.conns):
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

    async def line_batches(self, max_line: int) -> AsyncIterator[list[bytes]]:
        """The body as lists of non-blank ``\\n``-separated lines, one list per arrival.

        A line longer than ``max_line`` bytes raises :class:`LimitExceeded`.
        """
        pending: list[bytes] = []
        pending_size = 0
        while True:
            piece = await self._next()
            if piece is None:
                break
            if b"\n" not in piece:
                pending.append(piece)
                pending_size += len(piece)
                if pending_size > max_line:
                    raise LimitExceeded(f"an NDJSON line exceeds max_line ({max_line} bytes)", limit="max_line")
                continue
            if pending:
                pending.append(piece)
                piece = b"".join(pending)
                pending = []
            lines = piece.split(b"\n")
            tail = lines.pop()
            pending_size = len(tail)
            if tail:
                pending.append(tail)
            if pending_size > max_line or (len(piece) > max_line and max(map(len, lines), default=0) > max_line):
                raise LimitExceeded(f"an NDJSON line exceeds max_line ({max_line} bytes)", limit="max_line")
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

    def __init__(
        self,
        base_url: str,
        limits: httpx.Limits,
        auth_header: bytes | None = None,
        wire: WireLimits = DEFAULT_WIRE_LIMITS,
    ) -> None:
        url = httpx.URL(base_url)
        self._auth_header = auth_header
        self._base_url = base_url
        self._origin = (url.scheme, url.raw_host, url.port or 80)
        self._host = url.raw_host.decode("ascii").strip("[]")  # IDNA 2008, as the Host header says
        self._port = url.port or 80
        self._host_header = b"Host: " + url.netloc + b"\r\n"
        self._limits = limits
        self._wire = wire
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

    @property
    def stale_replaced(self) -> int:
        """Idle connections found closed before a request was written to them (nothing re-sent)."""
        return self._pool.stale if self._pool is not None else 0

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
        if raw != self._header_src:  # the transport has checked them (Transport.check_client_headers)
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
    ) -> httpx.Response:
        """Send one request (its headers were checked by the transport) and follow redirects."""
        if self._closed:
            raise httpx.ConnectError("connection pool is closed")
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
        response = await self._roundtrip(b"".join(head), body, method == "HEAD", stream, timeouts)
        if response.status_code in _REDIRECTS and http.follow_redirects and "location" in response.headers:
            return await self._follow(http, method, path, body, extra_headers, response, stream, timeouts)
        if response.extensions.get("ollama_async.set_cookie"):
            response.request = httpx.Request(method, self._base_url + path)
            http.cookies.extract_cookies(response)
        return response

    async def _roundtrip(
        self, request: bytes, body: bytes | None, head_only: bool, stream: bool, timeouts: Timeouts
    ) -> httpx.Response:
        """One request on one connection, sent exactly once; the response (its body read unless ``stream``)."""
        pool = self._pool
        if pool is None:
            pool = self._pool = _Pool(self._host, self._port, self._limits)
        read_timeout = timeouts[1]
        conn = await pool.acquire(timeouts)
        for _ in range(_STALE_TRIES):  # closed by the server before we wrote anything: take another
            if not conn.stale():
                break
            pool.stale += 1
            conn.close()
            conn = await pool.acquire(timeouts)
        ex = conn.start(request, body, stream, head_only, self._wire)  # raises if still closed
        try:
            while not (ex.done or (stream and ex.status)):
                if ex.error is not None:
                    raise ex.error
                await _wait(ex, read_timeout)
        except BaseException:
            ex.will_close = True
            conn.release(ex)
            raise
        response = httpx.Response(
            ex.status,
            headers=ex.headers,
            stream=FastStream(ex, read_timeout),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": ex.reason.strip(), "ollama_async.set_cookie": ex.cookies},
        )
        if not stream:
            data = b"".join(ex.body) if len(ex.body) != 1 else ex.body[0]
            ex.body.clear()
            if ex.encoded:
                response.stream = httpx.ByteStream(data)
                await read_capped(response, self._wire.max_body)  # httpx decodes gzip/deflate/br/zstd
            else:
                _set_content(response, data)
        return response

    async def _follow(
        self,
        http: httpx.AsyncClient,
        method: str,
        path: str,
        body: bytes | None,
        extra_headers: Mapping[str, str] | None,
        response: httpx.Response,
        stream: bool,
        timeouts: Timeouts,
    ) -> httpx.Response:
        """Follow redirects as httpx does (its own rules decide method, headers and body), each hop sent once.

        Hops to this pool's origin go over the pool; a hop elsewhere is handed to httpx, which
        follows the rest. More than ``http.max_redirects`` hops raise ``httpx.TooManyRedirects``.
        """
        headers = httpx.Headers(http.headers)
        if self._auth_header is not None:
            name, _, value = self._auth_header.rstrip(b"\r\n").partition(b": ")
            headers[name.decode()] = value.decode()
        headers.update(extra_headers or {})
        request = http.build_request(method, self._base_url + path, content=body, headers=headers)
        hops = 0
        while response.status_code in _REDIRECTS and "location" in response.headers:
            await response.aclose()
            if hops >= http.max_redirects:
                raise httpx.TooManyRedirects("Exceeded maximum allowed redirects.", request=request)
            hops += 1
            response.request = request
            if response.headers.get("set-cookie") is not None:
                http.cookies.extract_cookies(response)
            request = http._build_redirect_request(request, response)
            url = request.url
            if (url.scheme, url.raw_host, url.port or 80) != self._origin:
                return await http.send(request, stream=stream)
            content = await request.aread()
            head = b"".join(
                [request.method.encode(), b" ", url.raw_path, b" HTTP/1.1\r\n"]
                + [k + b": " + v + b"\r\n" for k, v in request.headers.raw]
                + [b"\r\n"]
            )
            response = await self._roundtrip(head, content or None, request.method == "HEAD", stream, timeouts)
        response.request = request
        return response

    async def aclose(self) -> None:
        self._closed = True
        if self._pool is not None:
            self._pool.close()


async def read_capped(response: httpx.Response, limit: int, *, truncate: bool = False) -> bytes:
    """``response.aread()`` bounded to ``limit`` decoded bytes, then closed.

    Beyond the limit: :class:`LimitExceeded`, or with ``truncate`` the first ``limit`` bytes (an
    error body, read for its message only).
    """
    pieces: list[bytes] = []
    size = 0
    try:
        async for piece in response.aiter_bytes():
            size += len(piece)
            if size > limit:
                if not truncate:
                    raise LimitExceeded(f"response body exceeds max_body ({limit} bytes)", limit="max_body")
                pieces.append(piece[: len(piece) - (size - limit)])
                break
            pieces.append(piece)
    finally:
        await response.aclose()
    content = b"".join(pieces)
    response._content = content
    return content
