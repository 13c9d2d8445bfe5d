"""Per-request metrics, hooks and ``client.stats()`` over loopback against the simulator.

Runs under asyncio and trio (the hook path runs in the caller's task on either).
"""

from __future__ import annotations

import json

import anyio
import pytest

import ollama_async as oa
from ollama_async.testing import Fault, Simulator

from .conftest import EMB, GEN, SLOW, stop_early_then_break

pytestmark = pytest.mark.anyio



@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)




async def test_non_stream_reply_carries_its_metrics(sim: Simulator) -> None:
    async with oa.AsyncClient(sim.url) as client:
        r = await client.generate(SLOW, "why is the sky blue?")
    m = r.metrics
    assert isinstance(m, oa.RequestMetrics)
    assert (m.operation, m.model, m.method, m.path, m.stream) == ("generate", SLOW, "POST", "/api/generate", False)
    assert m.host == sim.url.split("://")[1]
    assert m.status == 200 and m.error is None and m.ok and m.retries == 0
    # the server's own times, in seconds, read from the reply's nanoseconds
    assert m.server_time == pytest.approx(r.total_duration / 1e9)
    assert m.load_time == pytest.approx(r.load_duration / 1e9)
    assert m.prompt_eval_time == pytest.approx(r.prompt_eval_duration / 1e9)
    assert m.eval_time == pytest.approx(r.eval_duration / 1e9)
    assert m.queue_time == pytest.approx(r.queue_duration / 1e9)
    assert m.input_tokens == r.prompt_eval_count and m.output_tokens == r.eval_count == 5
    assert m.tokens_per_second == pytest.approx(r.tokens_per_second)
    assert m.done_reason == "stop" and m.response_model == r.model
    # client side: the whole call covers the server's work; headers come with the full reply
    assert m.duration is not None and m.time_to_first_byte is not None
    assert m.server_time is not None and m.duration >= m.server_time
    assert 0 < m.time_to_first_byte <= m.duration
    assert m.time_to_first_token is None  # not observable without a stream
    assert m.started_at > 1e9


async def test_metrics_are_not_part_of_the_model(sim: Simulator) -> None:
    async with oa.AsyncClient(sim.url) as client:
        with_metrics = await client.chat(GEN, [{"role": "user", "content": "hi"}])
    async with oa.AsyncClient(sim.url, metrics=False) as client:
        without = await client.chat(GEN, [{"role": "user", "content": "hi"}])
    assert with_metrics.metrics is not None and without.metrics is None
    dumped = with_metrics.model_dump()
    assert "metrics" not in dumped and "metrics" not in json.loads(with_metrics.model_dump_json())
    assert set(dumped) == set(without.model_dump())
    assert "metrics" not in with_metrics
    with pytest.raises(KeyError):
        with_metrics["metrics"]
    assert with_metrics["message"]["content"] == with_metrics.message.content
    assert oa.ChatResponse.model_validate_json(with_metrics.model_dump_json()).metrics is None


async def test_stream_metrics_complete_with_the_final_part(sim: Simulator) -> None:
    async with oa.AsyncClient(sim.url) as client:
        stream = await client.generate(SLOW, "stream me", stream=True)
        assert stream.metrics is None  # nothing sent yet
        parts = [p async for p in stream]
    final = parts[-1]
    assert all(p.metrics is None for p in parts[:-1])
    m = final.metrics
    assert m is not None and m is stream.metrics
    assert m.stream and m.parts == len(parts) == 6 and not m.stopped_early
    assert m.duration is not None and m.time_to_first_token is not None and m.time_to_first_byte is not None
    assert 0 < m.time_to_first_byte <= m.time_to_first_token < m.duration
    assert m.output_tokens == final.eval_count == 5
    assert m.queue_time == pytest.approx(final.queue_duration / 1e9)
    assert m.tokens_per_second == pytest.approx(final.tokens_per_second)


