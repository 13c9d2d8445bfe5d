"""Several servers as one client, over loopback against a simulated fleet (asyncio and trio).

One test per routing/health/failover rule of ``_routing.py``; the fleet's members are real
simulators on their own ports, stopped and restarted as a dying server would be.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

import ollama_async as oa
from ollama_async import _hosts, _routing
from ollama_async.testing import Fault, Fleet, ModelSpec
from ollama_async.testing._prompt_cache import PromptCaches

from .test_cli import cli

pytestmark = pytest.mark.anyio

M = "llama3.2"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ejections last 50 ms instead of a second, so re-admission is quick to see."""
    monkeypatch.setattr(_hosts, "BACKOFF_BASE", 0.05)


def spec(slots: int = 2, token_ms: float = 1.0, tokens: int = 4, name: str = M) -> ModelSpec:
    return ModelSpec(name, slots=slots, token_ms=token_ms, tokens=tokens)


@pytest.fixture
def pair() -> Iterator[Fleet]:
    """Two hosts: a 1-slot one and a 4-slot one, both with the same model."""
    with Fleet([[spec(1, token_ms=25)], [spec(4, token_ms=25)]]) as fleet:
        yield fleet


def requests(fleet: Fleet, index: int, model: str = M) -> int:
    return fleet[index].stats(model).requests


def state(client: oa.AsyncClient, url: str) -> oa.HostState:
    return next(h for h in client.hosts if h.url == url)


# -- routing ----------------------------------------------------------------------------------


async def test_requests_go_to_free_slots(pair: Fleet) -> None:
    hosts = [oa.Host(pair.urls[0], concurrency=1), oa.Host(pair.urls[1], concurrency=4)]
    async with oa.AsyncClient(host=hosts) as client, anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(client.generate, M, "go")
    a, b = pair[0].stats(M), pair[1].stats(M)
    assert (a.requests, b.requests) == (1, 4)
    assert (a.max_in_flight, b.max_in_flight) == (1, 4)
    assert a.queue_waits == 0 and b.queue_waits == 0  # nothing ever waited inside a server


async def test_slow_host_gets_proportionally_less() -> None:
    with Fleet([[spec(1, token_ms=2)], [spec(1, token_ms=20)]]) as fleet:
        async with oa.AsyncClient(host=fleet.urls, concurrency=1) as client:
            results = await client.batch.generate(M, ["p"] * 40)
        assert all(isinstance(r, oa.GenerateResponse) for r in results)
        fast, slow = requests(fleet, 0), requests(fleet, 1)
        assert fast + slow == 40
        assert fast > 3 * slow  # ~10x faster: by measured service time it gets most of the work


async def test_a_host_slowed_down_gets_less_work() -> None:
    with Fleet([[spec(1, token_ms=3)], [spec(1, token_ms=3)]]) as fleet:
        async with oa.AsyncClient(host=fleet.urls, concurrency=1) as client:
            await client.batch.generate(M, ["p"] * 10)
            await anyio.to_thread.run_sync(fleet.slow_down, 0, 8.0)
            before = [requests(fleet, 0), requests(fleet, 1)]
            await client.batch.generate(M, ["p"] * 40)
        slow, fast = requests(fleet, 0) - before[0], requests(fleet, 1) - before[1]
        assert slow + fast == 40 and fast > 2 * slow  # measured: host 0 now takes 8x as long


async def test_model_only_on_some_hosts_and_on_none() -> None:
    with Fleet([[spec(name="a")], [spec(name="a"), spec(name="b")]]) as fleet:
        async with oa.AsyncClient(host=fleet.urls) as client:
            for _ in range(3):
                await client.generate("b", "x")
            assert requests(fleet, 1, "b") == 3
            with pytest.raises(oa.ModelNotFoundError) as info:
                await client.generate("nowhere", "x")
        message = str(info.value)
        assert "nowhere" in message and fleet.urls[0] in message and fleet.urls[1] in message


async def test_stale_catalog_404_goes_to_a_host_that_has_the_model() -> None:
    with Fleet([[spec(2)], [spec(2)]]) as fleet:
        hosts: list[oa.Host | str] = [oa.Host(fleet.urls[0], weight=100.0), fleet.urls[1]]
        async with oa.AsyncClient(host=hosts) as client:
            await client.generate(M, "x")  # both catalogs list the model now
            fleet[0].remove_model(M)  # deleted behind the client's back
            reply = await client.generate(M, "still answered")
            assert reply.done and requests(fleet, 1) == 1
            assert state(client, fleet.urls[0]).models == ()
            assert state(client, fleet.urls[0]).state == "healthy"  # a 404 is no health failure


