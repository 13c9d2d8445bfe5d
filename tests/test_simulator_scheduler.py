"""Scheduling as the real server does it: slots, the bounded load queue, disconnects, keep-alive."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest

from ollama_async.testing import ModelSpec, ModelStats, Simulator

BUSY = "server busy, please try again.  maximum pending requests exceeded"

pytestmark = pytest.mark.anyio


def server_wait_s(reply: dict[str, Any]) -> float:
    """Slot wait inside the server, from the reply's metrics (the API doc's formula)."""
    ns = (
        reply["total_duration"]
        - reply["load_duration"]
        - reply["prompt_eval_duration"]
        - reply["eval_duration"]
    )
    return float(ns) / 1e9


async def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await anyio.sleep(0.005)


async def raw_request(
    sim: Simulator, body: dict[str, Any], path: str = "/api/generate"
) -> anyio.abc.SocketStream:
    stream = await anyio.connect_tcp("127.0.0.1", sim.port)
    data = json.dumps(body).encode()
    await stream.send(
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (path.encode(), len(data), data)
    )
    return stream


async def gather(*fns: Callable[[], Awaitable[Any]]) -> list[Any]:
    results: list[Any] = [None] * len(fns)

    async def run(i: int) -> None:
        results[i] = await fns[i]()

    async with anyio.create_task_group() as tg:
        for i in range(len(fns)):
            tg.start_soon(run, i)
    return results


def limits(n: int) -> httpx.Limits:
    return httpx.Limits(max_connections=n, max_keepalive_connections=n)


async def test_full_load_queue_answers_503_then_loaded_model_queues_unbounded() -> None:
    spec = ModelSpec("slow", load_ms=300, token_ms=5, tokens=4)
    async with (
        Simulator([spec], max_queue=2) as sim,
        httpx.AsyncClient(base_url=sim.url, timeout=10, limits=limits(16)) as c,
    ):

        async def one() -> tuple[int, float, dict[str, Any]]:
            r = await c.post("/api/generate", json={"model": "slow", "prompt": "x", "stream": False})
            return r.status_code, time.perf_counter(), r.json()

        cold = await gather(*[one for _ in range(8)])
        codes = sorted(code for code, _, _ in cold)
        assert codes == [200] * 3 + [503] * 5
        assert all(body == {"error": BUSY} for code, _, body in cold if code == 503)
        last_503 = max(t for code, t, _ in cold if code == 503)
        first_200 = min(t for code, t, _ in cold if code == 200)
        assert last_503 < first_200  # refused at once, not after the load
        st = sim.stats("slow")
        assert (st.rejected_503, st.loads, st.requests) == (5, 1, 3)

        warm = await gather(*[one for _ in range(8)])
        assert [code for code, _, _ in warm] == [200] * 8
        assert sim.stats("slow").loads == 1 and sim.stats("slow").max_in_flight == 1


async def test_slots_are_respected_and_waits_show_in_metrics() -> None:
    spec = ModelSpec("par", slots=4, token_ms=5, tokens=10)
    async with (
        Simulator([spec]) as sim,
        httpx.AsyncClient(base_url=sim.url, timeout=30, limits=limits(64)) as c,
    ):
        await c.post("/api/generate", json={"model": "par"})  # load
        sim.reset_stats()
        seen: list[ModelStats] = []

        async def one() -> dict[str, Any]:
            r = await c.post("/api/generate", json={"model": "par", "prompt": "x", "stream": False})
            assert r.status_code == 200
            seen.append(sim.stats("par"))
            body: dict[str, Any] = r.json()
            return body

        replies = await gather(*[one for _ in range(50)])
        st = sim.stats("par")
        assert st.max_in_flight == 4
        assert st.requests == 50 and st.in_flight == 0 and st.waiting == 0
        assert max(s.in_flight for s in seen) <= 4
        assert st.queue_waits >= 20
        waits = [server_wait_s(r) for r in replies]
        assert min(waits) >= 0
        assert max(waits) > 0.2  # 50 x 50 ms of work on 4 slots
        assert sum(waits) == pytest.approx(st.queue_wait_s, rel=0.1, abs=0.05)
        for r in replies:
            assert r["eval_duration"] >= 0.04e9  # 10 tokens x 5 ms


async def test_disconnect_while_waiting_gives_the_place_up() -> None:
    spec = ModelSpec("one", slots=1, token_ms=20, tokens=10)
    async with Simulator([spec]) as sim, httpx.AsyncClient(base_url=sim.url, timeout=10) as c:
        await c.post("/api/generate", json={"model": "one"})
        sim.reset_stats()
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: c.post("/api/generate", json={"model": "one", "prompt": "a", "stream": False})
            )
            await wait_for(lambda: sim.stats("one").in_flight == 1)
            waiter = await raw_request(sim, {"model": "one", "prompt": "b", "stream": False})
            await wait_for(lambda: sim.stats("one").waiting == 1)
            await waiter.aclose()
            await wait_for(lambda: sim.stats("one").disconnects == 1)
            assert sim.stats("one").waiting == 0
        st = sim.stats("one")
        assert (st.requests, st.disconnects, st.in_flight) == (1, 1, 0)  # the waiter never ran
        r = await c.post("/api/generate", json={"model": "one", "prompt": "c", "stream": False})
        assert r.status_code == 200 and server_wait_s(r.json()) < 0.1
        assert sim.stats("one").requests == 2


async def test_disconnect_mid_generation_frees_the_slot() -> None:
    spec = ModelSpec("one", slots=1, token_ms=20, tokens=50)  # a full reply takes 1 s
    async with Simulator([spec]) as sim, httpx.AsyncClient(base_url=sim.url, timeout=10) as c:
        await c.post("/api/generate", json={"model": "one"})
        sim.reset_stats()
        streaming = await raw_request(sim, {"model": "one", "prompt": "a"})
        received = b""
        while received.count(b"\n{") < 2:  # headers, then at least two NDJSON lines
            received += await streaming.receive()
        assert b"HTTP/1.1 200 OK" in received and b"application/x-ndjson" in received

        async def queued() -> dict[str, Any]:
            r = await c.post("/api/generate", json={"model": "one", "prompt": "b", "stream": False})
            body: dict[str, Any] = r.json()
            return body

        async with anyio.create_task_group() as tg:
            result: list[dict[str, Any]] = []

            async def run_queued() -> None:
                result.append(await queued())

            tg.start_soon(run_queued)
            await wait_for(lambda: sim.stats("one").waiting == 1)
            await streaming.aclose()
        st = sim.stats("one")
        assert st.disconnects == 1 and st.requests == 2 and st.max_in_flight == 1
        # the queued request got the slot when the client left, not ~1 s later when it would have finished
        assert server_wait_s(result[0]) < 0.6
        assert result[0]["done"] is True


async def test_load_time_option_change_reloads() -> None:
    async with Simulator([ModelSpec("m")]) as sim, httpx.AsyncClient(base_url=sim.url, timeout=10) as c:
        base = {"model": "m", "prompt": "x", "stream": False}
        await c.post("/api/generate", json=base)
        await c.post("/api/generate", json={**base, "options": {"temperature": 0.1, "seed": 3}})
        assert sim.stats("m").loads == 1  # sampling options do not reload
        await c.post("/api/generate", json={**base, "options": {"num_ctx": 8192}})
        assert sim.stats("m").loads == 2
        ps = (await c.get("/api/ps")).json()["models"]
        assert ps[0]["context_length"] == 8192
        await c.post("/api/generate", json=base)
        assert sim.stats("m").loads == 3


async def test_keep_alive_unloads_idle_model() -> None:
    async with (
        Simulator([ModelSpec("m")], keep_alive_s=300) as sim,
        httpx.AsyncClient(base_url=sim.url, timeout=10) as c,
    ):
        await c.post(
            "/api/generate", json={"model": "m", "prompt": "x", "keep_alive": "200ms", "stream": False}
        )
        assert [m["name"] for m in (await c.get("/api/ps")).json()["models"]] == ["m:latest"]

        async def loaded() -> bool:
            return bool((await c.get("/api/ps")).json()["models"])

        deadline = time.monotonic() + 5
        while await loaded():
            assert time.monotonic() < deadline, "model never unloaded"
            await anyio.sleep(0.05)
        await c.post("/api/generate", json={"model": "m", "prompt": "x", "stream": False})
        assert sim.stats("m").loads == 2


async def test_one_load_at_a_time_and_embed_models_have_one_slot() -> None:
    specs = [
        ModelSpec("a", load_ms=200),
        ModelSpec("b", load_ms=200),
        ModelSpec("e", kind="embed", slots=4, embed_ms=10, dim=8),
    ]
    assert specs[2].slots == 1
    async with (
        Simulator(specs) as sim,
        httpx.AsyncClient(base_url=sim.url, timeout=10, limits=limits(16)) as c,
    ):
        t0 = time.perf_counter()
        await gather(
            lambda: c.post("/api/generate", json={"model": "a"}),
            lambda: c.post("/api/generate", json={"model": "b"}),
        )
        assert time.perf_counter() - t0 >= 0.39  # two 200 ms loads, one after the other

        async def embed() -> int:
            r = await c.post("/api/embed", json={"model": "e", "input": ["x", "y"]})
            return r.status_code

        assert await gather(*[embed for _ in range(6)]) == [200] * 6
        st = sim.stats("e")
        assert st.max_in_flight == 1 and st.requests == 6 and st.queue_waits >= 1


async def test_stats_api(anyio_backend: str) -> None:
    sim = Simulator([ModelSpec("m")])
    with pytest.raises(KeyError):
        sim.stats("nope")
    assert sim.stats("m:latest") == ModelStats()
    sim.add_model(ModelSpec("n", tokens=2))
    assert "n:latest" in sim.models() and set(sim.all_stats()) == {"m:latest", "n:latest"}
    sim.remove_model("n")
    with pytest.raises(KeyError):
        sim.remove_model("n")
    async with sim, httpx.AsyncClient(base_url=sim.url) as c:
        sim.add_model(ModelSpec("late", tokens=2))  # posted to the running server
        r = await c.post("/api/generate", json={"model": "late", "prompt": "x", "stream": False})
        assert r.json()["eval_count"] == 2
        sim.remove_model("late")
        assert (await c.post("/api/generate", json={"model": "late", "prompt": "x"})).status_code == 404
        assert sim.stats("m").requests == 0


def test_a_handed_over_slot_is_the_waiters_from_the_hand_over_and_stays_counted_in_flight() -> None:
    """Slots.release stamps the hand-over: the waiter's work starts then, not when its coroutine
    next runs (a loop busy encoding the previous reply delays that), and in_flight never dips."""
    import asyncio

    from ollama_async.testing._models import StatsCounter
    from ollama_async.testing._scheduler import Slots

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stats = StatsCounter()
        slots = Slots(1, stats)
        slots.free -= 1
        stats.slot_acquired()  # the first request holds the one slot
        waiter = asyncio.ensure_future(slots.wait())
        cancelled = asyncio.ensure_future(slots.wait())
        await asyncio.sleep(0)
        released_at = loop.time()
        slots.release()
        assert stats.snapshot().in_flight == 1 and stats.snapshot().requests == 2
        time.sleep(0.05)  # noqa: ASYNC251 - on purpose: the loop is busy before the waiter runs again
        since = await waiter
        assert released_at <= since < released_at + 0.01 < loop.time() - 0.04
        slots.release()  # handed to the second waiter, which is cancelled before it runs
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        snap = stats.snapshot()  # passed on to nobody: free again, counted once, not in flight
        assert (snap.in_flight, snap.requests, slots.free) == (0, 2, 1)

    asyncio.run(main())
