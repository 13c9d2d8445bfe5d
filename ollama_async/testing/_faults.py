"""Faults a client must survive: scripted (:meth:`Simulator.inject`) or random per request.

A :class:`Fault` describes what goes wrong; :class:`FaultPlan` decides which request gets which
fault. Stream faults act on the NDJSON line index ``after`` (lines already sent before the
fault); when a stream has fewer lines than ``after`` they act just before its final line, so an
injected fault always shows.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass

BUSY_TEXT = "server busy, please try again.  maximum pending requests exceeded"

_DEFAULT_STATUS_TEXT = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    429: "too many requests",
    500: "llama runner process has terminated: exit status 2",
    502: "bad gateway",
    503: BUSY_TEXT,
    504: "gateway timeout",
}

KINDS = (
    "status",
    "error_line",
    "eof",
    "reset",
    "slow_first_byte",
    "malformed_line",
    "blank_lines",
    "long_line",
    "busy",
)

STREAM_KINDS = frozenset({"error_line", "eof", "reset", "malformed_line", "blank_lines", "long_line"})


@dataclass(frozen=True)
class Fault:
    """One scripted failure; build it with the class methods (``Fault.status(500)`` ...)."""

    kind: str
    status_code: int = 0
    error: str = ""
    after: int = 0
    count: int = 1
    seconds: float = 0.0
    size_bytes: int = 0
    retry_after: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.after < 0 or self.count < 0 or self.seconds < 0 or self.size_bytes < 0:
            raise ValueError("fault parameters must be >= 0")

    @classmethod
    def status(cls, code: int, error: str | None = None) -> Fault:
        """Answer with HTTP ``code`` and ``{"error": error}`` before any byte of a reply."""
        if not 100 <= code <= 599:
            raise ValueError("status code must be 100..599")
        text = error if error is not None else _DEFAULT_STATUS_TEXT.get(code, f"simulated error {code}")
        return cls("status", status_code=code, error=text)

    @classmethod
    def error_line(
        cls, after: int = 0, error: str = "an error was encountered while running the model"
    ) -> Fault:
        """HTTP 200 stream: ``after`` normal lines, then ``{"error": ...}`` and the end."""
        return cls("error_line", after=after, error=error)

    @classmethod
    def eof(cls, after: int = 0) -> Fault:
        """The stream ends cleanly after ``after`` lines, without a ``done: true`` line."""
        return cls("eof", after=after)

    @classmethod
    def reset(cls, after: int = 0) -> Fault:
        """TCP reset (RST) after ``after`` lines (before the reply when not streaming)."""
        return cls("reset", after=after)

    @classmethod
    def slow_first_byte(cls, seconds: float) -> Fault:
        """Hold the status line, headers and first line back for ``seconds``."""
        return cls("slow_first_byte", seconds=seconds)

    @classmethod
    def malformed_line(cls, after: int = 0) -> Fault:
        """A line that is not JSON after ``after`` lines; the stream then goes on."""
        return cls("malformed_line", after=after)

    @classmethod
    def blank_lines(cls, after: int = 0, count: int = 2) -> Fault:
        """``count`` empty lines after ``after`` lines; the stream then goes on."""
        return cls("blank_lines", after=after, count=count)

    @classmethod
    def long_line(cls, size_bytes: int, after: int = 0) -> Fault:
        """An extra normal chunk whose text makes its line ``size_bytes`` long."""
        return cls("long_line", size_bytes=size_bytes, after=after)

    @classmethod
    def busy(cls, count: int = 1, retry_after: float | None = None) -> Fault:
        """The next ``count`` requests get the real 503 ``server busy`` reply."""
        return cls("busy", status_code=503, error=BUSY_TEXT, count=count, retry_after=retry_after)


RANDOM_KINDS = (
    "status_500",
    "busy",
    "error_line",
    "eof",
    "reset",
    "slow_first_byte",
    "malformed_line",
    "blank_lines",
    "long_line",
)


def random_fault(kind: str, rng: random.Random) -> Fault:
    """The fault a random-fault ``kind`` name stands for, with parameters drawn from ``rng``."""
    after = rng.randrange(0, 4)
    if kind.startswith("status_"):
        return Fault.status(int(kind[len("status_") :]))
    if kind == "busy":
        return Fault.busy()
    if kind == "error_line":
        return Fault.error_line(after=after)
    if kind == "eof":
        return Fault.eof(after=after)
    if kind == "reset":
        return Fault.reset(after=after)
    if kind == "slow_first_byte":
        return Fault.slow_first_byte(0.05)
    if kind == "malformed_line":
        return Fault.malformed_line(after=after)
    if kind == "blank_lines":
        return Fault.blank_lines(after=after)
    if kind == "long_line":
        return Fault.long_line(1 << 20, after=after)
    raise ValueError(f"unknown random fault kind {kind!r}")


@dataclass
class _Scripted:
    fault: Fault
    remaining: int
    model: str | None
    path: str | None


INFERENCE_PATHS = frozenset({"/api/generate", "/api/chat", "/api/embed", "/api/embeddings"})


class FaultPlan:
    """Which request gets which fault: scripted ones first (in order), then random ones.

    Scripted faults match by canonical model name and/or path and apply to the next ``times``
    matching requests. Random faults apply to inference requests (generate, chat, embed,
    embeddings) with probability ``rate``, drawn from a ``random.Random(seed)`` so a run is
    reproducible.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripted: list[_Scripted] = []
        self._rate = 0.0
        self._kinds: tuple[str, ...] = ()
        self._rng = random.Random(0)
        self._random_model: str | None = None

    def inject(self, fault: Fault, times: int, model: str | None, path: str | None) -> None:
        if times < 1:
            raise ValueError("times must be >= 1")
        if fault.kind == "busy":
            times *= max(fault.count, 1)
        with self._lock:
            self._scripted.append(_Scripted(fault, times, model, path))

    def set_random(self, rate: float, kinds: Iterable[str], seed: int, model: str | None) -> None:
        kinds_t = tuple(kinds)
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be within 0..1")
        rng = random.Random(seed)
        for kind in kinds_t:
            random_fault(kind, rng)  # validate names early
        with self._lock:
            self._rate = rate
            self._kinds = kinds_t
            self._rng = random.Random(seed)
            self._random_model = model

    def clear(self) -> None:
        with self._lock:
            self._scripted.clear()
            self._rate = 0.0

    @property
    def active(self) -> bool:
        return bool(self._scripted) or self._rate > 0.0

    def take(self, path: str, model: str | None) -> Fault | None:
        """The fault for this request, if any (consumes one use of a scripted fault)."""
        if not self._scripted and self._rate <= 0.0:
            return None
        with self._lock:
            for i, item in enumerate(self._scripted):
                if item.path is not None and item.path != path:
                    continue
                if item.model is not None and item.model != model:
                    continue
                item.remaining -= 1
                if item.remaining <= 0:
                    del self._scripted[i]
                return item.fault
            if self._rate > 0.0 and self._kinds and path in INFERENCE_PATHS:
                if self._random_model is not None and self._random_model != model:
                    return None
                if self._rng.random() < self._rate:
                    return random_fault(self._rng.choice(self._kinds), self._rng)
        return None