async def test_embed_batches_spread_over_hosts() -> None:
    emb = ModelSpec("nomic-embed-text", kind="embed", dim=8, embed_ms=2)
    with Fleet([[emb], [emb]]) as fleet:
        async with oa.AsyncClient(host=fleet.urls) as client:
            texts = [f"text {i}" for i in range(64)]
            result = await client.batch.embed("nomic-embed-text", texts, batch_size=4)
            assert not result.errors and len(result.vectors) == 64
            single = await client.embed("nomic-embed-text", texts[5])
            assert list(result.vectors[5]) == pytest.approx(single.embeddings[0])
            bounds = {h.url: h.limits["nomic-embed-text:latest"].limit for h in client.hosts}
        assert set(bounds.values()) == {2}  # each host found the model embed-only: its slot and one waiting
        assert fleet[0].stats("nomic-embed-text").requests > 0 and fleet[1].stats("nomic-embed-text").requests > 0


async def test_loaded_model_is_preferred() -> None:
    with Fleet([[spec(4)], [spec(4)]]) as fleet:
        async with oa.AsyncClient(fleet.urls[1]) as direct:
            await direct.generate(M, "warm up host 1")
        before = requests(fleet, 1)
        async with oa.AsyncClient(host=fleet.urls) as client:
            await client.generate(M, "x")
            assert state(client, fleet.urls[1]).loaded == (f"{M}:latest",)
        assert requests(fleet, 1) == before + 1 and requests(fleet, 0) == 0


async def test_affinity_keeps_a_conversation_on_its_host_and_moves_when_it_dies() -> None:
    with Fleet([[spec(4)], [spec(4)]]) as fleet:
        async with oa.AsyncClient(host=fleet.urls) as client:
            messages: list[dict[str, str]] = [{"role": "system", "content": "be brief"}]
            where: list[int] = []
            for turn in range(6):
                messages.append({"role": "user", "content": f"question {turn}"})
                counts = [requests(fleet, 0), requests(fleet, 1)]
                reply = await client.chat(M, messages)
                messages.append({"role": "assistant", "content": reply.message.content or ""})
                where.append(0 if requests(fleet, 0) > counts[0] else 1)
                await client.generate(M, "other traffic in between")  # moves the load around
            assert len(set(where)) == 1
            home = where[0]
            await anyio.to_thread.run_sync(fleet.stop, home)
            messages.append({"role": "user", "content": "still there?"})
            await client.chat(M, messages)  # the conversation moves to the live host
            keyed = client.with_options(affinity="user-7")
            first = [requests(fleet, 1 - home)]
            for _ in range(3):
                await keyed.generate(M, "pinned by key")
            assert requests(fleet, 1 - home) == first[0] + 3


def test_prompt_cache_reuses_the_longest_prefix_per_slot() -> None:
    caches = PromptCaches()
    turn1 = [{"role": "user", "content": "one two three"}]
    assert caches.use("m", 2, 1, turn1, "four five") == 0
    turn2 = [*turn1, {"role": "assistant", "content": "four five"}, {"role": "user", "content": "six"}]
    assert caches.use("m", 2, 1, turn2, "seven") == (3 + 4) + (2 + 4)  # both earlier messages cached
    other = [{"role": "user", "content": "unrelated"}]
    assert caches.use("m", 2, 1, other, "x") == 0
    assert caches.use("m", 2, 2, turn2, "seven") == 0  # a new load starts cold


# -- health -----------------------------------------------------------------------------------


async def test_ejection_and_readmission(fast_backoff: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ollama_async.hosts")
    with Fleet([[spec(2)], [spec(2)]]) as fleet:
        async with oa.AsyncClient(host=fleet.urls) as client:
            await client.generate(M, "x")
            await anyio.to_thread.run_sync(fleet.stop, 0)
            await client.generate(M, "host 0 is gone")
            assert state(client, fleet.urls[0]).state == "ejected"  # a refused connection ejects at once
            for _ in range(5):
                await client.generate(M, "host 0 is gone")  # none fails: they go to host 1
            down = state(client, fleet.urls[0])
            assert down.state == "ejected" and down.errors >= 1 and down.last_error
            await anyio.to_thread.run_sync(fleet.restart, 0)
            with anyio.fail_after(10):
                while state(client, fleet.urls[0]).state not in ("half-open", "healthy"):  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            results = await client.batch.generate(M, ["back"] * 20)
            assert all(isinstance(r, oa.GenerateResponse) for r in results)
            assert requests(fleet, 0) > 0  # it gets work again
            assert state(client, fleet.urls[0]).state == "healthy"
    # each change of the host's state is logged, in order, and names the host
    events = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "ollama_async.hosts"]
    assert events[0][0] == logging.WARNING and events[0][1].startswith(f"host {fleet.urls[0]} ejected (was healthy")
    assert (logging.INFO, f"host {fleet.urls[0]} answered its probe: re-admitted on trial (half-open)") in events
    assert events[-1] == (logging.INFO,
                          f"host {fleet.urls[0]} is healthy again: a request succeeded after its re-admission")


