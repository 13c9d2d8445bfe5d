"""The batch scheduler: a lazy reader, a fixed set of workers, a bounded window.

A :class:`BatchRun` is what ``client.batch.generate(...)`` returns. Nothing is sent until it is
awaited or iterated. Then:

- one *feeder* reads the input (list, iterable, generator or async iterable) lazily, groups it
  into *units* (one item; for embeddings ``batch_size`` texts) and hands them to the workers;
- a fixed number of *workers* (the batch's ``concurrency``, else the most the client's limiter
  allows for the model) each take a unit, make its request(s) and emit one :class:`BatchItem` per
  input. Every request still takes a slot of the client's per-model limiter, so the bound holds
  across batches and plain calls;
- a *window* (``max_pending`` units) bounds what has been read but not yet handed to the caller:
  memory stays flat however long the input is, and ``ordered()`` keeps at most that many results
  waiting for a slow earlier one.

``await run`` runs all of it inside the caller's task (structured: cancelling the caller cancels
every request). ``async for`` cannot hold a task group across ``yield`` safely, so iteration runs
the same scheduler in one background task that the iterator owns: cancelling the iterating task,
``break`` and ``await iterator.aclose()`` all cancel it; the first and last also wait until every
request is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from anyio.streams.memory import MemoryObjectSendStream

from .._errors import ClientClosedError, EventLoopError, OllamaError
from .._log import batch_log

__all__ = ["BatchError", "BatchItem", "BatchRun", "Progress"]

R = TypeVar("R")
T = TypeVar("T")

#: Failures that are about the run, not an item: they stop the whole batch.
FATAL = (ClientClosedError, EventLoopError)


@dataclass(slots=True)
class BatchItem(Generic[R]):
    """One input and its outcome. ``index`` is the input's position (0-based)."""

    index: int
    input: Any
    result: R | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> R:
        """The result, or raise the item's error."""
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class BatchError(OllamaError):
    """Some items failed and ``return_exceptions=False`` was asked for.

    ``errors`` maps input index to exception (every failure); ``results`` holds what ``await``
    would have returned with ``return_exceptions=True`` (exceptions in place of failed items).
    """

    def __init__(self, errors: dict[int, BaseException], results: Any, total: int) -> None:
        self.errors = errors
        self.results = results
        first = min(errors)
        super().__init__(f"{len(errors)} of {total} items failed; first, item {first}: {errors[first]!r}")


@dataclass
class Progress:
    """Live counters of a run (``run.progress``); ``done`` counts finished items, failed ones too."""

    total: int | None = None
    done: int = 0
    failed: int = 0
    in_flight: int = 0
    started: float | None = None
    finished: float | None = None
    _clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    @property
    def succeeded(self) -> int:
        return self.done - self.failed

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished if self.finished is not None else self._clock()) - self.started

    @property
    def rate(self) -> float:
        """Items finished per second since the start."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds until the end at the current rate (None while unknown)."""
        if self.total is None:
            return None
        rate = self.rate
        left = self.total - self.done
        return 0.0 if left <= 0 else (left / rate if rate > 0 else None)


ProgressArg = Callable[[Progress], object] | bool | None


@dataclass(slots=True)
class _Unit:
    seq: int
    index: int
    inputs: list[Any]


Process = Callable[[int, list[Any]], Awaitable[list[BatchItem[Any]]]]
Emit = Callable[[int, list[BatchItem[Any]]], Awaitable[None]]


