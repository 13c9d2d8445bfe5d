"""The slot table behind the Ray broker, on its own (no Ray): bounds, routing, failover, leases."""

from __future__ import annotations

import asyncio

import pytest

from ollama_async import RequestError
from ollama_async._limits import AdaptiveController
from ollama_async.ray._config import JobSlots, normalize_hosts
from ollama_async.ray._slots import DOWN_MIN, Report, SlotTable, split_bounds

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_grants_never_exceed_slots_plus_margin_and_go_to_the_freest_host() -> None:
    table = SlotTable(["a", "b"], [2, 1], margin=1)
    got = await table.acquire("s", want=10)
    hosts = [h for _, h in got]
    assert sorted(hosts) == [0, 0, 0, 1, 1]  # 2 + 1 and 1 + 1: everything free, nothing more
    waiter = asyncio.ensure_future(table.acquire("s", want=1))
    await asyncio.sleep(0.01)
    assert not waiter.done()  # full: waits
    table.release("s", [Report(got[-1][0])])
    ((_, host),) = await asyncio.wait_for(waiter, 1)
    assert host == got[-1][1]
    assert [s.max_in_use for s in table.stats()] == [3, 2]


async def test_waiters_are_served_in_turn() -> None:
    table = SlotTable(["a"], [1], margin=0)
    first = await table.acquire("s1", 1)
    w2 = asyncio.ensure_future(table.acquire("s2", 5))
    w3 = asyncio.ensure_future(table.acquire("s3", 5))
    await asyncio.sleep(0.01)
    table.release("s1", [Report(first[0][0])])
    done, _ = await asyncio.wait([w2, w3], timeout=1, return_when=asyncio.FIRST_COMPLETED)
    assert done == {w2} and len(w2.result()) == 1  # the first waiter, and only what is free
    table.release("s2", [Report(w2.result()[0][0])])
    assert len(await asyncio.wait_for(w3, 1)) == 1


async def test_a_down_host_is_skipped_then_probed_one_request_at_a_time() -> None:
    clock = Clock()
    table = SlotTable(["a", "b"], [2, 2], margin=0, clock=clock)
    grants = await table.acquire("s", 4)
    on_a = [g for g, h in grants if h == 0]
    table.release("s", [Report(on_a[0], "down"), Report(on_a[1], "down")])  # one outage: one cool-down
    assert table.stats()[0].downs == 1 and table.stats()[0].down
    table.release("s", [Report(g) for g, h in grants if h == 1])
    assert {h for _, h in await table.acquire("s", 4)} == {1}  # only b while a cools down
    clock.now += DOWN_MIN + 0.01
    probe = await table.acquire("s", 4)
    assert [h for _, h in probe] == [0]  # a gets one probe, not its two slots
    table.release("s", [Report(probe[0][0], "ok", wall=0.01)])
    assert [h for _, h in await table.acquire("s", 4)] == [0, 0]  # back to its full bound
    assert not table.stats()[0].down


async def test_when_every_host_is_down_acquire_waits_for_the_probe() -> None:
    table = SlotTable(["a"], [1], margin=0)
    ((g, _),) = await table.acquire("s", 1)
    table.release("s", [Report(g, "down")])
    started = asyncio.get_running_loop().time()
    ((_, host),) = await asyncio.wait_for(table.acquire("s", 1), 5)
    assert host == 0 and asyncio.get_running_loop().time() - started >= DOWN_MIN * 0.9


async def test_a_restarted_owner_frees_the_old_sessions_grants_at_once() -> None:
    table = SlotTable(["a"], [2], margin=0)
    await table.acquire("old", 2, owner="actor-1")
    blocked = asyncio.ensure_future(table.acquire("other", 1, owner="actor-2"))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    got = await asyncio.wait_for(table.acquire("new", 1, owner="actor-1"), 1)  # same actor, new incarnation
    assert len(got) == 1 and len(await asyncio.wait_for(blocked, 1)) == 1
    assert table.stats()[0].in_use == 2


async def test_a_silent_session_is_reaped_and_its_late_release_ignored() -> None:
    clock = Clock()
    table = SlotTable(["a"], [1], margin=0, ttl=5, clock=clock)
    ((g, _),) = await table.acquire("dead", 1)
    clock.now += 6
    table.touch("alive")
    assert table.reap() == ["dead"]
    assert table.stats()[0].in_use == 0
    await table.acquire("alive", 1)
    table.release("dead", [Report(g)])  # too late: must not free the live grant
    assert table.stats()[0].in_use == 1


