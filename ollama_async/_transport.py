"""The path of a request: limit → send → retry → map errors → decode.

One :class:`Transport` per client owns the single ``httpx.AsyncClient`` connection pool, the
timeouts, the retry policy and the translation of every failure into the library's exceptions.
Endpoint methods (``_client.py``) only build a :class:`Call` and say how to decode the reply;
streamed replies are read by ``_streaming.py`` on top of :meth:`Transport.open`.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import ssl
import sys
import time
from collections.abc import AsyncIterable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import anyio
import httpx
import pydantic

from ._errors import (
    CONNECTION_ERROR_MESSAGE,
    ClientClosedError,
    EventLoopError,
    ModelNotFoundError,
    OllamaConnectionError,
    OllamaError,
    OllamaTimeoutError,
    RequestError,
    ResponseError,
    ResponseTooLargeError,
    ServerBusyError,
)
from ._fast import FastSender, eligible, read_capped
from ._host import ApiKeyAuth
from ._limits import Lease, Limits
from ._observe import Observer, RequestMetrics
from ._wire import (
    DEFAULT_WIRE_LIMITS,
    LimitExceeded,
    WireLimits,
    check_header_pairs,
    check_headers,
    check_host,
)

__all__ = ["DEFAULT_TIMEOUT", "Call", "RetryPolicy", "Transport"]

T = TypeVar("T")

#: Connect fast, but let a read wait through a model load of minutes (OLLAMA_LOAD_TIMEOUT is 5m,
#: and generate/chat headers arrive only with the first token). No pool timeout: the limiter
#: already bounds what waits for a connection.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=None)

TimeoutInput = float | httpx.Timeout | None

#: Pool sized for high fan-out against one host; connections are kept alive between requests.
DEFAULT_POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=30.0)

Body = bytes | Callable[[], AsyncIterable[bytes]] | None


@dataclass(frozen=True)
class RetryPolicy:
    """What is retried, how often, and how long to wait in between.

    Only failures before anything of the response reached the caller are retried: connection
    errors and the statuses that say "not now" (429, 502, 503, 504), with exponential backoff and
    jitter, honouring ``Retry-After``. Never 400/404/500: the same request would fail again.
    """

    max_retries: int = 2
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    retry_after_max: float = 60.0
    retry_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 502, 503, 504}))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_max)
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return float(ceiling * random.uniform(0.5, 1.0))


@dataclass
class Call:
    """One request to make: what the endpoint method built, and how the transport treats it."""

    method: str
    path: str
    body: Body = None
    model: str | None = None  # the model whose slot the request needs (None: not limited)
    timeout: Any = None  # httpx timeout for this call; ``_NO_OVERRIDE`` keeps the client's
    retryable: bool = True
    headers: Mapping[str, str] | None = None
    affinity: str | None = None  # multi-host: keep requests of one key on one host (``_routing.py``)
    metrics: RequestMetrics | None = None  # set when the request starts (``_observe.py``)
    options: Mapping[str, Any] | None = None  # the body's model options, for telemetry (``_otel.py``)


class _NoOverride:
    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _NoOverride()


def _loop_token() -> object:
    """The running event loop (asyncio) or trio run, whichever the caller is in."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        trio = sys.modules.get("trio")
        if trio is None:
            raise
        return trio.lowlevel.current_trio_token()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


_RETRYABLE_TRANSPORT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
)

#: How much of an error status's body is read for its message (the rest is not waited for).
_ERROR_BODY_MAX = 64 * 1024


async def _discard_desynced(http_transport: object) -> None:
    """Close idle httpcore connections that hold bytes beyond their last response.

    h11 keeps bytes that arrived after a complete response (a second reply nobody asked for)
    and would hand them to the next request on that connection as its response. The fast path
    closes such a connection; this makes the httpx path do the same.
    """
    pool = getattr(http_transport, "_pool", None)
    for conn in list(getattr(pool, "connections", ())):
        state = getattr(getattr(conn, "_connection", None), "_h11_state", None)
        if state is not None and conn.is_idle() and state.trailing_data[0]:
            await conn.aclose()


