"""The slot broker: one async Ray actor per job that owns every (host, model) slot.

Every ``map_batches`` actor asks it for grants (``acquire``), sends each request to the host it
was granted and gives the grant back with the outcome (``release``, fire-and-forget). The broker
is a thin shell over :class:`~ollama_async.ray._slots.SlotTable`; what it adds is the
Ray side: it is *named* after the job's settings, so actors built from the same arguments find
the same one (``get_if_exists``); it is *detached*, so that it outlives the actor that happened to
create it (a dying creator must not take the job's bound with it); it reaps the sessions of dead
actors; and it exits on its own once no actor has used it for ``idle_exit`` seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import ray

from ._config import HostsInput, JobSlots, SlotsInput
from ._slots import Outcome, Report, SlotTable

__all__ = ["NAMESPACE", "SlotBroker", "broker_for", "slot_broker"]

#: Brokers live in their own namespace: the driver and every worker find them whatever theirs is.
NAMESPACE = "ollama_async"


class SlotBroker:
    """The Ray actor (see the module docstring); create it with :func:`slot_broker`."""

    def __init__(self, hosts: list[str], bounds: list[int | None], margin: int, max_concurrency: int,
                 ttl: float = 10.0, idle_exit: float = 120.0) -> None:
        self._table = SlotTable(hosts, bounds, margin=margin, max_concurrency=max_concurrency, ttl=ttl)
        self._idle_exit = idle_exit
        self._reaper: asyncio.Task[None] | None = None

    def _started(self) -> SlotTable:
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap())
        return self._table

    async def _reap(self) -> None:
        table = self._table
        while True:
            await asyncio.sleep(max(0.05, table.ttl / 4))
            table.reap()
            if table.sessions == 0 and time.monotonic() - table.last_active > self._idle_exit:
                # Not exit_actor(): from a background task of an async actor it only ends the task.
                ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
                return

    async def acquire(self, session: str, owner: str, want: int) -> list[tuple[int, int, bool]]:
        """Wait for at least one free slot; up to ``want`` grants ``(grant, host index, renewable)``."""
        table = self._started()
        return [(g, h, table.renewable(h)) for g, h in await table.acquire(session, want, owner)]

    async def release(self, session: str,
                      reports: list[tuple[int, Outcome, float | None, float | None, bool]]) -> list[int]:
        """Grants done (or renewed); returns the renewed ones it does not know, to stop renewing."""
        return self._started().release(session, [Report(*r) for r in reports])

    async def heartbeat(self, session: str, owner: str) -> None:
        self._started().touch(session, owner)

    async def leave(self, session: str) -> None:
        self._started().drop(session)

    async def stats(self) -> list[dict[str, Any]]:
        """Per host: ``bound``, ``in_use``, ``max_in_use``, ``granted``, ``downs``, ``down``, ..."""
        return [dataclasses.asdict(s) for s in self._table.stats()]

    async def reset_stats(self) -> None:
        self._table.reset_stats()


_RemoteBroker: Any = None


def _remote_class() -> Any:
    global _RemoteBroker
    if _RemoteBroker is None:
        # No CPU: it must never keep a map_batches actor from being scheduled; async, so that
        # thousands of waiting acquires cost nothing.
        options: dict[str, Any] = {"num_cpus": 0, "max_restarts": -1, "max_concurrency": 10_000}
        _RemoteBroker = ray.remote(**options)(SlotBroker)
    return _RemoteBroker


def broker_for(config: JobSlots, *, ttl: float = 10.0) -> Any:
    """The broker of ``config``'s job (made by the first caller, found by the others)."""
    job = config.job or ray.get_runtime_context().get_job_id()
    return _remote_class().options(
        name=config.broker_name(job), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
    ).remote(list(config.hosts), list(config.slots), config.margin, config.max_concurrency, ttl)


def slot_broker(
    hosts: HostsInput, model: str, *, slots: SlotsInput = None, margin: int = 1, max_concurrency: int = 64,
    job: str | None = None,
) -> Any:
    """The handle of the broker that the Ray classes built with these arguments share.

    Call it from the driver with the same ``hosts``, ``model``, ``slots``, ``margin`` (and
    ``job``) as the classes to read what it saw: ``ray.get(broker.stats.remote())``.
    """
    return broker_for(JobSlots.make(hosts, model, slots=slots, margin=margin, max_concurrency=max_concurrency,
                                    job=job))