async def test_a_cancelled_acquire_gives_its_grants_back() -> None:
    table = SlotTable(["a"], [1], margin=0)
    ((g, _),) = await table.acquire("s", 1)
    waiter = asyncio.ensure_future(table.acquire("s", 1))
    await asyncio.sleep(0.01)
    waiter.cancel()
    table.release("s", [Report(g)])
    assert table.stats()[0].in_use == 0


async def test_adaptive_hosts_grow_from_the_reported_samples() -> None:
    table = SlotTable(["a"], [None], max_concurrency=64)
    start = table.stats()[0].bound
    assert start == AdaptiveController().limit and table.stats()[0].mode == "adaptive"  # the controller's start
    for _ in range(12):  # windows of full bounds, no queueing: slow start doubles after the first ones
        bound = table.stats()[0].bound
        grants = await table.acquire("s", 2 * bound)  # more rows waiting than the bound: every grant finds it full
        table.release("s", [Report(g, "ok", wall=0.01, queue=0.0) for g, _ in grants])
    assert table.stats()[0].bound > start  # no queueing reported: it found room for more
    grants = await table.acquire("s", 1)
    before = table.stats()[0].bound
    table.release("s", [Report(grants[0][0], "busy")])
    assert table.stats()[0].bound < before  # a 503 halves it


def test_split_shares_and_settings_are_checked() -> None:
    assert split_bounds([4, 1, None], 1, 2) == ([2, 1, None], [])
    shares, warnings = split_bounds([1], 0, 3)
    assert shares == [1] and "less than one each" in warnings[0]
    assert normalize_hosts("a:1, b:2") == ["http://a:1", "http://b:2"]
    assert normalize_hosts(["a:1"]) == ["http://a:1"]
    with pytest.raises(RequestError, match="twice") as info:
        normalize_hosts(["a:1", "http://a:1"])
    assert info.value.field == "hosts"
    with pytest.raises(RequestError) as info:
        JobSlots.make("a", "m", share="split")
    assert info.value.field == "actors"
    with pytest.raises(RequestError) as info:
        JobSlots.make(["a", "b"], "m", slots={"a": 2})
    assert info.value.field == "slots"
    one = JobSlots.make("a", "m", slots=2)
    assert one.broker_name("j") == JobSlots.make(["a"], "m", slots=2).broker_name("j") != one.broker_name("k")


def test_batches_in_each_format_come_back_as_typed_tables() -> None:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from ollama_async.ray._columns import column, ints, strings, vector_column, with_columns

    new = {"v": vector_column(np.ones((2, 3), np.float32)), "n": ints([1, None]), "e": strings([None, None])}
    for batch in ({"t": np.array(["a", "b"], dtype=object)}, pd.DataFrame({"t": ["a", "b"]}),
                  pa.table({"t": ["a", "b"]})):
        assert column(batch, "t") == ["a", "b"]
        table = with_columns(batch, new)
        assert table.column_names == ["t", "v", "n", "e"]
        assert str(table.schema.field("v").type) == "fixed_size_list<item: float>[3]"
        assert table.schema.field("n").type == pa.int64() and table.schema.field("e").type == pa.string()
    nested = {"m": np.array([np.array([{"role": "user", "content": "hi"}], dtype=object)], dtype=object)}
    assert column(nested, "m") == [[{"role": "user", "content": "hi"}]]  # plain lists and dicts for the client
    with pytest.raises(RequestError, match="no column 'x'"):
        column(nested, "x")


async def test_a_renewed_grant_stays_in_use_and_never_lets_a_waiter_past_the_bound() -> None:
    table = SlotTable(["a"], [1], margin=0)
    ((g, host),) = await table.acquire("s1", 1)
    assert table.renewable(host)
    other = asyncio.ensure_future(table.acquire("s2", 1))
    await asyncio.sleep(0.01)
    table.release("s1", [Report(g, "ok", 0.1, None, renew=True)])  # s1 sent its next request on it
    await asyncio.sleep(0.01)
    assert not other.done()  # the slot never became free
    (stats,) = table.stats()
    assert (stats.in_use, stats.max_in_use, stats.granted) == (1, 1, 2)
    table.release("s1", [Report(g, "ok")])  # the renewed request ends: now the waiter gets it
    ((_, host2),) = await asyncio.wait_for(other, 1)
    assert host2 == 0 and table.stats()[0].in_use == 1
    table.drop("s2")
    assert table.stats()[0].in_use == 0
    ((g3, _),) = await table.acquire("s3", 1)
    table.drop("s3")  # a renewal reported after its session is gone frees nothing twice, takes nothing
    table.release("s3", [Report(g3, "ok", renew=True)])
    assert table.stats()[0].in_use == 0


