"""In-flight limits per model: the client-side mirror of the server's slots.

Ollama decodes ``OLLAMA_NUM_PARALLEL`` requests per loaded model at once and queues the rest in
an unbounded FIFO. Sending more than that does not go faster; it only moves the queue into the
server, where the caller cannot see it, and ends in 503s when models must load. So every
generate/chat/embed call of an :class:`~ollama_async.AsyncClient` takes a slot here first, and the
time spent waiting for it is measured (``client.limits.stats()``).

Where the bound of a model comes from, first match wins:

1. ``concurrency={"model": n}`` (or ``{"model": "auto"}``): an explicit per-model setting;
2. an embedding-only model (found out once per model from ``/api/show`` capabilities, the first
   time it is called through ``/api/embed``, ``/api/embeddings`` or ``/v1/embeddings``):
   :data:`EMBED_ONLY_BOUND` (2): the one slot the server forces for those, plus one request
   waiting in the server, so that the slot does not idle for the round trip between a reply and
   the next request (embed requests are short: 85 % of the server's capacity with 1 in flight,
   99 % with 2, ``benchmarks/bench_embed_slot.py``);
3. ``concurrency=n``: a fixed bound for every model;
4. ``concurrency="auto"``: adaptive (below);
5. ``OLLAMA_NUM_PARALLEL`` from the environment (client and server on one machine);
6. adaptive, the default.

Adaptive mode (:class:`AdaptiveController`) starts at 8 in flight and looks for the server's
effective parallelism from its own timings; ``max_concurrency`` caps it (default 64). Each change
is logged at DEBUG on the ``ollama_async.limits`` logger, and ``stats()`` says what it acted on.

A 503 (the server's pending queue is full) closes a per-model *gate* for the backoff delay, so
that every request for that model waits once, together, instead of each retrying on its own; in
adaptive mode it also halves the bound.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import anyio

if TYPE_CHECKING:
    from ._transport import Call, Transport

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "EMBED_ONLY_BOUND",
    "AdaptiveController",
    "ConcurrencyInput",
    "Lease",
    "LimitStats",
    "Limits",
    "ModelLimiter",
    "Sample",
    "model_key",
]

#: Adaptive mode never goes above this unless ``max_concurrency=`` says otherwise.
DEFAULT_MAX_CONCURRENCY = 64

#: In flight for an embedding-only model: its one slot and one request waiting for it.
EMBED_ONLY_BOUND = 2

Bound = int | Literal["auto"]
ConcurrencyInput = int | Literal["auto"] | Mapping[str, Bound] | None

_EMBED_PATHS = frozenset({"/api/embed", "/api/embeddings", "/v1/embeddings"})

#: Every change of an adaptive bound is logged here at DEBUG, with the signal and the reason.
log = logging.getLogger("ollama_async.limits")


def model_key(model: str) -> str:
    """The server's identity of a model name: the tag defaults to ``latest``."""
    name = model.rsplit("/", 1)[-1]
    return model if ":" in name else f"{model}:latest"


# -- the adaptive controller (pure: no clock, no I/O, so it is testable with a synthetic server) --


@dataclass(frozen=True)
class Sample:
    """What one finished request tells the controller. Times in seconds.

    ``level`` is the number in flight when the request was admitted (itself included), ``wall``
    the client's time from admission to release, ``queue`` the server's slot wait
    (``total - load - prompt_eval - eval``; ``None`` when the reply has no such breakdown, as
    embed replies and stream leases). ``settled`` is False for a request admitted while requests
    of an older bound were still in flight: it measures the change, not the bound, and is skipped.
    ``full`` says the request found the bound full (it had to wait, or others were waiting):
    demand exceeded the bound, so more in flight could have been used. ``load`` is the reply's
    ``load_duration``: a long one means this request (re)loaded the model, and a reloaded model
    (or a restarted server) may have another number of slots. ``idle`` is the time the slot
    stood free in the client before this request took it (from the release that freed it to this
    admission: the waiting task's wake-up): part of the slot's cycle, so that ``level / (wall +
    idle)`` is the throughput (Little's law). Left out, it overstates a bound that leaves the
    server waiting for the client's hand-over (a few %, more than the gain of one pipelined
    request is judged by).
    """

    level: int
    wall: float
    queue: float | None = None
    settled: bool = True
    full: bool = True
    load: float = 0.0
    idle: float = 0.0