async def test_server_errors_eject_after_a_few_and_fail_over() -> None:
    with Fleet([[spec(2)], [spec(2)]]) as fleet:
        hosts: list[oa.Host | str] = [oa.Host(fleet.urls[0], weight=100.0), fleet.urls[1]]  # host 0 is always first choice
        async with oa.AsyncClient(host=hosts) as client:
            await client.generate(M, "x")
            fleet[0].inject(Fault.status(500), times=_hosts.EJECT_AFTER)
            for _ in range(_hosts.EJECT_AFTER):
                await client.generate(M, "fails over")
            assert state(client, fleet.urls[0]).state == "ejected"


# -- failover ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Fault.reset(), Fault.status(502), Fault.busy(1), Fault.status(500)],
                         ids=["reset", "502", "503", "500"])
async def test_non_streamed_request_fails_over(fault: Fault) -> None:
    with Fleet([[spec(2)], [spec(2)]]) as fleet:
        hosts: list[oa.Host | str] = [oa.Host(fleet.urls[0], weight=100.0), fleet.urls[1]]
        async with oa.AsyncClient(host=hosts, max_retries=1) as client:
            await client.generate(M, "x")
            before = requests(fleet, 1)
            fleet[0].inject(fault, times=2)  # twice: a reset kept-alive connection is retried once in place
            reply = await client.generate(M, "survives")
            assert reply.done
            assert requests(fleet, 1) == before + 1


async def test_stream_fails_over_before_its_first_part_only() -> None:
    with Fleet([[spec(2, tokens=6)], [spec(2, tokens=6)]]) as fleet:
        hosts: list[oa.Host | str] = [oa.Host(fleet.urls[0], weight=100.0), fleet.urls[1]]
        async with oa.AsyncClient(host=hosts) as client:
            await client.generate(M, "x")
            fleet[0].inject(Fault.reset(after=2))
            with pytest.raises(oa.IncompleteStreamError) as info:
                async for _ in await client.generate(M, "stream", stream=True):
                    pass
            assert requests(fleet, 1) == 0  # a started stream is never re-sent elsewhere
            assert info.value.url == fleet.urls[0] + "/api/generate"  # the host it broke on
            fleet[0].inject(Fault.status(503))
            parts = [p async for p in await client.generate(M, "stream", stream=True)]
            assert parts[-1].done and requests(fleet, 1) == 1  # not started yet: it went to host 1


async def test_batch_loses_and_duplicates_nothing_when_a_host_dies_and_returns(fast_backoff: None) -> None:
    with Fleet([[spec(2, token_ms=3)], [spec(2, token_ms=3)], [spec(4, token_ms=3)]]) as fleet:
        async with oa.AsyncClient(host=[oa.Host(u, concurrency=s) for u, s in zip(fleet.urls, (2, 2, 4), strict=True)]) as client:
            seen: list[int] = []
            async with anyio.create_task_group() as tg:

                async def chaos() -> None:
                    while len(seen) < 60:  # noqa: ASYNC110 - polls the batch's progress
                        await anyio.sleep(0.005)
                    await anyio.to_thread.run_sync(fleet.stop, 2)
                    while len(seen) < 180:  # noqa: ASYNC110
                        await anyio.sleep(0.005)
                    await anyio.to_thread.run_sync(fleet.restart, 2)

                tg.start_soon(chaos)
                async for item in client.batch.generate(M, [f"p{i}" for i in range(300)]):
                    assert item.error is None, item.error
                    seen.append(item.index)
            assert sorted(seen) == list(range(300))


# -- management, hosts --------------------------------------------------------------------------


async def test_management_fans_out_and_lists_merge() -> None:
    with Fleet([[spec(name="a")], [spec(name="b")]]) as fleet:
        async with oa.AsyncClient(host=fleet.urls) as client:
            tags = await client.list()
            assert {(m.model, m.host) for m in tags.models} == {
                ("a:latest", fleet.urls[0]), ("b:latest", fleet.urls[1])
            }
            assert (await client.pull("fresh")).status == "success"
            with anyio.fail_after(5):  # the simulator answers "success" a moment before it adds the model
                while not all("fresh:latest" in sim.models() for sim in fleet.simulators):  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            show = await client.show("b")  # goes to the host that has it
            assert show.details is not None
            results = await client.each_host(lambda c: c.delete("a"))
            assert isinstance(results[fleet.urls[0]], oa.StatusResponse)
            assert isinstance(results[fleet.urls[1]], oa.ResponseError)
            pinned = client.on_host(fleet.urls[1])
            parts = [p.status async for p in await pinned.pull("only-here", stream=True)]
            assert parts[-1] == "success" and "only-here:latest" not in fleet[0].models()
            with pytest.raises(oa.RequestError, match="on_host"):
                async for _ in await client.pull("x", stream=True):
                    pass
            await client.generate("b", "load")
            ps = await client.ps()
            assert [(m.model, m.host) for m in ps.models] == [("b:latest", fleet.urls[1])]