class Transport:
    """The connection pool and everything between building a request and holding its reply."""

    #: logs, metrics, hooks and telemetry of the client; this default measures nothing
    observer: Observer = Observer(metrics=False)

    def __init__(
        self,
        base_url: str,
        *,
        http_client: httpx.AsyncClient | None,
        timeout: TimeoutInput,
        retry: RetryPolicy,
        headers: Mapping[str, str],
        auth: httpx.Auth | None,
        limits: Limits,
        httpx_kwargs: Mapping[str, Any],
        wire: WireLimits = DEFAULT_WIRE_LIMITS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        check_host(self.base_url)
        check_headers(headers)  # before anything is sent, on both paths
        if isinstance(auth, ApiKeyAuth):
            check_headers({"Authorization": auth.header_value})  # OLLAMA_API_KEY
        self.retry = retry
        self.limits = limits
        self.wire = wire
        self._auth = auth
        self._owns_http = http_client is None
        #: our own HTTP/1.1 pool under asyncio where it cannot change behaviour (``_fast.py``)
        self._fast: FastSender | None = None
        if http_client is None:
            kwargs: dict[str, Any] = {"follow_redirects": True, "limits": DEFAULT_POOL_LIMITS}
            kwargs.update(httpx_kwargs)
            http_client = httpx.AsyncClient(timeout=timeout, headers=dict(headers), **kwargs)
            self._headers: dict[str, str] | None = None
            auth_header = _fast_auth_header(auth, self.base_url)
            if auth_header is not False and eligible(self.base_url, http_client, httpx_kwargs):
                self._fast = FastSender(self.base_url, kwargs["limits"], auth_header, wire)
        else:
            self._headers = dict(headers)  # a caller's client: send ours per request
        self.http = http_client
        self._checked_headers: list[tuple[bytes, bytes, bytes]] = []
        self._http_transport = http_client._transport
        self._loop: object | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the pool (not a pool the caller injected: that one is theirs)."""
        self._closed = True
        if self._owns_http:
            if self._fast is not None:
                await self._fast.aclose()
            await self.http.aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_usable(self) -> None:
        if self._closed:
            raise ClientClosedError("this AsyncClient is closed; create a new one")
        token = _loop_token()
        if self._loop is None:
            self._loop = token
        elif token is not self._loop:
            raise EventLoopError(
                "this AsyncClient's connections belong to another event loop than the one running "
                "now; create one AsyncClient per event loop (e.g. inside the async function or fixture "
                "that uses it)"
            )

    # -- sending ------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.base_url + path

    def _build(self, call: Call) -> httpx.Request:
        body = call.body
        content: Any = body() if callable(body) else body
        headers = self._headers
        if call.headers:
            headers = {**(headers or {}), **call.headers}
        if call.timeout is NOT_GIVEN:
            return self.http.build_request(call.method, self.url(call.path), content=content, headers=headers)
        return self.http.build_request(
            call.method, self.url(call.path), content=content, headers=headers, timeout=call.timeout
        )

    async def _send(self, call: Call, stream: bool) -> httpx.Response:
        """One attempt: through the fast pool where it applies, else through httpx."""
        fast = self._fast
        if (
            fast is not None
            and isinstance(self._loop, asyncio.AbstractEventLoop)
            and not callable(call.body)
            and FastSender.usable(self.http, self._http_transport)
        ):
            timeout = self.http.timeout if call.timeout is NOT_GIVEN else call.timeout
            return await fast.send(self.http, call.method, call.path, call.body, call.headers, timeout, stream)
        await _discard_desynced(self._http_transport)
        response = await self.http.send(self._build(call), stream=True, auth=self._auth)
        if not stream:
            await read_capped(response, self.wire.max_body)
            await _discard_desynced(self._http_transport)
        return response

    def active_connections(self) -> int:
        """Connections of this client's own pools that are busy with a request right now."""
        busy = self._fast.in_use() if self._fast is not None else 0
        pool = getattr(self._http_transport, "_pool", None)
        for conn in getattr(pool, "connections", ()):
            if not conn.is_idle() and not conn.is_closed():
                busy += 1
        return busy

    async def open(self, call: Call, *, stream: bool) -> tuple[httpx.Response, Lease | None]:
        """Send ``call`` until it gets a non-error status; return the response and its slot.

        With ``stream=False`` the body has been read; otherwise the caller reads it and must
        close the response and release the lease. Raises the mapped error once retries are spent.
        """
        self._check_usable()
        if call.headers:
            check_headers(call.headers)
        entries = self.http.headers._list  # (raw name, lower name, value): compared without copying
        if entries != self._checked_headers:  # the http_client's headers changed since the last check
            check_header_pairs((name, value) for name, _, value in entries)
            self._checked_headers = list(entries)
        policy = self.retry
        metrics = call.metrics
        limiter = await self.limits.for_call(call, self)
        attempt = 0
        while True:
            lease = await limiter.acquire() if limiter is not None else None
            if metrics is not None and lease is not None:
                metrics.slot_wait += lease.waited
            try:
                response = await self._send(call, stream)
            except httpx.TransportError as exc:
                if lease is not None:
                    lease.release()
                if call.retryable and attempt < policy.max_retries and isinstance(exc, _RETRYABLE_TRANSPORT):
                    attempt += 1
                    delay = policy.delay(attempt)
                    self.observer.retrying(call, attempt, policy.max_retries, delay, type(exc).__name__)
                    await anyio.sleep(delay)
                    continue
                raise self.map_transport_error(exc, call) from exc
            except httpx.HTTPError as exc:  # DecodingError, TooManyRedirects, ...: not retried
                if lease is not None:
                    lease.release()
                raise self.map_http_error(exc, call) from exc
            except BaseException:
                if lease is not None:
                    lease.release()
                raise
            status = response.status_code
            if status < 400:
                if metrics is not None:
                    metrics.status, metrics.time_to_first_byte = status, metrics._elapsed()
                return response, lease
            try:
                if stream:  # not shielded: a cancel scope around the call still ends it
                    await read_capped(response, _ERROR_BODY_MAX, truncate=True)
            except httpx.HTTPError:
                response._content = b""  # the status alone makes the error
            finally:
                if stream:
                    with anyio.CancelScope(shield=True):
                        await response.aclose()
                if lease is not None:
                    lease.release(busy=status == 503)
            if call.retryable and attempt < policy.max_retries and status in policy.retry_statuses:
                attempt += 1
                delay = policy.delay(attempt, _retry_after(response))
                gate = status == 503 and limiter is not None
                self.observer.retrying(call, attempt, policy.max_retries, delay, f"HTTP {status}", gate)
                if status == 503 and limiter is not None:
                    limiter.busy(delay)
                await anyio.sleep(delay)
                continue
            raise self.status_error(response, call)

    async def request(self, call: Call, decode: Callable[[bytes], T]) -> T:
        """A whole (non-streamed) request: send with retries, then decode the body in one pass."""
        observer = self.observer
        metrics = observer.start(self, call, False)
        try:
            response, lease = await self.open(call, stream=False)
            reply: object = None
            try:
                result = decode(response.content)
                reply = result  # its total_duration and queue_duration feed the adaptive limiter
            except (pydantic.ValidationError, ValueError) as exc:
                raise ResponseError(
                    f"invalid response body: {_short(exc)}; body starts {response.content[:200]!r}",
                    response.status_code,
                    method=call.method,
                    url=self.url(call.path),
                    model=call.model,
                ) from exc
            finally:
                if lease is not None:
                    lease.release(reply=reply)
        except BaseException as exc:
            observer.failed(call, exc)
            raise
        if metrics is not None:
            observer.finished(metrics, result)
        return result

    # -- error mapping ------------------------------------------------------------------------

    def status_error(self, response: httpx.Response, call: Call) -> ResponseError:
        """The exception for an error status, carrying the server's text and the request."""
        status = response.status_code
        text = response.text or httpx.codes.get_reason_phrase(status)
        cls = ResponseError
        if status == 503:
            cls = ServerBusyError
        elif status == 404 and "not found" in text and text.lstrip().startswith("{"):
            cls = ModelNotFoundError
        return cls(text, status, method=call.method, url=self.url(call.path), model=call.model)

    def map_http_error(self, exc: httpx.HTTPError, call: Call) -> OllamaError:
        """Any httpx error as the library's: transport errors as below, the rest as a ResponseError."""
        if isinstance(exc, httpx.TransportError):
            return self.map_transport_error(exc, call)
        what = "too many redirects" if isinstance(exc, httpx.TooManyRedirects) else "invalid response"
        return ResponseError(f"{what}: {type(exc).__name__}: {exc}", method=call.method, url=self.url(call.path),
                             model=call.model)

    def map_transport_error(self, exc: httpx.TransportError, call: Call) -> OllamaError:
        url = self.url(call.path)
        if isinstance(exc, LimitExceeded):
            return ResponseTooLargeError(str(exc), limit=exc.limit, method=call.method, url=url, model=call.model)
        if isinstance(exc, httpx.LocalProtocolError):  # h11 refused what we were about to send
            return RequestError(f"cannot be sent: {exc}", field="headers")
        if isinstance(exc, httpx.TimeoutException):
            phase = {
                httpx.ConnectTimeout: "connect",
                httpx.ReadTimeout: "read",
                httpx.WriteTimeout: "write",
                httpx.PoolTimeout: "pool",
            }.get(type(exc), "read")
            configured = self.http.timeout if call.timeout is NOT_GIVEN else call.timeout
            return OllamaTimeoutError(
                f"{phase} timeout after {_timeout_of(exc, phase, configured)}", phase=phase, method=call.method, url=url,
                model=call.model,
            )
        if isinstance(exc, httpx.ConnectError):
            tls = _tls_failure(exc) if self.base_url.startswith("https://") else None
            if tls is not None:
                hint = ""
                if tls == "plain":  # the reply was not TLS at all: most likely a plain-HTTP Ollama
                    hint = f"; the server there speaks plain HTTP (as Ollama does), use http://{self.base_url[8:]}"
                return OllamaConnectionError(f"the TLS handshake with {self.base_url} failed ({exc}){hint}",
                                             method=call.method, url=url, plain_http=tls == "plain")
            return OllamaConnectionError(f"{CONNECTION_ERROR_MESSAGE} ({exc or type(exc).__name__})",
                                         method=call.method, url=url)
        return OllamaConnectionError(f"connection to {self.base_url} failed: {type(exc).__name__}: {exc}",
                                     method=call.method, url=url)


def _fast_auth_header(auth: httpx.Auth | None, base_url: str) -> bytes | Literal[False] | None:
    """The header our API-key auth adds for ``base_url`` (None: none; False: unknown auth)."""
    if auth is None:
        return None
    if not isinstance(auth, ApiKeyAuth):
        return False
    probe = httpx.Request("GET", base_url)
    next(auth.auth_flow(probe))
    value = probe.headers.get("authorization")
    return None if value is None else b"Authorization: " + value.encode() + b"\r\n"


#: What OpenSSL says when the peer's first bytes are not a TLS record (a plain-HTTP reply).
_NOT_TLS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "record layer failure", "PACKET_LENGTH_TOO_LONG",
            "HTTP_REQUEST", "wrong version number")


def _tls_failure(exc: BaseException) -> str | None:
    """``"plain"``: the TLS handshake got a reply that is not TLS; ``"tls"``: it failed otherwise
    (a certificate, a protocol version); None: the failure was not in the TLS handshake."""
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen)
        if isinstance(seen, ssl.SSLError) or "[SSL" in text:
            return "plain" if any(word in text for word in _NOT_TLS) else "tls"
        seen = seen.__cause__ or seen.__context__
    return None


def _timeout_of(exc: httpx.TimeoutException, phase: str, configured: Any) -> str:
    """The limit that expired: from the request httpx sent, else the call's or client's setting."""
    try:
        value = exc.request.extensions.get("timeout", {}).get(phase)
    except RuntimeError:  # raised by the fast path: no httpx request behind it
        try:
            value = getattr(httpx.Timeout(configured), phase)
        except (TypeError, ValueError):
            value = None
    return f"{value:g}s" if isinstance(value, (int, float)) and math.isfinite(value) else "the configured limit"


def _short(exc: Exception) -> str:
    if isinstance(exc, pydantic.ValidationError):
        errors = exc.errors(include_url=False)
        if not errors:
            return str(exc)
        first = errors[0]
        loc = ".".join(str(p) for p in first["loc"])
        return f"{loc or 'body'}: {first['msg']}" + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else "")
    return str(exc)
