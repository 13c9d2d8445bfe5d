"""The servers of a multi-host client: :class:`Host` settings, health, and what each one has.

``AsyncClient(host=["http://gpu1:11434", Host("http://gpu2:11434", concurrency=8)])`` makes one
:class:`Member` per server: its own :class:`~ollama_async._transport.Transport` (connection pool)
and :class:`~ollama_async._limits.Limits` (so every (host, model) has its own limiter, explicit or
adaptive, exactly as a single-host client has one per model), its :class:`Health` and its
catalog (the models it has, from ``/api/tags``, and the ones loaded now, from ``/api/ps``).
The router (``_routing.py``) chooses among members; ``client.hosts`` shows their
:class:`HostState`.

Health is a circuit breaker per host: a failure another host could have avoided (connection
refused or reset, a connect timeout, 5xx) counts; a refused connection ejects at once, other
failures after ``EJECT_AFTER`` in a row. An ejected host gets no requests for its back-off
(0.5 s, doubling per ejection in a row, at most 30 s); then one cheap probe (``GET /api/version``)
runs in the background: success re-admits it (half-open: the next failure ejects it again with
the doubled back-off, a success closes the breaker and resets the back-off), failure ejects it
again.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Literal

import anyio

from ._errors import RequestError
from ._host import parse_host
from ._limits import ConcurrencyInput, Limits, LimitStats
from ._log import hosts_log
from ._transport import RetryPolicy, Transport

__all__ = ["EJECT_AFTER", "Health", "Host", "HostInput", "HostState", "Member", "as_host"]

#: Failures in a row (other than a refused connection) that eject a host.
EJECT_AFTER = 3
BACKOFF_BASE = 0.5
BACKOFF_MAX = 30.0

#: How long a host's list of models (``/api/tags``) and of loaded models (``/api/ps``) is trusted.
CATALOG_TTL = 10.0

#: Weight of the newest request in the moving average of a host's service time per model.
_EWMA = 0.2


@dataclass(frozen=True)
class Host:
    """One server of a multi-host client and its own settings.

    ``url``: as ``host=`` of a single-host client (``[scheme://]host[:port][/path]``).
    ``concurrency``: this host's bound per model (an int, ``"auto"`` or ``{model: bound}``);
    ``None`` takes the client's ``concurrency=``. ``api_key``: sent as ``Authorization: Bearer``
    to this host only (default: ``OLLAMA_API_KEY``). ``weight``: a relative preference (> 0) on
    top of the measured speed: a host of weight 2 looks twice as fast to the router.
    """

    url: str
    concurrency: ConcurrencyInput = None
    api_key: str | None = None
    weight: float = 1.0
    max_concurrency: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.strip():
            raise RequestError(f"must be a non-empty URL string, not {self.url!r}", field="Host.url")
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or not (
            self.weight > 0 and math.isfinite(self.weight)
        ):
            raise RequestError(f"must be a positive number, not {self.weight!r}", field="Host.weight")
        if self.api_key is not None and not isinstance(self.api_key, str):
            raise RequestError(f"must be a string, not {type(self.api_key).__name__}", field="Host.api_key")
        Limits(self.concurrency, max_concurrency=self.max_concurrency)  # validates both, typed errors

    @property
    def base_url(self) -> str:
        """The normalised URL (as ``parse_host`` gives it): the host's identity in the client."""
        return parse_host(self.url)


HostInput = str | Host


def as_host(value: object, index: int | None = None) -> Host:
    """A :class:`Host` from a URL string or a Host; a typed error for anything else."""
    where = "host" if index is None else f"host[{index}]"
    if isinstance(value, Host):
        return value
    if isinstance(value, str):
        if not value.strip():
            raise RequestError("must be a non-empty URL string", field=where)
        return Host(value)
    raise RequestError(f"must be a URL string or a Host, not {type(value).__name__}", field=where)


HealthState = Literal["healthy", "ejected", "probing", "half-open"]


class Health:
    """The circuit breaker of one host (see the module docstring)."""

    __slots__ = ("ejections", "errors", "failures", "last_error", "name", "probing", "state", "until")

    def __init__(self, name: str = "") -> None:
        self.name = name  # the host's URL, for the log lines of its state changes
        self.state: HealthState = "healthy"
        self.failures = 0  # in a row
        self.errors = 0  # in all
        self.ejections = 0  # in a row: sets the back-off
        self.until = 0.0  # monotonic time the back-off ends
        self.probing = False
        self.last_error: str | None = None

    @property
    def usable(self) -> bool:
        """Requests may go here (healthy, or re-admitted on trial)."""
        return self.state in ("healthy", "half-open")

    def due(self, now: float) -> bool:
        """An ejected host whose back-off is over and that no probe is checking yet."""
        return self.state == "ejected" and now >= self.until and not self.probing

    def success(self) -> None:
        self.failures = 0
        if self.state == "half-open":
            self.state = "healthy"
            self.ejections = 0
            hosts_log.info("host %s is healthy again: a request succeeded after its re-admission", self.name)

    def failure(self, reason: str, *, eject: bool = False) -> None:
        """A failure another host could have avoided; ``eject`` at once (connection refused)."""
        self.errors += 1
        self.failures += 1
        self.last_error = reason
        if self.state == "ejected":
            return  # requests sent before the ejection, failing now: no new back-off
        if eject or self.state == "half-open" or self.failures >= EJECT_AFTER:
            self.eject()

    def eject(self) -> None:
        backoff = min(BACKOFF_MAX, BACKOFF_BASE * 2.0 ** self.ejections)
        self.ejections += 1
        was = self.state
        self.state = "ejected"
        self.until = time.monotonic() + backoff
        # the failure's kind, not its text: an error text may quote a reply (see _log.py)
        hosts_log.warning("host %s ejected (%s, %d failures in a row); probed again in %.1fs", self.name,
                          "again on trial" if was == "half-open" else "was healthy", self.failures, backoff)

    def readmit(self) -> None:
        """The probe got an answer: requests may come again, on trial."""
        self.state = "half-open"
        self.failures = 0
        hosts_log.info("host %s answered its probe: re-admitted on trial (half-open)", self.name)


@dataclass(frozen=True)
class HostState:
    """A snapshot of one host as the client sees it (``client.hosts``).

    ``state``: ``healthy``, ``ejected`` (no requests until ``retry_in`` seconds have passed and a
    probe answered), ``probing`` or ``half-open`` (re-admitted; the next failure ejects again).
    ``models``/``loaded``: what ``/api/tags``/``/api/ps`` said last (``None``: not asked yet or
    no answer). ``limits``: the per-model limiter stats of this host. ``service_s``: the measured
    server time per request, per model (what the router divides the work by).
    """

    url: str
    state: str
    in_flight: int
    errors: int
    consecutive_failures: int
    last_error: str | None
    retry_in: float
    weight: float
    requests: int
    models: tuple[str, ...] | None
    loaded: tuple[str, ...]
    limits: dict[str, LimitStats] = field(default_factory=dict)
    service_s: dict[str, float] = field(default_factory=dict)


class Member:
    """One host inside a multi-host client: settings, transports, limits, health, catalog."""

    def __init__(self, host: Host, transport: Transport) -> None:
        self.host = host
        self.url = transport.base_url
        self.transport = transport  # the client's retry policy: used when a call is pinned here
        self.routed = without_retries(transport)  # the router's: it retries on another host instead
        self.limits = transport.limits
        self.retired: list[Transport] = []  # pools replaced by a fresh one on re-admission
        self.health = Health(self.url)
        self.weight = float(host.weight)
        self.models: set[str] | None = None  # model_key names from /api/tags
        self.loaded: set[str] = set()  # from /api/ps, and every model that just answered here
        self.fetched = -math.inf  # monotonic time of the last catalog answer
        self.refreshing = False
        self.refreshed: anyio.Event | None = None  # set when the running refresh ends
        self.requests = 0
        self.service: dict[str, float] = {}  # model_key -> moving average of server seconds
        self.removed = False

    def adopt(self, transport: Transport) -> None:
        """Send through ``transport`` (a new pool) from now on, keeping this host's limits.

        The old pool is kept open until the client closes: views made by ``on_host`` may still
        use it, and it holds nothing in flight (the host was ejected).
        """
        transport.limits = self.limits
        self.retired.append(self.transport)
        self.transport = transport
        self.routed = without_retries(transport)

    def has(self, key: str) -> bool | None:
        """Whether this host lists the model (``None``: its catalog is unknown)."""
        return None if self.models is None else key in self.models

    def observe(self, key: str, seconds: float) -> None:
        """One finished request of ``key`` took ``seconds`` on the server."""
        self.requests += 1
        old = self.service.get(key)
        self.service[key] = seconds if old is None else old + _EWMA * (seconds - old)

    def observe_final(self, key: str, part: object) -> None:
        """A stream of ``key`` ended with ``part``: its ``total_duration`` is the server's time.
        (A stream's wall time is the caller's pace of reading too: without one, nothing is learnt.)"""
        total = getattr(part, "total_duration", None)
        if isinstance(total, int):
            self.observe(key, total / 1e9)
        else:
            self.requests += 1

    def in_flight(self) -> int:
        return sum(s.in_flight for s in self.limits.stats().values())

    def state(self) -> HostState:
        health = self.health
        now = time.monotonic()
        return HostState(
            url=self.url,
            state="probing" if health.probing else health.state,
            in_flight=self.in_flight(),
            errors=health.errors,
            consecutive_failures=health.failures,
            last_error=health.last_error,
            retry_in=max(0.0, health.until - now) if health.state == "ejected" else 0.0,
            weight=self.weight,
            requests=self.requests,
            models=None if self.models is None else tuple(sorted(self.models)),
            loaded=tuple(sorted(self.loaded)),
            limits=self.limits.stats(),
            service_s=dict(self.service),
        )


def without_retries(transport: Transport) -> Transport:
    """A view of ``transport`` sharing its pool and limits, that never retries by itself."""
    clone = copy.copy(transport)
    clone._owns_http = False
    clone.retry = RetryPolicy(max_retries=0)
    return clone
