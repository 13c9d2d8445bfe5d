"""The slot table: every (host, model) slot of a job, granted one request at a time.

This is the pure half of the slot broker (no Ray here, so it is tested on its own): one asyncio
object that owns, for each host, how many requests may be in flight (``slots + margin``, or an
:class:`~ollama_async._limits.AdaptiveController` fed by the samples the actors report), and
hands out *grants*: "send one request to host *h*". Because it sees every host's free slots, it
is also the job's router: each grant goes to the host with the most free slots.

Failures it handles:

- **A host that dies.** A grant released as ``"down"`` (connection refused or lost) takes the host
  out for a cool-down (0.5 s, doubling to 8 s); then it gets one probe request at a time until one
  succeeds. Meanwhile grants go to the other hosts; with every host down, requests wait for the
  first probe.
- **A renewed grant.** An actor may pass a grant of a fixed bound that ended well straight to its
  next request (``Report.renew``): the table accounts for the finished request and the new one
  in one step, so the slot stays in use and the bound holds.
- **An actor that dies.** Every grant belongs to a *session*: one per actor incarnation. A
  session that has not been heard of for ``ttl`` seconds is reaped and its grants freed; a new
  session of the same *owner* (a restarted Ray actor keeps its id) frees the old one's at once.

The broker actor (``_broker.py``) wraps one table for the whole job; the split mode runs one
per actor with that actor's share of the slots.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .._limits import DEFAULT_MAX_CONCURRENCY, AdaptiveController, Sample

__all__ = ["DOWN_MAX", "DOWN_MIN", "HostStats", "Outcome", "Report", "SlotTable"]

#: How a granted request ended: fine, 503, the host unreachable, any other error, or never sent
#: (the actor had no row for it any more: not counted in ``granted``).
Outcome = Literal["ok", "busy", "down", "error", "unused"]

#: Cool-down of a host after a connection failure: the first, and the most after doubling.
DOWN_MIN = 0.5
DOWN_MAX = 8.0


@dataclass(frozen=True, slots=True)
class Report:
    """What an actor says about a finished grant: ``wall`` is its request's time (s) from send to
    reply, ``queue`` the server's slot wait (s) when the reply had one."""

    grant: int
    outcome: Outcome = "ok"
    wall: float | None = None
    queue: float | None = None
    renew: bool = False  # the actor already sent the next request on this grant


@dataclass
class HostStats:
    """What the table saw of one host: ``bound`` now, grants ``in_use`` now and at most
    (``max_in_use``: never above the bound), ``granted`` in total, ``downs`` (connection failures
    reported) and ``down`` (cooling down or probing now)."""

    host: str
    bound: int
    mode: str
    in_use: int = 0
    max_in_use: int = 0
    granted: int = 0
    downs: int = 0
    down: bool = False
    adjustments: int = 0


@dataclass(slots=True)
class _Grant:
    id: int
    host: int
    session: str
    epoch: int
    level: int
    settled: bool
    full: bool


@dataclass
class _Host:
    url: str
    fixed: int | None  # slots + margin, or None: adaptive
    controller: AdaptiveController | None
    in_use: int = 0
    max_in_use: int = 0
    granted: int = 0
    downs: int = 0
    down_until: float = 0.0
    probing: bool = False  # after a cool-down: one request at a time until one succeeds
    failures: int = 0
    epochs: dict[int, int] = field(default_factory=dict)  # controller epoch -> grants in flight

    @property
    def bound(self) -> int:
        if self.controller is not None:
            return self.controller.limit
        return self.fixed or 1

    def free(self, now: float) -> int:
        if now < self.down_until:
            return 0
        return (1 if self.probing else self.bound) - self.in_use


@dataclass
class _Session:
    owner: str
    seen: float
    grants: set[int] = field(default_factory=set)


@dataclass
class _Waiter:
    session: str
    want: int
    future: asyncio.Future[list[tuple[int, int]]]
    got: list[tuple[int, int]] = field(default_factory=list)