class BatchRun(Generic[R]):
    """A batch that has not run yet: ``await`` it, or iterate it (once)."""

    def __init__(
        self, source: Iterable[Any] | AsyncIterable[Any], process: Process, *, unit_size: int,
        workers: Callable[[], Awaitable[int]], max_pending: Callable[[int], int], return_exceptions: bool,
        progress: ProgressArg, label: str = "batch",
    ) -> None:
        self._source = source
        self._process = process
        self._unit_size = unit_size
        self._plan_workers = workers  # asked when the run starts (it may ask the server first)
        self._plan_pending = max_pending  # the window, given the number of workers
        self._window = anyio.Semaphore(1)  # replaced by the real one when the run starts
        self._return_exceptions = return_exceptions
        self._callback = progress if callable(progress) else None
        self._bar = None
        self._label = label
        if progress is True:
            from ._progress import RichBar

            self._bar = RichBar(label)
        total = len(source) if hasattr(source, "__len__") else None  # type: ignore[arg-type]
        self.progress = Progress(total=total)
        self._used = False
        self._runners: list[_Runner] = []

    # -- the scheduler ---------------------------------------------------------------------------

    async def _drive(self, emit: Emit) -> None:
        """Feed, work, emit until the input ends. Raises what is not an item's failure.

        Whoever consumes an emitted unit calls :meth:`_consumed`, which lets the feeder read on.
        """
        workers = await self._plan_workers()
        self._window = window = anyio.Semaphore(max(self._plan_pending(workers), 1))
        send, receive = anyio.create_memory_object_stream[_Unit](0)
        progress = self.progress
        progress.started = time.monotonic()
        batch_log.info("%s: started with %d workers", self._label, workers)
        if self._bar is not None:
            self._bar.start(progress)
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(workers):
                    tg.start_soon(self._work, receive.clone(), emit)
                receive.close()
                await self._feed(send, window)
        except Exception as exc:  # the input's own error, or a fatal one: not wrapped in a group
            raise _single(exc) from None
        finally:
            progress.finished = time.monotonic()
            batch_log.info("%s: %d items done, %d failed, in %.2fs", self._label, progress.done, progress.failed,
                           progress.finished - progress.started)
            if self._bar is not None:
                self._bar.stop(progress)

    async def _feed(self, send: ObjectSendStream[_Unit], window: anyio.Semaphore) -> None:
        async with send, contextlib.aclosing(_chunks(self._source, self._unit_size)) as chunks:
            seq = index = 0
            async for inputs in chunks:
                await window.acquire()
                await send.send(_Unit(seq, index, inputs))
                seq += 1
                index += len(inputs)
            if self.progress.total is None:
                self.progress.total = index

    async def _work(self, receive: ObjectReceiveStream[_Unit], emit: Emit) -> None:
        progress = self.progress
        async with receive:
            async for unit in receive:
                n = len(unit.inputs)
                progress.in_flight += n
                try:
                    items = await self._process(unit.index, unit.inputs)
                finally:
                    progress.in_flight -= n
                progress.done += n
                progress.failed += sum(1 for item in items if item.error is not None)
                if self._callback is not None:
                    self._callback(progress)
                if self._bar is not None:
                    self._bar.update(progress)
                await emit(unit.seq, items)

    def _consumed(self) -> None:
        """A unit left the window (handed to the caller, or stored by ``await``)."""
        self._window.release()

    def _claim(self) -> None:
        if self._used:
            raise RuntimeError("a batch run can be consumed only once (await it or iterate it)")
        self._used = True

    # -- await: everything, in input order ------------------------------------------------------

    def __await__(self) -> Generator[Any, None, list[R | BaseException]]:
        """Every result in input order, an exception in place of each failed item."""
        return self._collect().__await__()

    async def _collect(self) -> Any:
        self._claim()
        items: list[BatchItem[Any] | None] = []

        async def keep(seq: int, unit: list[BatchItem[Any]]) -> None:
            self._consumed()
            last = unit[-1].index if unit else -1
            if last >= len(items):
                items.extend([None] * (last + 1 - len(items)))
            for item in unit:
                items[item.index] = item

        await self._drive(keep)
        done = [item for item in items if item is not None]
        results = self._results(done)
        errors = {item.index: item.error for item in done if item.error is not None}
        if errors and not self._return_exceptions:
            raise BatchError(errors, results, len(done))
        return results

    def _results(self, items: list[BatchItem[Any]]) -> Any:
        """What ``await`` returns; subclasses shape it (embeddings: a matrix)."""
        return [item.error if item.error is not None else item.result for item in items]

    # -- iteration: as completed, or in input order ----------------------------------------------

    def __aiter__(self) -> _Iteration[R]:
        return self._iterate(ordered=False)

    def ordered(self) -> _Iteration[R]:
        """Iterate in input order; at most ``max_pending`` results wait for a slower earlier one."""
        return self._iterate(ordered=True)

    def _iterate(self, ordered: bool) -> _Iteration[R]:
        self._claim()
        return _Iteration[R](self, ordered)

    async def aclose(self) -> None:
        """Stop an iteration in progress: cancel its requests and wait until they are gone."""
        for runner in self._runners:
            await runner.aclose()


