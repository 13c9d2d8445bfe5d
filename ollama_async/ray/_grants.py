"""The actor's side of the slots: wait for a grant, give it back with what happened.

:class:`BrokerSlots` talks to the job's broker and keeps its traffic low: whatever number of rows
wait, one ``acquire`` call is outstanding per actor, asking for as many grants as rows wait; the
grants that finish in the same event-loop tick go back in one fire-and-forget ``release``; a
heartbeat every ``ttl / 3`` seconds keeps the session alive. A grant that ends well while rows
of this actor wait is *renewed*: it goes straight to the next row (same host, same slot) and the
broker is told in the same ``release``, so that a freed slot is never idle for the two calls
(release, then the broker's answer to a waiting acquire) that giving it back would take. Only
grants of a fixed bound are renewable: an adaptive bound may have shrunk meanwhile, which only
the broker knows. :class:`LocalSlots` holds the
actor's own share of the slots (the split mode) in a local table, with no traffic at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from ._slots import Outcome, SlotTable

__all__ = ["BrokerSlots", "Grant", "LocalSlots", "Slots"]


@dataclass(frozen=True, slots=True)
class Grant:
    """Permission to send one request to host ``host`` (an index into the job's hosts)."""

    id: int
    host: int
    renewable: bool = False  # the host's bound is fixed: the actor may pass the grant on itself


class Slots(Protocol):
    async def acquire(self) -> Grant: ...

    def release(self, grant: Grant, outcome: Outcome, wall: float | None = None, queue: float | None = None) -> None:
        ...

    async def aclose(self) -> None: ...


def _owner() -> str:
    """Who this session belongs to: the Ray actor (which keeps its id across restarts), else the
    process (a driver, a task)."""
    try:
        import ray

        actor = ray.get_runtime_context().get_actor_id()
    except Exception:  # not inside Ray
        actor = None
    return actor or f"pid-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class LocalSlots:
    """This actor's share of every host's slots, in a table of its own (no broker)."""

    def __init__(self, table: SlotTable) -> None:
        self._table = table
        self._session = uuid.uuid4().hex

    async def acquire(self) -> Grant:
        ((grant, host),) = await self._table.acquire(self._session, 1)
        return Grant(grant, host)

    def release(self, grant: Grant, outcome: Outcome, wall: float | None = None, queue: float | None = None) -> None:
        from ._slots import Report

        self._table.release(self._session, [Report(grant.id, outcome, wall, queue)])

    async def aclose(self) -> None:
        self._table.drop(self._session)


class BrokerSlots:
    """Grants from the job's broker actor (see the module docstring)."""

    def __init__(self, broker: Any, *, ttl: float = 10.0) -> None:
        self._broker = broker
        self._session = uuid.uuid4().hex  # a new one per actor incarnation
        self._owner = _owner()
        self._ttl = ttl
        self._waiters: deque[asyncio.Future[Grant]] = deque()
        self._pump: asyncio.Task[None] | None = None
        self._reports: list[tuple[int, Outcome, float | None, float | None, bool]] = []
        self.renewed = 0
        self._revoked: set[int] = set()  # renewals the broker did not know: never renewed again
        self._watching: set[asyncio.Task[None]] = set()
        self._flush_scheduled = False
        self._heart: asyncio.Task[None] | None = None

    async def acquire(self) -> Grant:
        loop = asyncio.get_running_loop()
        if self._heart is None:
            self._heart = loop.create_task(self._heartbeat())
        future: asyncio.Future[Grant] = loop.create_future()
        self._waiters.append(future)
        if self._pump is None or self._pump.done():
            self._pump = loop.create_task(self._run_pump())
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # granted just as we were cancelled
                self.release(future.result(), "unused")
            raise

    async def _run_pump(self) -> None:
        """One ``acquire`` call at a time, for as many grants as rows wait."""
        waiters = self._waiters
        while True:
            while waiters and waiters[0].done():
                waiters.popleft()  # cancelled while waiting
            if not waiters:
                return
            try:
                got = await self._broker.acquire.remote(self._session, self._owner, len(waiters))
            except asyncio.CancelledError:
                raise
            except Exception:  # the broker restarting: ask again shortly
                await asyncio.sleep(0.2)
                continue
            for grant_id, host, renewable in got:
                grant = Grant(grant_id, host, renewable)
                if not self._hand_over(grant):
                    self.release(grant, "unused")  # nobody wants it any more (renewals served them)

    def _hand_over(self, grant: Grant) -> bool:
        """Give ``grant`` to the oldest row still waiting; False if none is."""
        waiters = self._waiters
        while waiters and waiters[0].done():
            waiters.popleft()  # cancelled while waiting
        if not waiters:
            return False
        waiters.popleft().set_result(grant)
        return True

    def release(self, grant: Grant, outcome: Outcome, wall: float | None = None, queue: float | None = None) -> None:
        renew = outcome == "ok" and grant.renewable and grant.id not in self._revoked and self._hand_over(grant)
        if renew:
            self.renewed += 1
        self._reports.append((grant.id, outcome, wall, queue, renew))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        reports, self._reports = self._reports, []
        if reports:
            ref = self._broker.release.remote(self._session, reports)
            if any(r[4] for r in reports):  # renewals: learn which ones the broker no longer knows
                task = asyncio.get_running_loop().create_task(self._revoke(ref))
                self._watching.add(task)
                task.add_done_callback(self._watching.discard)

    async def _revoke(self, ref: Any) -> None:
        with contextlib.suppress(Exception):  # the broker restarting: its replacement answers the next
            self._revoked.update(await ref)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            with contextlib.suppress(Exception):
                self._broker.heartbeat.remote(self._session, self._owner)

    async def aclose(self) -> None:
        for task in (self._pump, self._heart, *self._watching):
            if task is not None:
                task.cancel()
        self._flush()
        with contextlib.suppress(Exception):
            await self._broker.leave.remote(self._session)
