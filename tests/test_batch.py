"""``client.batch``: bounds, order, per-item failures, 503 bursts, embeddings, progress and
cancellation, over loopback against the simulator (asyncio, and trio where it matters)."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import numpy as np
import pytest

from ollama_async import AsyncClient, RequestError, ResponseError, RetryPolicy
from ollama_async.batch import BatchError, BatchItem, EmbedResults, Progress
from ollama_async.testing import Fault, ModelSpec, Simulator

from .conftest import active_connections

GEN, EMB = "gen", "emb"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def bsim() -> Iterator[Simulator]:
    with Simulator(
        models=[
            ModelSpec(name=GEN, slots=4, tokens=3, token_ms=2),
            ModelSpec(name=EMB, kind="embed", dim=16, context_length=40),
        ],
        seed=0,
    ) as server:
        yield server


def fast_retries(client: AsyncClient) -> AsyncClient:
    """The client's own retry rules, with short backoff so a 503 burst ends quickly."""
    client._transport.retry = RetryPolicy(max_retries=2, backoff_base=0.01, backoff_max=0.05)
    return client


async def direct(client: AsyncClient, prompts: list[str]) -> list[str]:
    return [(await client.generate(GEN, p)).response or "" for p in prompts]


def poll(predicate: Any, seconds: float = 5.0) -> bool:
    """``wait_for`` for plain (non-async) tests."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


async def wait_for(predicate: Any, seconds: float = 5.0) -> bool:
    """Poll a condition the server thread updates on its own schedule (a bound, not a timing)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await anyio.sleep(0.01)
    return True


# -- bounds ---------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("where", ["client", "batch"])
async def test_batch_never_exceeds_the_bound(bsim: Simulator, where: str) -> None:
    kwargs = {"concurrency": 3} if where == "client" else {}
    async with AsyncClient(bsim.url, **kwargs) as client:  # type: ignore[arg-type]
        run = client.batch.generate(GEN, [f"p{i}" for i in range(120)],
                                    concurrency=3 if where == "batch" else None)
        results = await run
    assert len(results) == 120 and all(r.done for r in results)
    assert bsim.stats(GEN).max_in_flight == 3
    assert run.progress.done == 120 and run.progress.failed == 0 and run.progress.in_flight == 0


@pytest.mark.anyio
async def test_with_bound_equal_to_slots_the_bound_is_reached(bsim: Simulator) -> None:
    async with AsyncClient(bsim.url, concurrency=4) as client:
        await client.batch.generate(GEN, (f"p{i}" for i in range(120)))
        stats = client.limits.stats()["gen:latest"]
    assert bsim.stats(GEN).max_in_flight == 4 == stats.max_in_flight


# -- order and results ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_await_ordered_and_as_completed_are_each_correct(bsim: Simulator) -> None:
    prompts = [f"prompt number {i}" for i in range(60)]
    async with AsyncClient(bsim.url, concurrency=4) as client:
        expected = await direct(client, prompts)

        results = await client.batch.generate(GEN, prompts)
        assert [r.response for r in results] == expected

        seen: dict[int, BatchItem[Any]] = {}
        async for item in client.batch.generate(GEN, iter(prompts)):
            assert item.index not in seen and item.ok
            seen[item.index] = item
        assert sorted(seen) == list(range(60))
        assert all(item.input == prompts[i] and item.unwrap().response == expected[i] for i, item in seen.items())

        async def agen() -> AsyncIterator[str]:
            for p in prompts:
                yield p

        ordered = [item async for item in client.batch.generate(GEN, agen(), max_pending=5).ordered()]
        assert [item.index for item in ordered] == list(range(60))
        assert [item.result.response for item in ordered if item.result] == expected


@pytest.mark.anyio
async def test_dict_items_and_chat(bsim: Simulator) -> None:
    async with AsyncClient(bsim.url, concurrency=4) as client:
        one = await client.generate(GEN, "x", system="be brief", options={"num_predict": 1})
        results = await client.batch.generate(GEN, [{"prompt": "x", "options": {"num_predict": 1}}, "y"],
                                              system="be brief")
        assert results[0].response == one.response and results[0].eval_count == 1
        conversations = [[{"role": "user", "content": f"q{i}"}] for i in range(10)]
        expected = [(await client.chat(GEN, c)).message.content for c in conversations]
        chats = await client.batch.chat(GEN, [*conversations, {"messages": conversations[0]}])
        assert [c.message.content for c in chats] == expected + expected[:1]
        with pytest.raises(RequestError):
            client.batch.generate(GEN, ["x"], stream=True)
        with pytest.raises(RequestError):
            client.batch.generate(GEN, "not a list of prompts")
        with pytest.raises(RequestError):
            client.batch.generate(GEN, ["x"], concurrency=0)
        bad = await client.batch.generate(GEN, ["ok", 42])
        assert isinstance(bad[1], RequestError) and bad[0].done