class _Runner:
    """The background half of an iteration: the task that drives the run, and what it shares
    with the iterator. It never refers to the iterator, so dropping the iterator (``break``)
    lets ``_Iteration.__del__`` cancel it."""

    def __init__(self, run: BatchRun[Any]) -> None:
        send, self.receive = anyio.create_memory_object_stream[tuple[int, list[BatchItem[Any]]]](math.inf)
        self.finished = anyio.Event()
        self.error: BaseException | None = None
        self.scope: anyio.CancelScope | None = None
        self.cancelled = False
        self.task = _spawn(lambda: self._main(run, send))  # the asyncio task is kept referenced

    async def _main(self, run: BatchRun[Any], send: MemoryObjectSendStream[tuple[int, list[BatchItem[Any]]]]) -> None:
        async def emit(seq: int, items: list[BatchItem[Any]]) -> None:
            send.send_nowait((seq, items))  # never blocks: the window bounds what is buffered

        try:
            with anyio.CancelScope() as scope:
                self.scope = scope
                if self.cancelled:
                    scope.cancel()
                await run._drive(emit)
        except Exception as exc:
            self.error = exc
        finally:
            send.close()
            self.finished.set()

    def cancel(self) -> None:
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()

    async def aclose(self) -> None:
        self.cancel()
        with anyio.CancelScope(shield=True):
            await self.finished.wait()


class _Iteration(Generic[R]):
    """The iterator of a run: hands out the items its :class:`_Runner` produces."""

    def __init__(self, run: BatchRun[R], ordered: bool) -> None:
        self._run = run
        self._ordered = ordered
        self._items: deque[BatchItem[R]] = deque()
        self._parked: dict[int, list[BatchItem[R]]] = {}
        self._next_seq = 0
        self._runner: _Runner | None = None
        self._exhausted = False

    def __aiter__(self) -> _Iteration[R]:
        return self

    async def __anext__(self) -> BatchItem[R]:
        while not self._items:
            if self._exhausted:
                raise StopAsyncIteration
            if self._runner is None:
                self._runner = _Runner(self._run)
                self._run._runners.append(self._runner)
            try:
                await self._fill(self._runner)
            except BaseException:
                await self.aclose()
                raise
        return self._items.popleft()

    async def _fill(self, runner: _Runner) -> None:
        if self._ordered and self._next_seq in self._parked:
            self._take(runner, self._parked.pop(self._next_seq))
            return
        try:
            seq, items = await runner.receive.receive()
        except anyio.EndOfStream:
            self._exhausted = True
            await runner.finished.wait()
            if runner.error is not None:
                raise runner.error from None
            return
        if not self._ordered:
            self._run._consumed()
            self._items.extend(items)
        elif seq == self._next_seq:
            self._take(runner, items)
        else:
            self._parked[seq] = items

    def _take(self, runner: _Runner, items: list[BatchItem[R]]) -> None:
        self._run._consumed()
        self._next_seq += 1
        self._items.extend(items)

    async def aclose(self) -> None:
        """Cancel the run's requests and wait until they are gone. Safe to call more than once."""
        self._exhausted = True
        self._items.clear()
        self._parked.clear()
        if self._runner is not None:
            await self._runner.aclose()

    def __del__(self) -> None:
        # ``break`` out of ``async for`` drops the iterator: stop the requests (not waited for).
        runner = self._runner
        if runner is not None and not runner.finished.is_set():
            with contextlib.suppress(Exception):  # the loop may be gone at interpreter exit
                runner.cancel()


def _single(exc: BaseException) -> BaseException:
    """The one error inside a task group's exception group (nested groups of one included)."""
    inner = getattr(exc, "exceptions", None)
    while isinstance(inner, tuple) and len(inner) == 1 and isinstance(inner[0], BaseException):
        exc = inner[0]
        inner = getattr(exc, "exceptions", None)
    return exc


_RUNNING: set[asyncio.Task[None]] = set()  # asyncio keeps only weak references to tasks


def _spawn(main: Callable[[], Awaitable[None]]) -> asyncio.Task[None] | None:
    """Start ``main`` as a background task of the running event loop (asyncio or trio)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        import trio

        trio.lowlevel.spawn_system_task(main)
        return None

    async def run() -> None:
        await main()

    task = loop.create_task(run())
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    return task


async def _chunks(source: Iterable[T] | AsyncIterable[T], size: int) -> AsyncGenerator[list[T], None]:
    """Lists of up to ``size`` items, read lazily from a sync or async iterable."""
    chunk: list[T] = []
    if isinstance(source, AsyncIterable):
        async for item in source:
            chunk.append(item)
            if len(chunk) >= size:
                yield chunk
                chunk = []
    else:
        for item in source:
            chunk.append(item)
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk
