"""Batched decoding: a loaded model steps all its active slots together, slower the more are active.

A real server (llama.cpp behind Ollama) decodes its active requests as one batch: every step
produces one token for each of them, and a step takes longer the more requests it carries. On a
CPU the step of four streams takes ~2.2x the step of one (65 tokens/s alone, 29 each of four);
on a GPU far less. Prompt processing is part of the same steps, so a long prompt slows the
tokens of everyone else.

:class:`Batch` models that as processor sharing with a rate that depends on the number active:
with ``n`` requests active, each receives ``1 / step_factor(n)`` seconds of *solo work* per
second, where ``step_factor(n) = 1 + contention * (n - 1)``. A request's work is what it would
take alone (prompt + tokens x ``token_ms``). The batch keeps one virtual clock (``done``: the
solo work every active request has received) and one timer for the earliest waiting target, so
the cost per request is a heap push and a timer re-arm on each join or leave, not per token of
a non-streamed reply.
"""

from __future__ import annotations

import asyncio
import heapq

#: How late the batch's timer fires, learnt as it fires (as :func:`sleep_until` learns its own):
#: the timer is aimed that much early, so mean service times match the configured latency.
_lateness = 0.0005


#: How late the event loop's timers fire, learnt as they fire (asyncio's epoll selector rounds
#: every wait up to a whole millisecond, and a busy loop adds its own delay). Aiming that much
#: early keeps the mean service time equal to the model's configured latency at any load, which
#: throughput benchmarks divide by.
_sleep_lateness = 0.0005


async def sleep_until(deadline: float) -> None:
    """Sleep until ``deadline`` (event-loop time), accurate on average to well under 1 ms."""
    global _sleep_lateness
    loop = asyncio.get_running_loop()
    target = deadline - _sleep_lateness
    delay = target - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)
        late = loop.time() - target
        _sleep_lateness = min(0.005, max(0.0, 0.9 * _sleep_lateness + 0.1 * late))


def step_factor(contention: float, active: int) -> float:
    """How much longer one decode step is with ``active`` requests than with one."""
    return 1.0 + contention * (active - 1) if active > 1 else 1.0


class Batch:
    """The shared decode steps of one loaded model; runs on the server's event loop."""

    __slots__ = ("_handle", "_seq", "_when", "active", "at", "contention", "done", "targets")

    def __init__(self, contention: float) -> None:
        self.contention = contention
        self.active = 0
        self.done = 0.0  # solo seconds of work each active request has received (virtual time)
        self.at = 0.0  # loop time at which ``done`` was last brought up to date
        self.targets: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0
        self._handle: asyncio.TimerHandle | None = None
        self._when = 0.0

    def _advance(self, now: float) -> None:
        if self.active:
            self.done += (now - self.at) / step_factor(self.contention, self.active)
        self.at = now

    def join(self) -> float:
        """A request takes a slot and starts working; returns its start on the virtual clock."""
        loop = asyncio.get_running_loop()
        self._advance(loop.time())
        self.active += 1
        self._arm(loop)
        return self.done

    def leave(self) -> None:
        """A request gives its slot back (finished, failed or cancelled)."""
        loop = asyncio.get_running_loop()
        self._advance(loop.time())
        self.active -= 1
        self._arm(loop)

    async def until(self, target: float) -> None:
        """Wait until the active requests have received ``target`` (virtual) seconds of work."""
        loop = asyncio.get_running_loop()
        self._advance(loop.time())
        if target <= self.done:
            return
        fut: asyncio.Future[None] = loop.create_future()
        self._seq += 1
        heapq.heappush(self.targets, (target, self._seq, fut))
        self._arm(loop)
        await fut

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """One timer, for the earliest target at the current rate (re-aimed when the rate changes)."""
        targets = self.targets
        while targets and targets[0][2].done():  # cancelled waiters
            heapq.heappop(targets)
        if not targets or not self.active:
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            return
        when = self.at + (targets[0][0] - self.done) * step_factor(self.contention, self.active) - _lateness
        if self._handle is not None:
            if abs(when - self._when) < 1e-5:
                return
            self._handle.cancel()
        self._when = when
        self._handle = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        global _lateness
        self._handle = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        late = now - self._when
        _lateness = min(0.005, max(0.0, 0.9 * _lateness + 0.1 * late))
        self._advance(now)
        # What falls due within the lateness margin is served now: the timer was aimed early.
        horizon = self.done + (_lateness + 1e-4) / step_factor(self.contention, max(self.active, 1))
        targets = self.targets
        while targets and targets[0][0] <= horizon:
            fut = heapq.heappop(targets)[2]
            if not fut.done():
                fut.set_result(None)
        self._arm(loop)


async def spend(batch: Batch | None, seconds: float, since: float) -> None:
    """Do ``seconds`` of solo work in one go (an embedding): in the batch if there is one, else
    sleep until ``since`` (loop time: when the slot became the request's) + ``seconds``."""
    if batch is None:
        if seconds > 0:  # compensated as generation's sleeps are: a 32 ms embed takes 32 ms under load too
            await sleep_until(since + seconds)
        return
    start = batch.join()
    try:
        await batch.until(start + seconds)
    finally:
        batch.leave()