# -- failures ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_failed_items_are_reported_per_item(bsim: Simulator) -> None:
    prompts = [f"p{i}" for i in range(200)]
    async with AsyncClient(bsim.url, concurrency=4) as client:
        expected = await direct(client, prompts)
        bsim.random_faults(rate=0.1, kinds=["status_500"], seed=1, model=GEN)
        run = client.batch.generate(GEN, prompts)
        results = await run
        failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
        assert 5 < len(failed) < 40 and run.progress.failed == len(failed)
        for i, r in enumerate(results):
            if i in failed:
                assert isinstance(r, ResponseError) and r.status_code == 500
            else:
                assert r.response == expected[i]
        with pytest.raises(BatchError) as info:
            await client.batch.generate(GEN, prompts, return_exceptions=False)
        err = info.value
        assert err.errors and all(isinstance(e, ResponseError) for e in err.errors.values())
        assert len(err.results) == 200
        assert all(err.results[i].response == expected[i] for i in range(200) if i not in err.errors)
        bsim.clear_faults()


@pytest.mark.anyio
async def test_a_503_burst_ends_with_every_item_done(bsim: Simulator) -> None:
    async with AsyncClient(bsim.url, concurrency=4) as client:
        fast_retries(client)
        bsim.inject(Fault.busy(40), model=GEN)
        results = await client.batch.generate(GEN, [f"p{i}" for i in range(60)])
        assert all(not isinstance(r, BaseException) for r in results)
        assert bsim.stats(GEN).rejected_503 == 40
        assert client.limits.stats()["gen:latest"].busy_signals > 0