class SlotTable:
    """Grants of every host's slots for one model (see the module docstring).

    ``bounds[i]`` is host *i*'s slot count (``margin`` is added), or ``None`` for adaptive (the
    controller starts as the client's does and never goes above ``max_concurrency``). Use it from one event loop.
    """

    def __init__(
        self, hosts: Sequence[str], bounds: Sequence[int | None], *, margin: int = 0,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY, ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(hosts) != len(bounds) or not hosts:
            raise ValueError("one bound per host, and at least one host")
        self.ttl = ttl
        self._clock = clock
        self._hosts = [
            _Host(url, None if b is None else b + margin,
                  AdaptiveController(maximum=max_concurrency) if b is None else None)
            for url, b in zip(hosts, bounds, strict=True)
        ]
        self._grants: dict[int, _Grant] = {}
        self._sessions: dict[str, _Session] = {}
        self._owners: dict[str, str] = {}  # owner -> its current session
        self._waiters: deque[_Waiter] = deque()
        # Grant ids start at random, so that a restarted broker's ids never match the grants
        # actors still hold from the one before (their releases must free nothing of the new).
        self._ids = itertools.count(random.randrange(1, 1 << 52))
        self._timer: asyncio.TimerHandle | None = None
        self.last_active = clock()

    # -- sessions ---------------------------------------------------------------------------------

    def touch(self, session: str, owner: str | None = None) -> None:
        """A session was heard of (any call is a heartbeat). A new session of a known owner is a
        restarted actor: the old session's grants are freed now."""
        now = self._clock()
        self.last_active = now
        known = self._sessions.get(session)
        if known is not None:
            known.seen = now
            return
        owner = owner or session
        previous = self._owners.get(owner)
        if previous is not None and previous != session:
            self.drop(previous)
        self._sessions[session] = _Session(owner, now)
        self._owners[owner] = session

    def drop(self, session: str) -> None:
        """Forget a session: free its grants, fail its waiting acquires."""
        gone = self._sessions.pop(session, None)
        if gone is None:
            return
        if self._owners.get(gone.owner) == session:
            del self._owners[gone.owner]
        for waiter in [w for w in self._waiters if w.session == session]:
            self._waiters.remove(waiter)
            self._give_back(waiter.got)
            if not waiter.future.done():
                waiter.future.cancel()
        for grant_id in list(gone.grants):
            self._free(grant_id, None)
        self._dispatch()

    def reap(self) -> list[str]:
        """Drop the sessions not heard of for ``ttl`` seconds (dead actors); returns them."""
        limit = self._clock() - self.ttl
        stale = [s for s, sess in self._sessions.items() if sess.seen < limit]
        for session in stale:
            self.drop(session)
        return stale

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    # -- grants -----------------------------------------------------------------------------------

    async def acquire(self, session: str, want: int = 1, owner: str | None = None) -> list[tuple[int, int]]:
        """Wait until at least one slot is free, then take up to ``want``: ``[(grant, host)]``."""
        self.touch(session, owner)
        loop = asyncio.get_running_loop()
        waiter = _Waiter(session, max(1, want), loop.create_future())
        self._waiters.append(waiter)
        self._dispatch()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if waiter.future.done() and not waiter.future.cancelled():
                self._give_back(waiter.future.result())
            else:
                self._give_back(waiter.got)
            self._dispatch()
            raise

    def release(self, session: str, reports: Sequence[Report]) -> list[int]:
        """Grants are done; their outcome and timings feed the health and adaptive state.

        Only the session's own grants are freed. Returns the renewals the table does not know (a
        reaped session, or a broker restarted since the grant): the actor must stop renewing
        those, or it would send beyond the bound for as long as it has rows."""
        self.touch(session)
        unknown: list[int] = []
        for report in reports:
            grant = self._grants.get(report.grant)
            if grant is None or grant.session != session:
                if report.renew:
                    unknown.append(report.grant)
                continue
            self._free(report.grant, report)
            if report.renew:
                self._grant(session, grant.host, True, grant.id)  # in use again, never free between
        self._dispatch()
        return unknown

    def renewable(self, host_index: int) -> bool:
        """Whether the actors may renew grants of this host themselves (a fixed bound)."""
        return self._hosts[host_index].controller is None

    def _give_back(self, grants: list[tuple[int, int]]) -> None:
        for grant_id, _ in grants:
            self._free(grant_id, None)

    def _free(self, grant_id: int, report: Report | None) -> None:
        grant = self._grants.pop(grant_id, None)
        if grant is None:
            return  # a reaped session's grant, reported late
        session = self._sessions.get(grant.session)
        if session is not None:
            session.grants.discard(grant_id)
        host = self._hosts[grant.host]
        host.in_use -= 1
        left = host.epochs.pop(grant.epoch, 1) - 1
        if left:
            host.epochs[grant.epoch] = left
        if report is None:
            return
        if report.outcome == "unused":
            host.granted = max(0, host.granted - 1)
            return
        if report.outcome == "down":
            self._mark_down(host)
            return
        if report.outcome == "ok" and host.probing:
            host.probing = False
            host.failures = 0
        controller = host.controller
        if controller is None:
            return
        if report.outcome == "busy":
            controller.busy(grant.epoch)
        elif report.outcome == "ok" and report.wall is not None:
            controller.observe(grant.epoch, Sample(grant.level, report.wall, report.queue, grant.settled, grant.full))

    def _mark_down(self, host: _Host) -> None:
        now = self._clock()
        if now < host.down_until:
            return  # another request of the same outage: one cool-down
        host.downs += 1
        host.failures += 1
        host.down_until = now + min(DOWN_MAX, DOWN_MIN * 2 ** (host.failures - 1))
        host.probing = True

    def _pick(self, now: float) -> int | None:
        best, best_free = None, 0
        for i, host in enumerate(self._hosts):
            free = host.free(now)
            if free > best_free or (free == best_free and best is not None and free > 0
                                    and host.in_use < self._hosts[best].in_use):
                best, best_free = i, free
        return best

    def _dispatch(self) -> None:
        """Hand free slots to the waiters, one grant each in turn (FIFO), each to the host with
        the most free slots. Wakes itself up when a cooling-down host may be probed again."""
        now = self._clock()
        waiters = self._waiters
        while waiters:
            host_index = self._pick(now)
            if host_index is None:
                break
            waiter = waiters.popleft()
            if waiter.future.done():
                continue
            full = bool(waiters) or len(waiter.got) + 1 < waiter.want  # demand beyond this grant: the bound is full
            waiter.got.append(self._grant(waiter.session, host_index, full))
            if len(waiter.got) >= waiter.want:
                waiter.future.set_result(waiter.got)
            else:
                waiters.append(waiter)  # round robin: the next waiter gets the next slot
        for waiter in list(waiters):  # partly served, nothing more free: take what it got
            if waiter.got:
                waiters.remove(waiter)
                waiter.future.set_result(waiter.got)
        if waiters:
            self._wake_later(now)

    def _grant(self, session: str, host_index: int, full: bool, grant_id: int | None = None) -> tuple[int, int]:
        host = self._hosts[host_index]
        controller = host.controller
        epoch = controller.epoch if controller is not None else 0
        host.in_use += 1
        host.granted += 1
        host.max_in_use = max(host.max_in_use, host.in_use)
        settled = all(e == epoch for e in host.epochs)
        host.epochs[epoch] = host.epochs.get(epoch, 0) + 1
        grant = _Grant(next(self._ids) if grant_id is None else grant_id, host_index, session, epoch, host.in_use, settled,
                       full or host.in_use >= host.bound)
        self._grants[grant.id] = grant
        self._sessions[session].grants.add(grant.id)
        return grant.id, host_index

    def _wake_later(self, now: float) -> None:
        pending = [h.down_until for h in self._hosts if h.down_until > now]
        if not pending:
            return
        when = min(pending)
        if self._timer is not None and self._timer.when() <= asyncio.get_running_loop().time() + (when - now):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(max(0.0, when - now) + 0.001, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    # -- introspection ------------------------------------------------------------------------------

    def stats(self) -> list[HostStats]:
        now = self._clock()
        return [
            HostStats(h.url, h.bound, "adaptive" if h.controller else "fixed", h.in_use, h.max_in_use, h.granted,
                      h.downs, h.probing or now < h.down_until, h.controller.adjustments if h.controller else 0)
            for h in self._hosts
        ]

    def reset_stats(self) -> None:
        for host in self._hosts:
            host.max_in_use = host.in_use
            host.granted = 0
            host.downs = 0

    def waiting(self) -> int:
        return sum(w.want - len(w.got) for w in self._waiters)


def split_bounds(slots: Sequence[int | None], margin: int, actors: int) -> tuple[list[int | None], list[str]]:
    """Each actor's share of every host's ``slots + margin`` (the split mode). A share below one
    slot cannot be honoured: it becomes 1 and a warning says by how much the bound is exceeded."""
    shares: list[int | None] = []
    warnings: list[str] = []
    for i, s in enumerate(slots):
        if s is None:
            shares.append(None)
            continue
        share = (s + margin) // actors
        if share < 1:
            warnings.append(f"host {i}: {s} slots + {margin} over {actors} actors is less than one each; "
                            f"{actors} may be in flight")
            share = 1
        shares.append(share)
    return shares, warnings

