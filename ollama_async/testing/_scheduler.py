"""The simulated scheduler: per-model slots, a bounded load queue, one load at a time.

It follows the real server's rules (see the API doc, "Scheduling and concurrency"):

* a request for a model that is loaded with the same load-time options waits in an unbounded
  FIFO for one of the model's ``slots``;
* a request that needs a load (model not loaded, or a load-time option such as ``num_ctx``
  changed) joins a pending queue of ``max_queue``; past that it is refused at once with 503;
  the request being loaded does not count against the queue;
* one model loads at a time (a global FIFO lock); a reload waits until the model is idle;
* a request that goes away while waiting gives its place up; one that goes away while holding a
  slot frees it at once;
* models unload after ``keep_alive`` seconds idle (the request's or the server's default).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Iterable
from typing import Protocol

from ._batching import Batch
from ._models import ModelSpec, StatsCounter


class _HasRunner(Protocol):
    @property
    def runner(self) -> Runner: ...


class QueueFull(Exception):
    """The pending-load queue is full: the real server answers 503 ``server busy``."""


class Slots:
    """A FIFO counting semaphore that hands a released slot straight to the oldest waiter.

    It keeps the model's ``in_flight`` count: a slot handed over stays counted, so the count
    never dips between one request and the next it was handed to.
    """

    __slots__ = ("free", "stats", "waiters")

    def __init__(self, capacity: int, stats: StatsCounter) -> None:
        self.free = capacity
        self.stats = stats
        self.waiters: deque[asyncio.Future[float]] = deque()

    async def wait(self) -> float:
        """Wait for a slot; returns the loop time at which it was handed over (see :meth:`release`)."""
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.stats.add("requests", -1)  # handed over as we were cancelled: it never ran here
                self.release()  # pass it on
            else:
                with contextlib.suppress(ValueError):
                    self.waiters.remove(fut)
            raise

    def release(self) -> None:
        """Free a slot, or hand it to the oldest waiter, stamped with the time of the hand-over:
        the waiter's work starts then (as a real runner's next sequence does), not when its
        coroutine next runs, which a busy loop (encoding the previous reply) can delay."""
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(fut.get_loop().time())
                self.stats.add("requests")
                return
        self.free += 1
        self.stats.add("in_flight", -1)


class Runner:
    """The loaded state of one model (the real server's ``runnerRef``)."""

    __slots__ = (
        "batch",
        "context_length",
        "draining",
        "expires_at",
        "idle_waiters",
        "keep_alive_s",
        "load_opts",
        "loaded",
        "refs",
        "slots",
        "spec",
        "stats",
        "unload_handle",
    )

    def __init__(self, spec: ModelSpec, stats: StatsCounter, keep_alive_s: float) -> None:
        self.spec = spec
        self.stats = stats
        self.loaded = False
        self.load_opts: tuple[object, ...] = ()
        self.slots = Slots(spec.slots, stats)
        self.batch = _batch(spec)
        self.refs = 0
        self.keep_alive_s = keep_alive_s
        self.expires_at = 0.0
        self.draining = False
        self.idle_waiters: list[asyncio.Future[None]] = []
        self.unload_handle: asyncio.TimerHandle | None = None
        self.context_length = spec.context_length


class Scheduler:
    """Runs on the server's event loop; none of its methods are thread-safe."""

    def __init__(self, max_queue: int, keep_alive_s: float) -> None:
        self.max_queue = max_queue
        self.keep_alive_s = keep_alive_s
        self._load_lock = asyncio.Lock()
        self._queued = 0

    def bind_loop(self) -> None:
        """Fresh loop-bound primitives for a (re)start on a new event loop."""
        self._load_lock = asyncio.Lock()
        self._queued = 0

    def unload_all(self, runners: Iterable[_HasRunner]) -> None:
        """Forget every loaded model (server stop), so a restart begins cold."""
        for item in runners:
            r = item.runner
            r.loaded = False
            r.load_opts = ()
            r.refs = 0
            r.draining = False
            r.idle_waiters = []
            r.unload_handle = None
            r.slots = Slots(r.spec.slots, r.stats)
            r.batch = _batch(r.spec)
            r.stats.in_flight = 0
            r.stats.waiting = 0

    # --- runner acquisition ----------------------------------------------------------------

    async def get_runner(self, r: Runner, load_opts: tuple[object, ...], keep_alive_s: float | None) -> None:
        """Make sure ``r`` is loaded with ``load_opts`` and take a reference on it.

        Raises :class:`QueueFull` when the model needs a load and the pending queue is full.
        Every successful call must be paired with :meth:`done`.
        """
        if r.loaded and not r.draining and r.load_opts == load_opts:
            self._ref(r, keep_alive_s)
            return
        if self._queued >= self.max_queue:
            raise QueueFull
        self._queued += 1
        r.stats.add("waiting")
        try:
            await self._load_lock.acquire()
        finally:
            self._queued -= 1
            r.stats.add("waiting", -1)
        try:
            if not (r.loaded and r.load_opts == load_opts):
                if r.loaded:
                    await self._drain(r)
                    self._unload(r)
                await self._load(r, load_opts)
            self._ref(r, keep_alive_s)
        finally:
            self._load_lock.release()

    async def _drain(self, r: Runner) -> None:
        r.draining = True
        try:
            while r.refs > 0:
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                r.idle_waiters.append(fut)
                await fut
        except BaseException:
            r.draining = False
            raise

    async def _load(self, r: Runner, load_opts: tuple[object, ...]) -> None:
        if r.spec.load_ms > 0:
            await asyncio.sleep(r.spec.load_ms / 1000.0)
        r.loaded = True
        r.draining = False
        r.load_opts = load_opts
        r.slots = Slots(r.spec.slots, r.stats)
        r.batch = _batch(r.spec)
        num_ctx = load_opts[0] if load_opts else None
        r.context_length = num_ctx if isinstance(num_ctx, int) and num_ctx > 0 else r.spec.context_length
        r.stats.add("loads")

    def _ref(self, r: Runner, keep_alive_s: float | None) -> None:
        r.refs += 1
        r.keep_alive_s = self.keep_alive_s if keep_alive_s is None else keep_alive_s
        r.expires_at = _expiry(r.keep_alive_s)

    def done(self, r: Runner) -> None:
        """Drop the reference taken by :meth:`get_runner`; start the keep-alive clock when idle."""
        r.refs -= 1
        if r.refs > 0:
            return
        waiters, r.idle_waiters = r.idle_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        if not r.loaded or r.draining:
            return
        ka = r.keep_alive_s
        r.expires_at = _expiry(ka)
        if ka <= 0:
            self._unload(r)
        elif math.isfinite(ka) and r.unload_handle is None:
            # One timer per keep-alive period, not one per request: when it fires it checks
            # the current deadline and re-arms if the model was used in the meantime.
            r.unload_handle = asyncio.get_running_loop().call_later(ka, self._expire_idle, r)

    def _expire_idle(self, r: Runner) -> None:
        r.unload_handle = None
        if not r.loaded:
            return
        remaining = r.expires_at - time.time()
        if r.refs == 0 and remaining <= 0.001:
            self._unload(r)
        elif math.isfinite(r.keep_alive_s):
            delay = remaining if r.refs == 0 else r.keep_alive_s
            r.unload_handle = asyncio.get_running_loop().call_later(max(delay, 0.001), self._expire_idle, r)

    def _unload(self, r: Runner) -> None:
        r.loaded = False
        r.load_opts = ()
        if r.unload_handle is not None:
            r.unload_handle.cancel()
            r.unload_handle = None

    def expire(self, r: Runner) -> None:
        """Unload now if idle, else as soon as the last request finishes (``keep_alive: 0``)."""
        r.keep_alive_s = 0.0
        if r.refs == 0:
            self._unload(r)

    def unload(self, r: Runner) -> None:
        """Forget the loaded state (model deleted or removed); requests in flight finish."""
        self._unload(r)

    # --- slots -------------------------------------------------------------------------------

    async def acquire_slot(self, r: Runner) -> tuple[Slots, float]:
        """Wait (FIFO, unbounded) for one of the model's slots; returns the slot pool to release
        and the loop time from which the slot is this request's."""
        slots = r.slots
        if slots.free > 0 and not slots.waiters:
            slots.free -= 1
            r.stats.slot_acquired()
            return slots, asyncio.get_running_loop().time()
        t0 = asyncio.get_running_loop().time()
        r.stats.add("waiting")
        try:
            since = await slots.wait()  # counted in flight from the hand-over, by the releaser
        finally:
            r.stats.add("waiting", -1)
        r.stats.queue_waited(since - t0)
        return slots, since

    @staticmethod
    def release_slot(r: Runner, slots: Slots) -> None:
        slots.release()


FOREVER_S = float("inf")


def _batch(spec: ModelSpec) -> Batch | None:
    """The shared decode steps of a model whose slots slow each other down; None for independent slots."""
    return Batch(spec.contention) if spec.contention > 0 and spec.slots > 1 else None


def _expiry(keep_alive_s: float) -> float:
    if not math.isfinite(keep_alive_s):
        return time.time() + 292 * 365 * 86400.0
    return time.time() + max(keep_alive_s, 0.0)