@pytest.mark.anyio
async def test_503_slows_the_adaptive_bound(bsim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_NUM_PARALLEL", raising=False)
    async with AsyncClient(bsim.url, max_concurrency=8) as client:
        fast_retries(client)
        await client.batch.generate(GEN, [f"p{i}" for i in range(150)])
        before = client.limits.stats()["gen:latest"].limit
        assert before >= 3
        bsim.inject(Fault.busy(8), model=GEN)
        results = await client.batch.generate(GEN, [f"q{i}" for i in range(8)])
        assert all(not isinstance(r, BaseException) for r in results)
        assert client.limits.stats()["gen:latest"].limit < before


# -- embeddings ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_embed_keeps_order_isolates_bad_inputs_and_gives_float32(bsim: Simulator) -> None:
    texts = [f"text number {i}" for i in range(200)]
    bad = {17, 18, 150}
    for i in bad:
        texts[i] = "word " * 50  # longer than the model's context (40) -> 400 with truncate=False
    async with AsyncClient(bsim.url) as client:
        good = [t for i, t in enumerate(texts) if i not in bad]
        expected = np.asarray((await client.embed(EMB, good)).embeddings, dtype=np.float32)
        run = client.batch.embed(EMB, iter(texts), batch_size=32, truncate=False)
        res = await run
        assert isinstance(res, EmbedResults)
        vectors, errors = res
        assert vectors.dtype == np.float32 and vectors.shape == (200, 16)
        assert set(errors) == bad and all(e.status_code == 400 for e in errors.values())  # type: ignore[attr-defined]
        assert np.isnan(vectors[sorted(bad)]).all()
        assert np.allclose(np.delete(vectors, sorted(bad), axis=0), expected)
        assert run.progress.done == 200 and run.progress.failed == 3
        assert client.limits.stats()["emb:latest"].mode == "embed-only"

        seen = {}
        async for item in client.batch.embed(EMB, texts, batch_size=7, truncate=False):
            seen[item.index] = item
        assert sorted(seen) == list(range(200)) and {i for i, it in seen.items() if not it.ok} == bad
        assert np.allclose(seen[0].result, expected[0])
        ordered = [it.index async for it in client.batch.embed(EMB, texts, batch_size=5).ordered()]
        assert ordered == list(range(200))
        truncated = await client.batch.embed(EMB, texts, batch_size=64)  # truncate defaults to true
        assert not truncated.errors
        mixed = await client.batch.embed(EMB, ["a", None, "b"], dimensions=4)
        assert isinstance(mixed.errors[1], RequestError) and mixed.vectors.shape == (3, 4)


@pytest.mark.anyio
async def test_embed_without_numpy_gives_lists(bsim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from ollama_async.batch import _batch

    monkeypatch.setattr(_batch, "numpy", None)
    async with AsyncClient(bsim.url) as client:
        res = await client.batch.embed(EMB, ["a b", "word " * 50, "c"], batch_size=2, truncate=False)
    assert isinstance(res.vectors, list) and res.vectors[1] is None and list(res.errors) == [1]
    assert isinstance(res.vectors[0], list) and len(res.vectors[0]) == 16


# -- progress -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_progress_callback_and_bar(bsim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int | None, int, int]] = []

    def on_progress(p: Progress) -> None:
        seen.append((p.total, p.done, p.failed))
        assert p.rate >= 0 and (p.eta is None or p.eta >= 0)

    async with AsyncClient(bsim.url, concurrency=4) as client:
        run = client.batch.generate(GEN, [f"p{i}" for i in range(30)], progress=on_progress)
        await run
        assert len(seen) == 30 and seen[-1] == (30, 30, 0) and [d for _, d, _ in seen] == list(range(1, 31))
        assert run.progress.eta == 0 and run.progress.rate > 0 and run.progress.succeeded == 30
        gen_run = client.batch.generate(GEN, (f"p{i}" for i in range(5)))
        assert gen_run.progress.total is None
        await gen_run
        assert gen_run.progress.total == 5
        await client.batch.generate(GEN, ["a", "b"], progress=True)  # a rich bar on the console
        monkeypatch.setitem(sys.modules, "rich.progress", None)
        with pytest.raises(ImportError, match="ollama-async\\[progress\\]"):
            client.batch.generate(GEN, ["a"], progress=True)


# -- cancellation ---------------------------------------------------------------------------------


@pytest.fixture
def slow_sim() -> Iterator[Simulator]:
    with Simulator(models=[ModelSpec(name=GEN, slots=4, tokens=10, token_ms=50)], seed=0) as server:
        yield server


def tasks_now() -> set[Any]:
    """The asyncio tasks running now (the test's and the test runner's); empty under trio."""
    try:
        return set(asyncio.all_tasks())
    except RuntimeError:  # trio: no asyncio loop (the iteration runner is a trio system task)
        return set()


def busy_connections(client: AsyncClient) -> int:
    """Busy connections of every pool the client sends through (httpx's, and the fast asyncio
    pool where the transport has one)."""
    own = getattr(client._transport, "active_connections", None)
    return active_connections(client) + (own() if callable(own) else 0)


async def assert_all_gone(client: AsyncClient, sim: Simulator, before: set[Any]) -> None:
    assert busy_connections(client) == 0
    left = tasks_now() - before
    assert not left, [repr(t.get_coro()) for t in left]
    assert await wait_for(lambda: sim.stats(GEN).disconnects >= 1 and sim.stats(GEN).in_flight == 0)


async def in_flight_at_server(sim: Simulator, done: int) -> None:
    """Wait until the server runs requests started after the ``done`` finished ones (not their
    siblings, about to finish too), so that cancelling is surely mid-request."""
    assert await wait_for(lambda: sim.stats(GEN).requests >= done + 4 and sim.stats(GEN).in_flight > 0)


@pytest.mark.anyio
async def test_cancelling_await_mid_batch_frees_everything(slow_sim: Simulator) -> None:
    before = tasks_now()
    async with AsyncClient(slow_sim.url, concurrency=4) as client:
        run = client.batch.generate(GEN, (f"p{i}" for i in range(10_000)))

        async def stop_mid_batch(scope: anyio.CancelScope) -> None:
            assert await wait_for(lambda: run.progress.done >= 2)
            await in_flight_at_server(slow_sim, run.progress.done)
            scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_mid_batch, tg.cancel_scope)
            await run
        assert tg.cancel_scope.cancelled_caught and 2 <= run.progress.done < 10_000
        await assert_all_gone(client, slow_sim, before)
        assert client.limits.stats()["gen:latest"].in_flight == 0


@pytest.mark.anyio
async def test_cancelling_iteration_mid_batch_frees_everything(slow_sim: Simulator) -> None:
    before = tasks_now()
    async with AsyncClient(slow_sim.url, concurrency=4) as client:
        got = 0
        with anyio.CancelScope() as scope:
            async for _ in client.batch.generate(GEN, (f"p{i}" for i in range(10_000))):
                got += 1
                if got == 2:
                    await in_flight_at_server(slow_sim, got)
                    scope.deadline = anyio.current_time() + 0.01  # fires while waiting for an item
        assert scope.cancelled_caught and got >= 2
        await assert_all_gone(client, slow_sim, before)


@pytest.mark.anyio
async def test_break_and_aclose_free_everything(slow_sim: Simulator) -> None:
    before = tasks_now()
    async with AsyncClient(slow_sim.url, concurrency=4) as client:
        run = client.batch.generate(GEN, (f"p{i}" for i in range(10_000)))
        iterator = run.__aiter__()
        async for item in iterator:
            if item.index >= 1:
                await in_flight_at_server(slow_sim, 2)
                break
        await iterator.aclose()
        await assert_all_gone(client, slow_sim, before)

        slow_sim.reset_stats()
        async for item in client.batch.generate(GEN, (f"p{i}" for i in range(10_000))).ordered():
            if item.index >= 1:
                await in_flight_at_server(slow_sim, 2)
                break  # no aclose: dropping the iterator cancels the run
        assert await wait_for(lambda: busy_connections(client) == 0 and not tasks_now() - before)
        assert await wait_for(lambda: slow_sim.stats(GEN).disconnects >= 1)
        with pytest.raises(RuntimeError):
            await run  # a run is consumed once


@pytest.mark.timeout(30)
def test_ctrl_c_in_a_script_stops_every_request(slow_sim: Simulator) -> None:
    script = textwrap.dedent(f"""
        import asyncio, sys
        from ollama_async import AsyncClient

        async def main():
            async with AsyncClient({slow_sim.url!r}, concurrency=4) as client:
                async for item in client.batch.generate("{GEN}", (f"p{{i}}" for i in range(10_000))):
                    print("item", flush=True)

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(130)
    """)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    for _ in range(3):
        assert proc.stdout.readline().strip() == "item"
    assert poll(lambda: slow_sim.stats(GEN).requests >= 3 + 4 and slow_sim.stats(GEN).in_flight > 0)
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=20)[0]
    assert proc.returncode == 130 and rest.rstrip().endswith("interrupted")
    assert poll(lambda: slow_sim.stats(GEN).in_flight == 0 and slow_sim.stats(GEN).disconnects >= 1)


