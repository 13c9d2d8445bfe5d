"""Streamed replies: NDJSON lines → typed parts, and a stream object that lets go at once.

A :class:`Stream` is what ``await client.chat(..., stream=True)`` returns. Iterating it sends the
request (as the official client does: nothing is sent until the first ``async for`` step) and
yields one typed part per line. It hands its connection (and its server slot) back the moment the
caller stops:

- at the end, after the ``done`` line;
- on ``break``: the iterator the ``async for`` holds is the only strong reference to the
  generator that owns the connection, so dropping it finalises the generator right away, even
  when the caller keeps the ``Stream`` in a variable (the official client keeps the connection
  until that variable dies);
- on cancellation or an exception: the generator's ``finally`` closes the response, shielded from
  the cancellation;
- on ``await stream.aclose()`` or leaving ``async with stream:``.

Errors are typed: an ``{"error": ...}`` line raises :class:`~ollama_async.StreamError`, a stream
that ends before its final line raises :class:`~ollama_async.IncompleteStreamError`; blank lines
are skipped. Failures before the first part is handed out are retried like any request.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import anyio
import httpx
import pydantic

from ._errors import IncompleteStreamError, StreamError
from ._fast import FastStream
from ._observe import RequestMetrics, host_address
from ._transport import Call, Transport, _short
from ._wire import DEFAULT_WIRE_LIMITS, LimitExceeded

if TYPE_CHECKING:
    from ._routing import Router

__all__ = ["Stream", "iter_lines", "iter_parts"]

T = TypeVar("T")


async def iter_lines(response: httpx.Response, max_line: int = DEFAULT_WIRE_LIMITS.max_line) -> AsyncIterator[bytes]:
    """Split a response body into lines; blank lines are dropped, ``\\r\\n`` tolerated.

    A line may be megabytes long (a final chunk's ``context``): pieces are gathered in a
    bytearray, so a long line costs linear time, never quadratic. Beyond ``max_line`` bytes it
    raises :class:`~ollama_async._wire.LimitExceeded`.
    """
    pending = bytearray()
    async for chunk in response.aiter_bytes():
        start = 0
        newline = chunk.find(b"\n")
        while newline >= 0:
            if pending:
                pending += chunk[start:newline]
                line = bytes(pending)
                pending.clear()
            else:
                line = chunk[start:newline]
            if len(line) > max_line:
                raise LimitExceeded(f"an NDJSON line exceeds max_line ({max_line} bytes)", limit="max_line")
            if line and not line.isspace():
                yield line
            start = newline + 1
            newline = chunk.find(b"\n", start)
        if start < len(chunk):
            pending += chunk[start:]
            if len(pending) > max_line:
                raise LimitExceeded(f"an NDJSON line exceeds max_line ({max_line} bytes)", limit="max_line")
    if pending and not pending.isspace():
        yield bytes(pending)


async def _line_batches(response: httpx.Response, max_line: int) -> AsyncIterator[list[bytes]]:
    """Lines as :func:`iter_lines` splits them, in lists: one list per arrival on the fast path."""
    stream = response.stream
    if isinstance(stream, FastStream) and stream.plain:
        async for batch in stream.line_batches(max_line):
            yield batch
        return
    async for line in iter_lines(response, max_line):
        yield [line]


def _in_band_error(line: bytes) -> str | None:
    """The text of an ``{"error": ...}`` line, else None (cheap substring test first)."""
    if b'"error"' not in line:
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if isinstance(obj, dict) and "error" in obj:
        return str(obj["error"])
    return None


def _direct(decode: Callable[[bytes], T]) -> Callable[[bytes], T]:
    """``Model.model_validate_json`` -> the model's compiled validator: same result, ~0.3 µs less a line."""
    cls: Any = getattr(decode, "__self__", None)
    if (
        isinstance(cls, type)
        and issubclass(cls, pydantic.BaseModel)
        and getattr(decode, "__func__", None) is getattr(pydantic.BaseModel.model_validate_json, "__func__", ())
    ):
        return cast("Callable[[bytes], T]", cls.__pydantic_validator__.validate_json)
    return decode


async def iter_parts(
    transport: Transport | Router,
    call: Call,
    decode: Callable[[bytes], T],
    is_final: Callable[[T], bool],
) -> AsyncGenerator[T, None]:
    """Send ``call`` and yield its decoded parts; see the module docstring for the guarantees."""
    url = transport.url(call.path)
    decode = _direct(decode)
    observer = transport.observer
    metrics = observer.start(transport, call, True)
    attempt = 0
    while True:
        try:
            response, lease = await transport.open(call, stream=True)
        except BaseException as exc:
            observer.failed(call, exc)
            raise
        if (host := response.extensions.get("ollama_async.host")) is not None:  # several hosts: the one chosen
            url = host + call.path
            if metrics is not None:
                metrics.host = host_address(host)
        on_final = response.extensions.get("ollama_async.on_final")  # several hosts: learn its service time
        handed = 0
        final = False
        last: object = None  # the final part: its timings feed the limiter
        retry_delay: float | None = None
        try:
            try:
                async for batch in _line_batches(response, transport.wire.max_line):
                    if metrics is not None and metrics.time_to_first_token is None:
                        metrics.time_to_first_token = metrics._elapsed()
                    for line in batch:
                        if b'"error"' in line and (error := _in_band_error(line)) is not None:
                            raise StreamError(
                                error, chunks_received=handed, method=call.method, url=url, model=call.model
                            )
                        try:
                            part = decode(line)
                        except pydantic.ValidationError as exc:
                            raise StreamError(
                                f"invalid line in stream: {_short(exc)}; line starts {line[:120]!r}",
                                chunks_received=handed, method=call.method, url=url, model=call.model,
                            ) from exc
                        handed += 1
                        if is_final(part):
                            final = True
                            last = part
                            if on_final is not None:
                                on_final(part)
                            if metrics is not None:  # complete before the caller sees the final part
                                metrics.parts = handed
                                observer.finished(metrics, part)
                        yield part
            except LimitExceeded as exc:
                raise transport.map_transport_error(exc, call) from exc
            except httpx.DecodingError as exc:
                raise IncompleteStreamError(
                    f"stream broke after {handed} parts: undecodable body: {exc}",
                    chunks_received=handed, method=call.method, url=url, model=call.model,
                ) from exc
            except httpx.TransportError as exc:
                if handed == 0 and call.retryable and attempt < transport.retry.max_retries and not isinstance(
                    exc, httpx.TimeoutException
                ):
                    attempt += 1
                    retry_delay = transport.retry.delay(attempt)
                    observer.retrying(call, attempt, transport.retry.max_retries, retry_delay,
                                      f"stream broke before its first part: {type(exc).__name__}")
                elif isinstance(exc, httpx.TimeoutException):
                    raise transport.map_transport_error(exc, call) from exc
                else:
                    raise IncompleteStreamError(
                        f"stream broke after {handed} parts without its final line: {type(exc).__name__}: {exc}",
                        chunks_received=handed, method=call.method, url=url, model=call.model,
                    ) from exc
            else:
                if not final:
                    raise IncompleteStreamError(
                        f"stream ended after {handed} parts without its final line (done)",
                        chunks_received=handed, method=call.method, url=url, model=call.model,
                    )
                return
        except GeneratorExit:
            if not final:
                observer.stopped(call, handed)
            raise
        except BaseException as exc:
            if not final:
                observer.failed(call, exc, handed, streaming=True)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()
            if lease is not None:
                lease.release(reply=last)
        if retry_delay is not None:
            try:
                await anyio.sleep(retry_delay)
            except BaseException as exc:
                observer.failed(call, exc)
                raise


class Stream(Generic[T], AsyncIterator[T]):
    """The parts of one streamed reply. Iterate it once; it closes itself when you stop.

    Also an async context manager (``async with await client.chat(..., stream=True) as s``) and
    closable with :meth:`aclose`.
    """

    def __init__(self, factory: Callable[[], AsyncGenerator[T, None]], call: Call | None = None) -> None:
        self._factory = factory
        self._call = call
        self._gen: AsyncGenerator[T, None] | None = None  # strong: only when driven by __anext__
        self._weak: weakref.ref[AsyncGenerator[T, None]] | None = None
        self._used = False

    def __aiter__(self) -> AsyncIterator[T]:
        if self._gen is not None:
            return self._gen
        if self._used:
            raise RuntimeError("a Stream can be iterated only once")
        self._used = True
        gen = self._factory()
        self._weak = weakref.ref(gen)
        return gen

    async def __anext__(self) -> T:
        if self._gen is None:
            if self._used:
                raise RuntimeError("a Stream can be iterated only once")
            self._used = True
            self._gen = self._factory()
        return await self._gen.__anext__()

    @property
    def metrics(self) -> RequestMetrics | None:
        """The request's :class:`~ollama_async.RequestMetrics`: complete once the stream is over
        (its final part read, the caller stopped, or an error); None before it started."""
        return self._call.metrics if self._call is not None else None

    async def aclose(self) -> None:
        """Stop reading and release the connection now. Safe to call more than once."""
        self._used = True
        gen = self._gen if self._gen is not None else (self._weak() if self._weak is not None else None)
        if gen is not None:
            await gen.aclose()

    async def __aenter__(self) -> Stream[T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "unstarted" if not self._used else "started"
        return f"<Stream {state}>"
