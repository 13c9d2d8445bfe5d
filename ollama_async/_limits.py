"""In-flight limits per model: the client-side mirror of the server's slots.

Ollama decodes ``OLLAMA_NUM_PARALLEL`` requests per loaded model at once and queues the rest in
an unbounded FIFO. Sending more than that does not go faster; it only moves the queue into the
server, where the caller cannot see it, and ends in 503s when models must load. So every
generate/chat/embed call of an :class:`~ollama_async.AsyncClient` takes a slot here first.

The bound per model comes from ``concurrency=`` (an int, or a mapping per model), else from
``OLLAMA_NUM_PARALLEL`` in the environment; ``None`` everywhere means no client-side bound.

A 503 (the server's pending queue is full) closes a per-model *gate* for the backoff delay, so
that every request for that model waits once, together, instead of each retrying on its own.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import anyio

__all__ = ["Lease", "LimitStats", "Limits", "ModelLimiter", "model_key"]


def model_key(model: str) -> str:
    """The server's identity of a model name: the tag defaults to ``latest``."""
    name = model.rsplit("/", 1)[-1]
    return model if ":" in name else f"{model}:latest"


@dataclass
class LimitStats:
    """What the limiter of one model saw. Times in seconds."""

    limit: float
    in_flight: int = 0
    max_in_flight: int = 0
    waiting: int = 0
    acquired: int = 0
    wait_total: float = 0.0
    wait_max: float = 0.0
    busy_signals: int = 0

    @property
    def wait_mean(self) -> float:
        return self.wait_total / self.acquired if self.acquired else 0.0


class Lease:
    """One slot, held from before the request is sent until its response is finished."""

    __slots__ = ("_limiter", "_released", "_token", "started", "waited")

    def __init__(self, limiter: ModelLimiter, token: object, waited: float) -> None:
        self._limiter = limiter
        self._token = token
        self._released = False
        self.waited = waited
        self.started = time.monotonic()

    def release(self, *, server_ns: int | None = None, busy: bool = False) -> None:
        """Give the slot back. Idempotent. ``server_ns`` is the reply's ``total_duration``."""
        if self._released:
            return
        self._released = True
        self._limiter._release(self, server_ns, busy)


class ModelLimiter:
    """The bound and the gate of one (host, model)."""

    def __init__(self, limit: float) -> None:
        self.stats = LimitStats(limit=limit)
        self._limit = limit
        self._capacity: anyio.CapacityLimiter | None = None  # made lazily: needs a running loop
        self._gate_until = 0.0

    @property
    def limit(self) -> float:
        return self._limit

    def set_limit(self, limit: float) -> None:
        """Change the bound at run time; raising it wakes waiters at once."""
        self._limit = limit
        self.stats.limit = limit
        if self._capacity is not None:
            self._capacity.total_tokens = limit

    async def acquire(self) -> Lease:
        """Wait for the gate and a slot. Cancellation while waiting gives the place up."""
        start = time.monotonic()
        gate = self._gate_until - start
        if gate > 0:
            await anyio.sleep(gate)
        token = object()
        if self._limit != math.inf:
            if self._capacity is None:
                self._capacity = anyio.CapacityLimiter(self._limit)
            capacity = self._capacity
            stats = self.stats
            if capacity.available_tokens < 1:
                stats.waiting += 1
                try:
                    await capacity.acquire_on_behalf_of(token)
                finally:
                    stats.waiting -= 1
            else:
                capacity.acquire_on_behalf_of_nowait(token)
        waited = time.monotonic() - start
        stats = self.stats
        stats.acquired += 1
        stats.in_flight += 1
        if stats.in_flight > stats.max_in_flight:
            stats.max_in_flight = stats.in_flight
        stats.wait_total += waited
        if waited > stats.wait_max:
            stats.wait_max = waited
        return Lease(self, token, waited)

    def busy(self, delay: float) -> None:
        """The server said 503: hold every new request for this model ``delay`` seconds."""
        self.stats.busy_signals += 1
        self._gate_until = max(self._gate_until, time.monotonic() + delay)

    def _release(self, lease: Lease, server_ns: int | None, busy: bool) -> None:
        self.stats.in_flight -= 1
        if self._capacity is not None and self._limit != math.inf:
            self._capacity.release_on_behalf_of(lease._token)


def _env_parallel() -> int | None:
    raw = os.environ.get("OLLAMA_NUM_PARALLEL", "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value > 0 else None


ConcurrencyInput = int | Mapping[str, int] | None


class Limits:
    """The per-model limiters of one client (one host)."""

    def __init__(self, concurrency: ConcurrencyInput = None) -> None:
        self._default: float = math.inf
        self._per_model: dict[str, float] = {}
        if isinstance(concurrency, Mapping):
            for name, value in concurrency.items():
                self._per_model[model_key(name)] = _check_bound(value, f"concurrency[{name!r}]")
            env = _env_parallel()
            if env is not None:
                self._default = env
        elif concurrency is not None:
            self._default = _check_bound(concurrency, "concurrency")
        else:
            env = _env_parallel()
            if env is not None:
                self._default = env
        self._limiters: dict[str, ModelLimiter] = {}

    def for_model(self, model: str) -> ModelLimiter:
        limiter = self._limiters.get(model)
        if limiter is None:
            key = model_key(model)
            limiter = self._limiters.get(key)
            if limiter is None:
                limiter = ModelLimiter(self._per_model.get(key, self._default))
                self._limiters[key] = limiter
            self._limiters[model] = limiter
        return limiter

    def stats(self) -> dict[str, LimitStats]:
        """Per model (``name:tag``), what its limiter saw so far."""
        return {key: lim.stats for key, lim in self._limiters.items() if key == model_key(key)}


def _check_bound(value: object, field: str) -> float:
    from ._errors import RequestError

    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(f"must be a positive int, not {value!r}", field=field)
    return float(value)