# -- adaptive over loopback ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_adaptive_batch_stays_near_the_slot_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_NUM_PARALLEL", raising=False)
    limits: list[int] = []
    # 25 ms per request: long enough that a loaded machine's round trips stay small beside it
    # (a slot idle during a long round trip would rightly get one request pipelined).
    with Simulator(models=[ModelSpec(name=GEN, slots=4, tokens=1, token_ms=25)], seed=0) as sim:
        async with AsyncClient(sim.url, concurrency="auto", max_concurrency=16) as client:
            limiter = client.limits.for_model(GEN)
            run = client.batch.generate(GEN, (f"p{i}" for i in range(300)),
                                        progress=lambda p: limits.append(limiter.limit))
            results = await run
            stats = client.limits.stats()["gen:latest"]
        assert sim.stats(GEN).max_in_flight == 4
    assert all(not isinstance(r, BaseException) for r in results) and len(results) == 300
    assert stats.mode == "adaptive" and stats.max_in_flight <= 16
    summary = [(k, len(list(g))) for k, g in itertools.groupby(limits)]
    assert 3 <= limits[-1] <= 4 + 2, summary  # slots + a small overshoot (one pipelined, a probe)
    assert sum(limits[150:]) / 150 <= 4 + 2, summary


@pytest.mark.anyio
async def test_run_level_errors_propagate_unwrapped(bsim: Simulator) -> None:
    def broken_input() -> Iterator[str]:
        yield from ("a", "b", "c")
        raise ValueError("bad input file")

    async with AsyncClient(bsim.url, concurrency=4) as client:
        with pytest.raises(ValueError, match="bad input file"):
            await client.batch.generate(GEN, broken_input())
        with pytest.raises(ValueError, match="bad input file"):
            async for _ in client.batch.generate(GEN, broken_input()):
                pass
    from ollama_async import ClientClosedError

    with pytest.raises(ClientClosedError):  # about the run, not an item: stops the batch
        await client.batch.generate(GEN, ["a", "b"])