async def test_adaptive_hosts_are_not_renewable() -> None:
    table = SlotTable(["a", "b"], [None, 2])
    assert (table.renewable(0), table.renewable(1)) == (False, True)


class _Remote:
    def __init__(self, fn: object) -> None:
        self.remote = fn


class _FakeBroker:
    """The broker's remote methods, in this loop: acquire grants from a table, record releases."""

    def __init__(self, table: SlotTable) -> None:
        self.table = table
        self.released: list[list[tuple[int, str, float | None, float | None, bool]]] = []

        async def acquire(session: str, owner: str, want: int) -> list[tuple[int, int, bool]]:
            return [(g, h, table.renewable(h)) for g, h in await table.acquire(session, want, owner)]

        async def release(session: str, reports: list[tuple[int, str, float | None, float | None, bool]]) -> list[int]:
            self.released.append(reports)
            return table.release(session, [Report(*r) for r in reports])  # type: ignore[arg-type]

        self.acquire = _Remote(acquire)
        # as Ray's .remote(): the call runs whether or not its result is awaited
        self.release = _Remote(lambda *a: asyncio.ensure_future(release(*a)))
        self.heartbeat = _Remote(lambda *a: None)

        async def leave(session: str) -> None:
            table.drop(session)

        self.leave = _Remote(leave)


@pytest.mark.parametrize("bound", [1, None])
async def test_an_actor_passes_a_good_fixed_grant_to_its_next_row_and_tells_the_broker(bound: int | None) -> None:
    from ollama_async.ray._grants import BrokerSlots

    table = SlotTable(["a"], [bound], max_concurrency=1)
    broker = _FakeBroker(table)
    slots = BrokerSlots(broker)
    first = await slots.acquire()
    nxt = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0.01)
    assert not nxt.done()
    slots.release(first, "ok", 0.05)
    await asyncio.sleep(0.01)
    second = await asyncio.wait_for(nxt, 1)
    renewed = bound is not None  # an adaptive bound is the broker's to hand out again
    assert (second.id == first.id) is renewed and slots.renewed == int(renewed)
    assert [r[4] for batch in broker.released for r in batch] == [renewed]
    assert table.stats()[0].max_in_use == 1
    third = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0.01)
    slots.release(second, "error")  # not a success: back to the broker, which grants it anew
    await asyncio.wait_for(third, 1)
    assert slots.renewed == int(renewed) and table.stats()[0].max_in_use == 1
    await slots.aclose()


async def test_a_grant_given_back_unused_frees_its_slot_and_is_not_counted_as_granted() -> None:
    table = SlotTable(["a"], [2])
    (g1, _), (g2, _) = await table.acquire("s", 2)
    table.release("s", [Report(g1, "ok"), Report(g2, "unused")])
    (stats,) = table.stats()
    assert (stats.in_use, stats.granted) == (0, 1)


async def test_a_session_frees_only_its_own_grants_and_hears_of_renewals_the_table_does_not_know() -> None:
    table = SlotTable(["a"], [2])
    ((mine, _),) = await table.acquire("s1", 1)
    ((theirs, _),) = await table.acquire("s2", 1)
    assert table.release("s1", [Report(theirs, "ok")]) == []  # not s1's: nothing freed
    assert table.stats()[0].in_use == 2
    assert table.release("s1", [Report(mine, "ok", renew=True)]) == []  # known: renewed
    assert table.release("s1", [Report(12345, "ok", renew=True)]) == [12345]  # e.g. from before a restart
    assert table.stats()[0].in_use == 2


async def test_an_actor_stops_renewing_a_grant_the_broker_no_longer_knows() -> None:
    from ollama_async.ray._grants import BrokerSlots, Grant

    table = SlotTable(["a"], [1])
    broker = _FakeBroker(table)
    slots = BrokerSlots(broker)
    stale = Grant(99, 0, renewable=True)  # held from a broker that has restarted since
    nxt = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0.01)  # the pump asks the new broker; it grants the one slot
    waiting = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0.01)
    slots.release(stale, "ok")  # renewed to the waiting row, once, and the broker says it is unknown
    assert await asyncio.wait_for(waiting, 1) == stale and slots.renewed == 1
    await asyncio.sleep(0.01)
    again = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0.01)
    slots.release(stale, "ok")  # not renewed again: back to the broker, which ignores it
    assert slots.renewed == 1 and not again.done()
    slots.release(await nxt, "ok")  # the real grant: renewed to the row that waits
    assert (await asyncio.wait_for(again, 1)).id != 99 and table.stats()[0].max_in_use == 1
    await slots.aclose()