async def test_client_slot_wait_and_server_queue(sim: Simulator) -> None:
    """concurrency=1: the second request waits in the client; concurrency=2 on one server slot:
    it waits in the server instead, and the reply's durations say so."""
    async with oa.AsyncClient(sim.url, concurrency=1) as client:
        replies: list[oa.GenerateResponse] = []

        async def one() -> None:
            replies.append(await client.generate(SLOW, "x"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            tg.start_soon(one)
    waits = sorted(r.metrics.slot_wait for r in replies if r.metrics)
    assert waits[0] < 0.01 and waits[1] > 0.015  # at least the first one's server work (load + 5 tokens)

    async with oa.AsyncClient(sim.url, concurrency=2) as client:
        replies = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            tg.start_soon(one)
    queues = sorted(r.metrics.queue_time or 0.0 for r in replies if r.metrics)
    assert queues[1] > 0.015 and all((r.metrics.slot_wait if r.metrics else 1) < 0.01 for r in replies)


async def test_retry_after_a_scripted_503_is_counted(sim: Simulator) -> None:
    seen: list[oa.RequestMetrics] = []
    async with oa.AsyncClient(sim.url, on_request=seen.append) as client:
        sim.inject(Fault.busy(1, retry_after=0.02))
        r = await client.generate(GEN, "hello")
        stats = client.stats()
    m = r.metrics
    assert m is not None and seen == [m]
    assert m.retries == 1 and m.retry_reasons == ["HTTP 503"] and m.backoff == pytest.approx(0.02)
    assert m.status == 200 and m.duration is not None and m.duration >= 0.02
    assert stats[GEN].retries == 1 and stats[GEN].backoff_total == pytest.approx(0.02)


async def test_errors_reach_hooks_with_status_and_type(sim: Simulator) -> None:
    seen: list[oa.RequestMetrics] = []
    async with oa.AsyncClient(sim.url, max_retries=0, on_request=[seen.append]) as client:
        with pytest.raises(oa.ModelNotFoundError):
            await client.generate("missing", "x")
        sim.inject(Fault.status(500))
        with pytest.raises(oa.ResponseError):
            await client.chat(GEN, [{"role": "user", "content": "x"}])
        stats = client.stats()
    assert [(m.operation, m.status, m.error) for m in seen] == [
        ("generate", 404, "ModelNotFoundError"),
        ("chat", 500, "ResponseError"),
    ]
    assert all(m.duration is not None and m.server_time is None for m in seen)
    assert stats["missing"].errors == 1 and stats["missing"].errors_by_type == {"ModelNotFoundError": 1}
    assert stats.total.errors == 2


async def test_stream_stopped_early_and_broken(sim: Simulator) -> None:
    seen: list[oa.RequestMetrics] = []
    async with oa.AsyncClient(sim.url, on_request=seen.append) as client:
        stream = await stop_early_then_break(client, sim)
        stats = client.stats()
    early, broken = seen
    assert early.stopped_early and early.error is None and early.parts == 1 and early.duration is not None
    assert early is stream.metrics
    assert broken.error == "StreamError" and broken.parts == 2 and not broken.stopped_early
    assert stats[GEN].stopped_early == 1 and stats[GEN].errors == 1 and stats[GEN].requests == 2


async def test_stats_per_model_and_host(sim: Simulator) -> None:
    async with oa.AsyncClient(sim.url) as client:
        for _ in range(3):
            await client.generate(GEN, "a")
        async for _ in await client.chat(GEN, [{"role": "user", "content": "b"}], stream=True):
            pass
        await client.embed(EMB, ["a", "b", "c"])
        await client.list()
        stats = client.stats(reset=True)
        assert client.stats().total.requests == 0  # reset after the snapshot
    host = sim.url.split("://")[1]
    gen = stats["gen"]
    assert stats["gen:latest"] is gen and "gen" in stats and "nope" not in stats
    assert gen.requests == 4 and gen.errors == 0 and gen.output_tokens == 4 * 6
    assert gen.server_replies == 4 and gen.first_token_count == 1
    assert gen.tokens_per_second == pytest.approx(gen.output_tokens / gen.eval_total)
    assert gen.duration_mean == pytest.approx(gen.duration_total / 4) and gen.duration_max >= gen.duration_mean
    assert gen.queue_mean is not None and gen.time_to_first_token_mean is not None
    emb = stats[EMB]
    assert emb.requests == 1 and emb.input_tokens == 3 and emb.output_tokens == 0 and emb.tokens_per_second is None
    # the embedding-only probe (/api/show) and list() have no model
    assert stats.by_model[""].requests == 2
    assert set(stats.by_host) == {host} and stats.by_host[host].requests == stats.total.requests == 7
    assert stats.by_host_model[(host, "gen:latest")] == gen


async def test_add_and_remove_hook_and_a_failing_hook(sim: Simulator) -> None:
    calls: list[str] = []

    def bad(m: oa.RequestMetrics) -> None:
        raise RuntimeError("hook bug")

    def good(m: oa.RequestMetrics) -> None:
        calls.append(m.operation)

    async with oa.AsyncClient(sim.url, metrics=False) as client:
        client.add_hook(bad)
        client.add_hook(good)
        r = await client.generate(GEN, "x")  # the failing hook does not fail the request
        assert r.response and calls == ["generate"]
        assert r.metrics is not None  # a hook asked for them
        client.remove_hook(good)
        client.remove_hook(good)  # not there any more: ignored
        await client.version()
        assert calls == ["generate"]
        assert client.stats().total.requests == 0  # metrics=False: no aggregates
        with pytest.raises(oa.RequestError, match="callable"):
            client.add_hook("nope")  # type: ignore[arg-type]
    with pytest.raises(oa.RequestError) as info:
        oa.AsyncClient(sim.url, on_request=[good, 3])  # type: ignore[list-item]
    assert info.value.field == "on_request[1]"
    with pytest.raises(oa.RequestError, match="True or False"):
        oa.AsyncClient(sim.url, metrics="yes")  # type: ignore[arg-type]


async def test_metrics_off_measures_nothing(sim: Simulator) -> None:
    async with oa.AsyncClient(sim.url, metrics=False) as client:
        r = await client.generate(GEN, "x")
        parts = [p async for p in await client.generate(GEN, "x", stream=True)]
        assert r.metrics is None and parts[-1].metrics is None
        assert client.stats().total.requests == 0


async def test_with_options_shares_hooks_and_stats(sim: Simulator) -> None:
    seen: list[oa.RequestMetrics] = []
    async with oa.AsyncClient(sim.url, on_request=seen.append) as client:
        view = client.with_options(max_retries=0)
        await view.generate(GEN, "x")
        assert len(seen) == 1 and client.stats()[GEN].requests == 1


async def test_batch_requests_reach_hooks_and_stats(sim: Simulator) -> None:
    seen: list[oa.RequestMetrics] = []
    async with oa.AsyncClient(sim.url, on_request=seen.append) as client:
        results = await client.batch.generate(GEN, [f"q{i}" for i in range(10)])
        vectors = await client.batch.embed(EMB, [f"t{i}" for i in range(10)], batch_size=4)
        stats = client.stats()
    assert len(results) == 10 and len(vectors) == 10
    assert sum(1 for m in seen if m.operation == "generate") == 10 == stats[GEN].requests
    assert sum(1 for m in seen if m.operation == "embed") == 3 == stats[EMB].requests
    assert stats[EMB].input_tokens == 10 and stats[EMB].server_replies == 3 and all(m.ok for m in seen)
    assert all(m.queue_time is None for m in seen if m.operation == "embed")  # no breakdown to derive it