class AdaptiveController:
    """Finds the in-flight bound that gives the most throughput, from completed requests.

    Decisions are made once per *window*: ``max(4, limit)`` requests admitted under the current
    bound once the requests of older bounds were gone (the others measure the transition). Each
    rule says which of the server's signals drives it, and why that one:

    - **Start at 8** (``initial``), not 2. Too few in flight costs throughput for as long as it
      lasts (on a short burst, most of it), too many costs nothing but one window of requests
      waiting inside the server instead of in the client: the server queues them FIFO, its
      slots stay full, and the first window's replies measure the excess exactly (next rule).
    - **Server queueing** (signal: the replies' ``queue``, ``total - load - prompt_eval - eval``,
      the server's own measure of slot wait; exact, unaffected by round trips or client load):
      if on average one and a half requests or more waited for a slot inside the server, the
      client sends more than the server has slots and one pipelined request. By Little's law,
      ``level * (1 - queue/wall)`` requests in flight keep the server's slots just full, round
      trips included: take the ``level * queue/wall`` requests that waited off the bound at
      once. Up to about one waiting on average is left to the gradient: that one request, there
      when a slot frees, hides the client's round trip (worth a few % with short requests,
      nothing with long ones); at slots + 1 it waits all the time but for its own round trip,
      so its average sits near 1.0, and cutting at 1.0 took it away on noise. With
      open-loop traffic (demand below the bound part of the time) this removes only the
      excess, not the idle time. Half a request or more waiting stops any growth.
    - **Throughput gradient** (signal: the client's time per slot cycle, ``level / (wall +
      idle)`` by Little's law, where ``idle`` is the client's own hand-over of a freed slot to
      the next waiting request; the only signal that also exists for replies without a
      breakdown, embed replies): throughput per bound is remembered per bound (a running mean
      over its first windows, then a moving average over about 8; one window measures its bound
      to some 5 %), from windows in which every request found the bound full (else the rate
      measures the arrivals; and not the first window after a start, which began with an idle
      server). A bound must beat the next lower one visited by min(3 %, a quarter of the
      proportional gain; 5 % for replies without a breakdown, 10 % for a doubling other than 1
      to 2), else (two windows in a row) it steps back there: when only latency grows (hardware
      saturated before the slots are), more in flight is not worth it. One above a bound, once it has paid that
      margin three windows in a row, is kept while it pays a third of it (hysteresis: slots + 1
      gains 5-8 % over the slots with short requests, near the margin, and one margin both ways
      flipped between the two on noisy windows). When nothing below the bound was ever measured
      and the replies have no queue breakdown, the third full window measures half of it once,
      so that a start above the slots is found out. Batched decoding (each step slower with
      more active slots) still gains with every slot up to the server's count (+8.5 % from 3 to
      4 on the cpu profile), which passes that margin.
    - **Growth**, while demand fills the bound and the server queues nothing: x2 per window at
      first (slow start, like TCP's), then +1 probes. After a decrease it waits 2, 4, 8, 16, then
      32 windows before probing again, so the bound sits at the optimum and only now and then
      probes one above it (which, at worst, makes one request wait in the server).
    - **Reload** (signal: a reply's ``load_duration`` longer than its work): the model was
      loaded again, by a restart of the server or after an unload, perhaps with another
      ``OLLAMA_NUM_PARALLEL``: what was learnt about bounds is forgotten and slow start begins
      again from the current bound (the queue rule brings it down at once if there are fewer
      slots now).
    - **503** (signal: the status; the server's pending-load queue is full): halve at once
      (once per bound).

    The time to first byte is not used: it mixes the slot wait with prompt processing, while
    the final reply's durations (streams included: their last chunk has them) separate the two.
    ``signal`` and ``reason`` say what the last change acted on.
    """

    def __init__(
        self, *, initial: int = 8, maximum: int = DEFAULT_MAX_CONCURRENCY, minimum: int = 1,
        window: int = 4, growth: float = 2.0, tolerance: float = 0.25,
    ) -> None:
        self.minimum = max(1, minimum)
        self.maximum = max(self.minimum, maximum)
        self.limit = min(max(initial, self.minimum), self.maximum)
        self.epoch = 0  # bumped on every change; a sample counts only for the bound it ran under
        self.adjustments = 0
        self._window = window
        self._growth = growth
        self._tolerance = tolerance
        self._samples: list[Sample] = []
        self._slow_start = True
        self._throughput: dict[int, float] = {}  # bound -> moving average of requests/s
        self._hold = 0  # windows to wait before the next increase
        self._fails = 0  # decreases since the last increase that held: doubles the hold
        self._strikes = 0  # consecutive windows that did not beat the next lower bound
        self._passes = 0  # consecutive windows that did
        self._kept: set[int] = set()  # bounds that beat the next lower one: kept on a lower margin
        self._seen: dict[int, int] = {}  # bound -> windows measured (the weight of the next one)
        self._busy_from = 0  # 503s of requests admitted before this epoch were already acted on
        self._windows = 0  # full windows since the start or the last reload
        self.signal = "start"  # what the last change acted on: start, queue, gradient, growth, probe, reload, 503
        self.reason = f"initial bound {self.limit}"

    def observe(self, epoch: int, sample: Sample) -> bool:
        """Take one completed request's sample; True when the limit changed."""
        if sample.load > 0.02 and sample.load > sample.wall - sample.load - (sample.queue or 0.0):
            self._reloaded(sample.load)
            return False
        if epoch != self.epoch or not sample.settled:
            return False
        self._samples.append(sample)
        if len(self._samples) < max(self._window, self.limit):
            return False
        samples, self._samples = self._samples, []
        return self._decide(samples)

    def busy(self, epoch: int) -> bool:
        """The server answered 503 to a request admitted in ``epoch``: halve (once)."""
        if epoch < self._busy_from:
            return False
        changed = self._decrease(self.limit // 2, "503", "the server answered 503 (its load queue is full)")
        self._busy_from = self.epoch
        return changed

    def _reloaded(self, load: float) -> None:
        """The model was loaded again: its slots may differ; relearn from the current bound."""
        self._throughput.clear()
        self._kept.clear()
        self._seen.clear()
        self._slow_start = True
        self._hold = self._fails = self._strikes = self._windows = 0
        self._samples = []
        self.signal = "reload"
        self.reason = f"the model was loaded again ({load:.2f} s): relearning from {self.limit}"

    def _decide(self, samples: list[Sample]) -> bool:
        n, limit = len(samples), self.limit
        cycle = sum(s.wall + s.idle for s in samples) / n  # a slot's cycle: its request, its hand-over
        if cycle <= 0:
            return False
        saturated = sum(1 for s in samples if s.full) * 2 >= n
        # Requests in flight on average: the bound itself while demand keeps it full.
        level = limit if saturated else sum(s.level for s in samples) / n
        queued = False
        has_queue = all(s.queue is not None for s in samples)
        if has_queue:
            share = min(1.0, sum(s.queue or 0.0 for s in samples) / (cycle * n))
            excess = level * share  # requests waiting inside the server, on average (Little)
            queued = excess >= 0.5  # enough waiting that more in flight would only wait too
            target = math.ceil(limit - excess - 0.1)
            # About one request waiting on average is what hides the round trip (a slot that
            # frees finds its next request already there): the gradient judges whether that is
            # worth it. At slots + 1 the one waits all the time but for its own round trip, so
            # the average sits near 1.0 and noise crosses it: only 1.5 or more is a queue that
            # merely moves the client's wait into the server.
            if excess >= 1.5 and target < limit:
                return self._decrease(target, "queue", f"{excess:.1f} requests on average waited for a "
                                      f"slot inside the server ({share:.0%} of their time)")
            if queued and saturated and not any(b < limit for b in self._throughput) and limit > self.minimum:
                # Pipelining one may pay, but nothing below was measured to tell: one fewer, once
                # (it only takes away a request that waited in the server), then the gradient.
                self._slow_start = False
                return self._set(limit - 1, "queue", f"{excess:.1f} requests on average waited inside the "
                                 f"server: measuring {limit - 1} against {limit}")
        if not saturated:
            return False  # demand below the bound: nothing to learn about more or less
        if not all(s.full for s in samples):
            # Demand filled the bound only part of the window (open-loop traffic): level / cycle is
            # no measure of what this bound can do, so no gradient; and growth one at a time.
            return self._grow(limit, queued, has_queue, double=False)
        self._windows += 1
        if self._windows == 1 and not has_queue:
            # The first full window after a start or a reload began with an idle server: its
            # level / cycle overstates the bound's throughput when the bound is above the slots,
            # which only the queue rule (not available here) would have seen.
            return False
        known = self._throughput.get(limit)
        # A running mean over the first windows of a bound, then a moving average over about 8:
        # one window (a handful of requests) measures its bound to some 5 %, near the margins.
        seen = self._seen[limit] = self._seen.get(limit, 0) + 1
        rate = level / cycle
        x = rate if known is None else known + (rate - known) / min(seen, 8)
        self._throughput[limit] = x
        lower = max((b for b in self._throughput if b < limit), default=None)
        if lower is None and not has_queue and limit > self.minimum:
            higher = min((b for b in self._throughput if b > limit), default=None)
            if higher is None:
                if self._windows < 3:
                    return False  # a short burst ends before this: it keeps the full start
                # No queue breakdown (embed replies) and nothing below to compare with: measure
                # half this bound once, or a start above the slots could never be found too
                # many. (With the breakdown, the queue rule judges the start, and a probe down
                # would cost open-loop traffic near capacity a backlog that takes long to drain.)
                return self._set(max(limit // 2, self.minimum), "gradient",
                                 f"nothing measured below {limit}: measuring {limit // 2} against it")
            # Twice the bound must pay by 10 %: the round trip it hides is worth ~5 % at most.
            needed = 1.0 + min(0.10, self._tolerance * (higher - limit) / limit)
            if self._slow_start and self._throughput[higher] < x * needed:
                self._slow_start = False  # twice as many gave no more: stay, probe one at a time
                self._fails += 1
                self._hold = 2
        if lower is not None:
            # A doubling must pay by 10 %: the round trip hidden by more in flight is worth a few %.
            # Not 1 -> 2: that is one slot and one pipelined request, judged like slots + 1
            # anywhere (one slot x 20 ms: 95 % of the server's capacity at 1, 99.5 % at 2).
            # Without a queue breakdown nothing else bounds the drift upwards: a wider margin.
            cap = 0.10 if limit >= 2 * lower and limit > lower + 1 else 0.03 if has_queue else 0.05
            margin = min(cap, self._tolerance * (limit - lower) / lower)
            # Hysteresis: one more than a bound, once it has paid its margin (three windows in a
            # row), is kept while it pays a third of it. One margin both ways flips between two
            # bounds whose difference is near it (slots + 1 over the slots, ~5-7 % with short
            # requests) on every noisy window, and each flip costs a hold at the lower bound.
            # (Not for larger steps: a start above the slots must still be found out.)
            kept = limit in self._kept and limit == lower + 1
            needed = 1.0 + (margin / 3 if kept else margin)
            if x < self._throughput[lower] * needed:
                self._passes = 0
                self._strikes += 1
                if self._strikes >= 2:  # two windows in a row: not one noisy window
                    gain = x / self._throughput[lower] - 1.0
                    return self._decrease(lower, "gradient", f"{limit} in flight gave {gain:+.1%} throughput over "
                                          f"{lower}, less than the {needed - 1:.1%} it must add")
                return False
            self._strikes = 0
            self._passes += 1
            if self._passes >= 3:
                self._kept.add(limit)
            if known is None:
                self._fails = 0  # a new, higher bound paid off
        return self._grow(limit, queued, has_queue)

    def _grow(self, limit: int, queued: bool, has_queue: bool, *, double: bool = True) -> bool:
        if queued or self._hold > 0 or limit >= self.maximum:
            self._hold = max(0, self._hold - 1)
            return False
        why = f"demand filled {limit}" + (" and the server queued nothing" if has_queue else "")
        if self._slow_start and double:
            return self._set(math.ceil(limit * self._growth), "growth", f"{why}: slow start")
        self._hold = 1  # judge a probe again on a settled window before going further
        return self._set(limit + 1, "probe", f"{why}: probing one more")

    def _decrease(self, target: int, signal: str, reason: str) -> bool:
        self._slow_start = False
        self._fails += 1
        self._hold = min(2**self._fails, 32)
        target = min(target, self.limit - 1)
        self._kept = {b for b in self._kept if b <= target}  # what was above is judged afresh
        return self._set(target, signal, reason)

    def _set(self, limit: int, signal: str, reason: str) -> bool:
        limit = min(max(limit, self.minimum), self.maximum)
        self._samples = []
        self._strikes = self._passes = 0
        if limit == self.limit:
            return False
        self.signal = signal
        self.reason = f"{self.limit} -> {limit}: {reason}"
        self.limit = limit
        self.epoch += 1
        self.adjustments += 1
        return True


# -- the limiter of one model -------------------------------------------------------------------


@dataclass
class LimitStats:
    """What the limiter of one model saw. Times in seconds.

    ``limit`` is the bound now; ``mode`` says where it comes from: ``"fixed"`` (an int, per model
    or for all, or ``OLLAMA_NUM_PARALLEL``), ``"adaptive"`` or ``"embed-only"``.
    ``wait_*`` is time spent in the client waiting for a slot (and for a 503 gate).
    In adaptive mode ``signal`` is what the controller last acted on (``start``, ``queue``: the
    server's slot wait from the replies' durations; ``gradient``: throughput per bound;
    ``growth``/``probe``: demand filled the bound and the server queued nothing; ``reload``: the
    model was loaded again; ``503``) and ``reason`` says why, in words.
    """

    limit: int
    mode: str = "fixed"
    in_flight: int = 0
    max_in_flight: int = 0
    waiting: int = 0
    acquired: int = 0
    wait_total: float = 0.0
    wait_max: float = 0.0
    busy_signals: int = 0
    adjustments: int = 0
    signal: str = ""
    reason: str = ""

    @property
    def wait_mean(self) -> float:
        return self.wait_total / self.acquired if self.acquired else 0.0


def _timings(reply: object) -> tuple[int | None, int | None, int | None]:
    """``(total, queue, load)`` durations of a reply, in ns; queue only for generate/chat."""
    total = getattr(reply, "total_duration", None)
    if not isinstance(total, int):
        return None, None, None
    load = getattr(reply, "load_duration", None)
    load = load if isinstance(load, int) else None
    if getattr(reply, "eval_duration", None) is None and getattr(reply, "prompt_eval_duration", None) is None:
        return total, None, load  # embed replies have no breakdown: total - load is not a queue wait
    queue = getattr(reply, "queue_duration", None)
    return total, queue if isinstance(queue, int) else None, load


class Lease:
    """One slot, held from before the request is sent until its response is finished."""

    __slots__ = ("_limiter", "_released", "_token", "epoch", "full", "idle", "level", "settled", "started", "waited")

    def __init__(self, limiter: ModelLimiter, token: object, waited: float, level: int, epoch: int) -> None:
        self._limiter = limiter
        self._token = token
        self._released = False
        self.waited = waited
        self.level = level
        self.epoch = epoch
        self.settled = True
        self.full = False
        self.idle = 0.0  # the slot's hand-over time before this lease took it (Sample.idle)
        self.started = time.monotonic()

    def release(
        self, *, server_ns: int | None = None, queue_ns: int | None = None, busy: bool = False,
        reply: object = None,
    ) -> None:
        """Give the slot back. Idempotent.

        ``server_ns`` is the reply's ``total_duration`` (a stream's final chunk), ``queue_ns`` its
        server-side slot wait; or pass the decoded ``reply`` and both are read from it. Releases
        without timings (errors, cancellation) do not feed the adaptive controller.
        """
        if self._released:
            return
        self._released = True
        load_ns = None
        if reply is not None:
            server_ns, queue_ns, load_ns = _timings(reply)
        self._limiter._release(self, server_ns, queue_ns, busy, load_ns)


class ModelLimiter:
    """The bound, the gate and the statistics of one (host, model)."""

    def __init__(self, limit: int, *, mode: str = "fixed", controller: AdaptiveController | None = None,
                 explicit: bool = False) -> None:
        self.controller = controller
        self.stats = LimitStats(limit=controller.limit if controller else limit, mode=mode)
        self.name = ""  # the model's name:tag, for the log (set by Limits)
        if controller is not None:
            self.stats.signal, self.stats.reason = controller.signal, controller.reason
        self.explicit = explicit  # set per model: never probed, never overridden
        self.kind_known = explicit
        self._capacity: anyio.CapacityLimiter | None = None  # made lazily: needs a running loop
        self._gate_until = 0.0
        self._freed_at = 0.0  # the last release that handed a slot to a waiting request
        self._probe_lock: anyio.Lock | None = None
        self._epochs: dict[int, int] = {}  # controller epoch -> leases of it in flight

    @property
    def limit(self) -> int:
        return self.stats.limit

    @property
    def mode(self) -> str:
        return self.stats.mode

    def set_limit(self, limit: int) -> None:
        """Change the bound at run time; raising it wakes waiters at once."""
        self.stats.limit = limit
        if self._capacity is not None:
            self._capacity.total_tokens = limit

    def make_fixed(self, limit: int, mode: str) -> None:
        """Switch to a fixed bound (an embedding-only model found out by the probe)."""
        self.controller = None
        self.stats.mode = mode
        self.stats.signal, self.stats.reason = "", ""
        self.set_limit(limit)

    async def acquire(self) -> Lease:
        """Wait for a slot, then for the 503 gate. Cancellation while waiting gives the place up."""
        if self._capacity is None:  # the first one imports anyio's backend: not a wait for a slot
            self._capacity = anyio.CapacityLimiter(self.stats.limit)
        start = time.monotonic()
        capacity, stats, token = self._capacity, self.stats, object()
        full = capacity.available_tokens < 1 or stats.waiting > 0
        idle = 0.0
        if full:
            stats.waiting += 1
            try:
                await capacity.acquire_on_behalf_of(token)
            finally:
                stats.waiting -= 1
            idle = time.monotonic() - max(self._freed_at, start)
        else:
            capacity.acquire_on_behalf_of_nowait(token)
        try:
            while (gate := self._gate_until - time.monotonic()) > 0:  # noqa: ASYNC110 - a deadline that may move
                await anyio.sleep(gate)
        except BaseException:
            capacity.release_on_behalf_of(token)
            raise
        waited = time.monotonic() - start
        stats.acquired += 1
        stats.in_flight += 1
        if stats.in_flight > stats.max_in_flight:
            stats.max_in_flight = stats.in_flight
        stats.wait_total += waited
        if waited > stats.wait_max:
            stats.wait_max = waited
        epoch = self.controller.epoch if self.controller else 0
        lease = Lease(self, token, waited, stats.in_flight, epoch)
        epochs = self._epochs
        lease.settled = all(e == epoch for e in epochs)  # nothing of an older bound in flight
        lease.full = full
        lease.idle = idle
        epochs[epoch] = epochs.get(epoch, 0) + 1
        return lease

    def busy(self, delay: float) -> None:
        """The server said 503: hold every new request for this model ``delay`` seconds."""
        self.stats.busy_signals += 1
        self._gate_until = max(self._gate_until, time.monotonic() + delay)

    @property
    def gate_remaining(self) -> float:
        """Seconds until the 503 gate opens (0 when open)."""
        return max(0.0, self._gate_until - time.monotonic())

    def _release(
        self, lease: Lease, server_ns: int | None, queue_ns: int | None, busy: bool, load_ns: int | None = None
    ) -> None:
        now = time.monotonic()
        self.stats.in_flight -= 1
        epochs = self._epochs
        left = epochs.pop(lease.epoch, 1) - 1
        if left:
            epochs[lease.epoch] = left
        if self._capacity is not None:
            if self.stats.waiting:
                self._freed_at = now
            self._capacity.release_on_behalf_of(lease._token)
        controller = self.controller
        if controller is None:
            return
        if busy:
            changed = controller.busy(lease.epoch)
        elif server_ns is not None:
            wall = now - lease.started
            queue = queue_ns / 1e9 if queue_ns is not None else None
            load = load_ns / 1e9 if load_ns else 0.0
            changed = controller.observe(
                lease.epoch, Sample(lease.level, wall, queue, lease.settled, lease.full, load, lease.idle)
            )
        else:
            return
        stats = self.stats
        if controller.reason is not stats.reason:  # a change, or a reload that reset what was learnt
            stats.signal, stats.reason = controller.signal, controller.reason
            log.debug("%s: bound %d, %d in flight, %s: %s", self.name or "model", controller.limit,
                      stats.in_flight, controller.signal, controller.reason)
        if changed:
            stats.adjustments = controller.adjustments
            self.set_limit(controller.limit)


# -- the limiters of one client -----------------------------------------------------------------


def _env_parallel() -> int | None:
    raw = os.environ.get("OLLAMA_NUM_PARALLEL", "").strip()
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value > 0 else None


class Limits:
    """The per-model limiters of one client (one host); see the module docstring for the rules."""

    def __init__(self, concurrency: ConcurrencyInput = None, *, max_concurrency: int | None = None) -> None:
        self.max_concurrency = (
            DEFAULT_MAX_CONCURRENCY if max_concurrency is None else _check_int(max_concurrency, "max_concurrency")
        )
        self._cap = max_concurrency is not None
        self._per_model: dict[str, Bound] = {}
        default: Bound | None = None
        if isinstance(concurrency, Mapping):
            for name, value in concurrency.items():
                self._per_model[model_key(name)] = _check_bound(value, f"concurrency[{name!r}]")
        elif concurrency is not None:
            default = _check_bound(concurrency, "concurrency")
        if default is None:
            default = _env_parallel() or "auto"
        self._default: Bound = default
        self._limiters: dict[str, ModelLimiter] = {}

    def _make(self, bound: Bound, explicit: bool) -> ModelLimiter:
        if bound == "auto":
            controller = AdaptiveController(maximum=self.max_concurrency)
            return ModelLimiter(controller.limit, mode="adaptive", controller=controller, explicit=explicit)
        limit = min(bound, self.max_concurrency) if self._cap else bound
        return ModelLimiter(limit, mode="fixed", explicit=explicit)

    def for_model(self, model: str) -> ModelLimiter:
        """The limiter of ``model`` (made on first use; ``m`` and ``m:latest`` share one)."""
        limiter = self._limiters.get(model)
        if limiter is None:
            key = model_key(model)
            limiter = self._limiters.get(key)
            if limiter is None:
                bound = self._per_model.get(key)
                limiter = self._make(self._default if bound is None else bound, bound is not None)
                limiter.name = key
                self._limiters[key] = limiter
            self._limiters[model] = limiter
        return limiter

    async def for_call(self, call: Call, transport: Transport) -> ModelLimiter | None:
        """The limiter a request takes a slot from; for embed calls, checks embedding-only once."""
        if not call.model:
            return None
        limiter = self.for_model(call.model)
        if not limiter.kind_known and call.path in _EMBED_PATHS:
            await self._probe(limiter, call.model, transport)
        return limiter

    async def _probe(self, limiter: ModelLimiter, model: str, transport: Transport) -> None:
        """Ask ``/api/show`` whether ``model`` only embeds; if so the server gives it one slot."""
        from ._errors import ResponseError
        from ._transport import NOT_GIVEN, Call

        if limiter._probe_lock is None:
            limiter._probe_lock = anyio.Lock()
        async with limiter._probe_lock:
            if limiter.kind_known:
                return
            body = b'{"model":' + _json_str(model) + b"}"
            try:
                caps = await transport.request(Call("POST", "/api/show", body, timeout=NOT_GIVEN), _capabilities)
            except ResponseError:
                limiter.kind_known = True  # the server answered (e.g. 404): the embed call will say why
                return
            except Exception:
                return  # no answer (connection): try again on the next call
            limiter.kind_known = True
            if "embedding" in caps and "completion" not in caps:
                limiter.make_fixed(EMBED_ONLY_BOUND, "embed-only")

    def stats(self) -> dict[str, LimitStats]:
        """Per model (``name:tag``), a snapshot of what its limiter saw so far."""
        return {
            key: dataclasses.replace(lim.stats) for key, lim in self._limiters.items() if key == model_key(key)
        }

    def bound(self, model: str) -> int:
        """The most requests ``model`` may ever have in flight (the adaptive cap in adaptive mode)."""
        limiter = self.for_model(model)
        return limiter.controller.maximum if limiter.controller else limiter.limit


def _capabilities(body: bytes) -> list[str]:
    import json

    obj = json.loads(body)
    caps = obj.get("capabilities") if isinstance(obj, dict) else None
    return [c for c in caps if isinstance(c, str)] if isinstance(caps, list) else []


def _json_str(text: str) -> bytes:
    import json

    return json.dumps(text).encode()


def _check_int(value: object, field: str) -> int:
    from ._errors import RequestError

    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(f"must be a positive int, not {value!r}", field=field)
    return value


def _check_bound(value: object, field: str) -> Bound:
    from ._errors import RequestError

    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(f"must be a positive int or 'auto', not {value!r}", field=field)
    return value