async def test_hosts_can_be_added_and_removed_while_running() -> None:
    with Fleet([[spec(2)], [spec(2)]]) as fleet:
        # Host 0 bound at its slots: in adaptive mode (8 to start with) it may keep up with a
        # batch of 20 on its own when the batch's pace leaves it under 8 in flight, and a host
        # with a free slot and the model loaded goes before one that must load it.
        async with oa.AsyncClient(host=[oa.Host(fleet.urls[0], concurrency=2)]) as client:
            await client.batch.generate(M, ["x"] * 6)
            assert requests(fleet, 1) == 0
            client.add_host(oa.Host(fleet.urls[1], concurrency=2))
            await client.batch.generate(M, ["x"] * 20)
            assert requests(fleet, 1) > 0
            with pytest.raises(oa.RequestError, match="already"):
                client.add_host(fleet.urls[1])
            before = requests(fleet, 0)
            await client.remove_host(fleet.urls[0])
            await client.batch.generate(M, ["x"] * 6)
            assert requests(fleet, 0) == before
            assert [h.url for h in client.hosts] == [fleet.urls[1]]
            assert [h.url for h in client.with_options(max_retries=0).hosts] == [fleet.urls[1]]
            with pytest.raises(oa.RequestError, match="last host"):
                await client.remove_host(fleet.urls[1])


def test_bad_hosts_are_typed_errors() -> None:
    with pytest.raises(oa.RequestError, match=r"host\[1\]"):
        oa.AsyncClient(host=["http://a:1", 5])  # type: ignore[list-item]
    with pytest.raises(oa.RequestError, match="at least one"):
        oa.AsyncClient(host=[])
    with pytest.raises(oa.RequestError, match=r"Host\.weight"):
        oa.Host("http://a:1", weight=0)
    with pytest.raises(oa.RequestError, match="concurrency"):
        oa.Host("http://a:1", concurrency=0)
    with pytest.raises(oa.RequestError, match="already"):
        oa.AsyncClient(host=["a:1", "http://a:1"])


# -- command line -------------------------------------------------------------------------------


def test_cli_takes_several_hosts_and_bench_reports_per_host(tmp_path: Path) -> None:
    with Fleet([[spec(2, token_ms=2)], [spec(2, token_ms=2)]]) as fleet:
        prompts = tmp_path / "prompts.txt"
        prompts.write_text("".join(f"prompt {i}\n" for i in range(30)))
        out = tmp_path / "out.jsonl"
        hosts = [arg for url in fleet.urls for arg in ("--host", url)]
        job = cli("generate", str(prompts), "-m", M, "-o", str(out), "--quiet", *hosts)
        assert job.returncode == 0, job.stderr
        assert len(out.read_text().splitlines()) == 30
        assert requests(fleet, 0) > 0 and requests(fleet, 1) > 0  # both served part of the job
        bench = cli("bench", "-m", M, "--levels", "1,2", "--requests", "8", "--all-levels",
                    "--plot", str(tmp_path / "bench.png"), *hosts)
        assert bench.returncode == 0, bench.stderr
        for url in fleet.urls:
            assert re.search(rf"{re.escape(url)}: healthy, [1-9]\d* requests", bench.stderr), bench.stderr


def test_host_states_read_from_synchronous_code() -> None:
    client = oa.AsyncClient(host=["http://a:1", oa.Host("http://b:2", weight=2.0)])
    router = client._transport
    assert isinstance(router, _routing.Router)
    router.members[0].health.eject()
    router.members[0].health.until = 0.0  # back-off over: a probe is due, but there is no loop to run it
    states = client.hosts
    assert [(h.url, h.state, h.weight) for h in states] == [
        ("http://a:1", "ejected", 1.0), ("http://b:2", "healthy", 2.0)
    ]


async def test_a_stream_teaches_the_router_its_servers_time_not_its_time_to_headers() -> None:
    with Fleet([[spec(1, token_ms=30, tokens=4)], [spec(1, token_ms=30, tokens=4)]]) as fleet:
        async with oa.AsyncClient(host=fleet.urls) as client:
            for _ in range(2):
                async for _part in await client.generate(M, "hello", stream=True):
                    await anyio.sleep(0.15)  # a slow reader: its wall time is no server time
            served = {h.url: h.service_s.get(f"{M}:latest") for h in client.hosts}
    learnt = [s for s in served.values() if s is not None]
    assert learnt, served
    # 4 tokens x 30 ms on the server; the time to headers was a few ms, the reader's pace ~0.75 s
    assert all(0.08 < s < 0.4 for s in learnt), served
