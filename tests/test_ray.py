"""``ollama_async.ray`` on a local Ray instance (2 CPUs) against simulators on loopback ports.

Every test runs a real ``map_batches`` job: 2 actors, the classes' own clients, the slot broker
actor. What is checked is what the servers saw (``sim.stats``) and what came out of the job.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import ray.data

from ollama_async import RequestError
from ollama_async.ray import OllamaChat, OllamaEmbed, OllamaGenerate, slot_broker
from ollama_async.testing import Fault, ModelSpec, Simulator

GEN, EMB = "llama3.2", "nomic-embed-text"
ACTORS = 2


def _models(slots: int = 16) -> list[ModelSpec]:
    return [ModelSpec(GEN, slots=slots, prompt_ms=5, token_ms=1, tokens=6), ModelSpec(EMB, kind="embed", dim=16)]


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the crashing subclass below
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def fleet() -> Iterator[list[Simulator]]:
    """Two simulators with more slots than the tests grant: their max in flight shows what was sent."""
    sims = [Simulator(_models(), seed=0) for _ in range(2)]
    for s in sims:
        s.start()
    yield sims
    for s in sims:
        s.stop()


def _run(ds: Any, cls: type, batch_size: int = 20, **kwargs: Any) -> list[dict[str, Any]]:
    out = ds.map_batches(cls, fn_constructor_kwargs=kwargs, compute=ray.data.ActorPoolStrategy(size=ACTORS),
                         batch_size=batch_size)
    return list(out.take_all())


def _job(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name}-{time.monotonic_ns()}"  # a broker of its own per test


def test_embed_gives_each_row_its_vector_and_a_bad_row_its_error(ray_local: None, fleet: list[Simulator],
                                                                request: pytest.FixtureRequest) -> None:
    texts: list[Any] = [f"text {i}" for i in range(120)]
    texts[7] = None  # not a string: that row alone fails
    ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts)])
    rows = _run(ds, OllamaEmbed, hosts=[s.url for s in fleet], model=EMB, slots=1, batch_size=8, job=_job(request))
    assert sorted(r["id"] for r in rows) == list(range(120))  # none lost, none doubled
    by_id = {r["id"]: r for r in rows}
    assert "RequestError" in by_id[7]["error"] and all(r["error"] is None for i, r in by_id.items() if i != 7)
    import httpx

    want = httpx.post(f"{fleet[0].url}/api/embed", json={"model": EMB, "input": ["text 3"]}).json()["embeddings"][0]
    assert by_id[3]["embedding"] == pytest.approx(want, abs=1e-6)
    assert len(by_id[3]["embedding"]) == 16
    assert all(s.stats(EMB).requests > 0 for s in fleet)  # both hosts did work


def test_generate_columns_metrics_structured_output_and_per_row_errors(
        ray_local: None, fleet: list[Simulator], request: pytest.FixtureRequest) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}},
              "required": ["city", "n"]}
    for s in fleet:
        s.inject(Fault.status(500, "boom"), times=1, model=GEN)  # one row per host fails
    fleet[0].inject(Fault.busy(2), times=1, model=GEN)  # then two 503s: those rows go again, and succeed
    ds = ray.data.from_items([{"id": i, "prompt": f"question {i}"} for i in range(60)])
    rows = _run(ds, OllamaGenerate, hosts=",".join(s.url for s in fleet), model=GEN, slots=2, format=schema,
                options={"temperature": 0}, job=_job(request))
    assert sorted(r["id"] for r in rows) == list(range(60))
    failed = [r for r in rows if r["error"] is not None]
    assert len(failed) == 2 and all("boom" in r["error"] and r["response"] is None for r in failed)
    good = [r for r in rows if r["error"] is None]
    assert all(r["done_reason"] == "stop" and r["eval_count"] > 0 and r["total_duration"] > 0 for r in good)
    assert all(isinstance(r["parsed"]["city"], str) and isinstance(r["parsed"]["n"], int) for r in good)
    assert fleet[0].stats(GEN).rejected_503 == 2


def test_chat_takes_message_lists_and_plain_strings(ray_local: None, fleet: list[Simulator],
                                                    request: pytest.FixtureRequest) -> None:
    items = [{"id": i, "messages": [{"role": "user", "content": f"hi {i}"}]} for i in range(30)]
    ds = ray.data.from_items(items)
    rows = _run(ds, OllamaChat, hosts=[s.url for s in fleet], model=GEN, slots=2, metrics=False, job=_job(request))
    assert sorted(r["id"] for r in rows) == list(range(30))
    assert all(r["error"] is None and r["response"] and "eval_count" not in r for r in rows)
    strings = _run(ray.data.from_items([{"q": "hello"}]), OllamaChat, hosts=fleet[0].url, model=GEN,
                   input_column="q", output_column="a", job=_job(request))
    assert strings[0]["a"] and strings[0]["error"] is None


def test_the_bound_holds_across_actors_and_a_split_without_a_broker_breaks_it(
        ray_local: None, fleet: list[Simulator], request: pytest.FixtureRequest) -> None:
    slots, margin = 2, 1
    hosts = [s.url for s in fleet]
    ds = ray.data.from_items([{"prompt": f"p{i}"} for i in range(200)])
    job = _job(request)
    rows = _run(ds, OllamaGenerate, hosts=hosts, model=GEN, slots=slots, margin=margin, job=job)
    assert len(rows) == 200 and all(r["error"] is None for r in rows)
    seen = [s.stats(GEN).max_in_flight for s in fleet]
    assert all(slots <= m <= slots + margin for m in seen), seen  # full, and never above
    stats = ray.get(slot_broker(hosts, GEN, slots=slots, margin=margin, job=job).stats.remote())
    assert [h["in_use"] for h in stats] == [0, 0] and sum(h["granted"] for h in stats) == 200
    # The same job where each actor believes it is alone (a split told 1 actor): the servers see more.
    for s in fleet:
        s.reset_stats()
    _run(ds, OllamaGenerate, hosts=hosts, model=GEN, slots=slots, margin=margin, share="split", actors=1,
         job=_job(request))
    assert max(s.stats(GEN).max_in_flight for s in fleet) > slots + margin


def _first_time(marker: str) -> bool:
    """True exactly once per marker, across processes (an exclusive create)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


class CrashOnce(OllamaGenerate):
    """Kills its own actor process once, while its requests hold grants (a marker file says when)."""

    def __init__(self, marker: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.marker = marker

    async def __call__(self, batch: Any) -> Any:
        import asyncio

        if _first_time(self.marker):
            task = asyncio.ensure_future(super().__call__(batch))
            await asyncio.sleep(0.05)  # requests in flight, grants held
            del task
            os._exit(1)
        return await super().__call__(batch)


def test_an_actor_killed_mid_job_loses_no_row_doubles_none_and_leaks_no_slot(
        ray_local: None, fleet: list[Simulator], tmp_path: Path, request: pytest.FixtureRequest) -> None:
    for s in fleet:
        s.add_model(ModelSpec(GEN, slots=16, prompt_ms=5, token_ms=20, tokens=6))  # slower: grants held at the kill
    hosts = [s.url for s in fleet]
    job = _job(request)
    ds = ray.data.from_items([{"id": i, "prompt": f"p{i}"} for i in range(80)])
    rows = _run(ds, CrashOnce, marker=str(tmp_path / "crashed"), hosts=hosts, model=GEN, slots=1, margin=0, job=job)
    assert (tmp_path / "crashed").exists()
    assert sorted(r["id"] for r in rows) == list(range(80)) and all(r["error"] is None for r in rows)
    stats = ray.get(slot_broker(hosts, GEN, slots=1, margin=0, job=job).stats.remote())
    assert [h["in_use"] for h in stats] == [0, 0]
    assert all(h["max_in_use"] <= 1 for h in stats)


def test_a_server_that_dies_and_returns_loses_no_row(ray_local: None, fleet: list[Simulator],
                                                   request: pytest.FixtureRequest) -> None:
    for s in fleet:
        s.add_model(ModelSpec(GEN, slots=16, prompt_ms=5, token_ms=5, tokens=6))
    hosts = [s.url for s in fleet]
    dying = fleet[1]
    port = dying.port
    revived: list[Simulator] = []

    failures: list[BaseException] = []
    survivor_served: list[int] = []  # the live host's request count when the outage began and ended

    def outage() -> None:
        deadline = time.monotonic() + 30
        while dying.stats(GEN).requests < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        dying.stop()  # open connections drop: requests in flight fail over
        survivor_served.append(fleet[0].stats(GEN).requests)
        time.sleep(1.0)
        survivor_served.append(fleet[0].stats(GEN).requests)
        for _ in range(50):  # the port may take a moment to be free again
            back = Simulator(_models(), port=port)
            try:
                back.start()
            except RuntimeError as exc:
                failures.append(exc)
                time.sleep(0.1)
                continue
            revived.append(back)
            return

    thread = threading.Thread(target=outage)
    thread.start()
    job = _job(request)
    try:
        ds = ray.data.from_items([{"id": i, "prompt": f"p{i}"} for i in range(400)])
        rows = _run(ds, OllamaGenerate, hosts=hosts, model=GEN, slots=2, margin=1, job=job)
    finally:
        thread.join()
        for s in revived:
            s.stop()
    assert sorted(r["id"] for r in rows) == list(range(400))
    assert [r["error"] for r in rows if r["error"]] == []
    stats = ray.get(slot_broker(hosts, GEN, slots=2, margin=1, job=job).stats.remote())
    assert stats[1]["downs"] >= 1, stats
    # while one host was down the job went on on the other (grant totals are no measure of this:
    # attempts that fail on the dying host count as grants too, and it is back for most of the job)
    assert survivor_served[1] > survivor_served[0], (survivor_served, stats)
    assert revived, f"the simulator could not listen on port {port} again: {failures}"
    assert revived[0].stats(GEN).requests > 0, stats  # probed and used again once it was back


def test_a_broker_nobody_uses_any_more_exits_on_its_own(ray_local: None) -> None:
    from ollama_async.ray._broker import _remote_class

    broker = _remote_class().remote(["http://127.0.0.1:1"], [1], 0, 8, 0.2, 0.3)  # ttl 0.2 s, idle exit 0.3 s
    ray.get(broker.heartbeat.remote("session", "owner"))
    assert ray.get(broker.stats.remote())[0]["bound"] == 1
    deadline = time.monotonic() + 30
    with pytest.raises(ray.exceptions.RayActorError):  # polled until the actor is gone
        while time.monotonic() < deadline:
            ray.get(broker.stats.remote(), timeout=10)
            time.sleep(0.2)


def test_bad_settings_fail_in_the_constructor_with_the_field() -> None:
    with pytest.raises(RequestError) as info:
        OllamaGenerate("127.0.0.1:1", GEN, slots=0)
    assert info.value.field == "slots"
    with pytest.raises(RequestError) as info:
        OllamaGenerate("127.0.0.1:1", GEN, promt="typo")
    assert info.value.field == "promt"
    with pytest.raises(RequestError) as info:
        OllamaEmbed("127.0.0.1:1", EMB, batch_size=0)
    assert info.value.field == "batch_size"
    with pytest.raises(RequestError) as info:
        OllamaChat("127.0.0.1:1", GEN, options={"temperature": "hot"})
    assert info.value.field is not None and info.value.field.startswith("options")


def test_importing_the_package_does_not_import_ray() -> None:
    import subprocess

    code = "import sys, ollama_async, ollama_async.batch, ollama_async.cli; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _cli(*args: str) -> Any:
    import subprocess

    env = {**os.environ, "OLLAMA_ASYNC_DEBUG": "1"}
    return subprocess.run([sys.executable, "-m", "ollama_async.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.timeout(180)  # two CLI processes, each a Ray driver with its own actors
def test_cli_embed_and_generate_run_on_ray_from_parquet_to_parquet(ray_local: None, fleet: list[Simulator],
                                                                   tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"doc": [f"d{i}" for i in range(40)], "body": [f"text {i}" for i in range(40)]}), src)
    out = tmp_path / "vectors.parquet"
    hosts = [arg for s in fleet for arg in ("--host", s.url)]  # --host is repeatable
    done = _cli("embed", str(src), "--model", EMB, "--out", str(out), *hosts, "--field", "body",
                "--id-field", "doc", "--ray", "auto", "--slots", "1", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "40/40 done" in done.stderr  # the CLI's own summary line
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == [f"d{i}" for i in range(40)]  # input order
    assert len(table.column("embedding")[0].as_py()) == 16
    prompts = tmp_path / "prompts.parquet"
    pq.write_table(pa.table({"prompt": [f"q{i}" for i in range(30)]}), prompts)
    fleet[0].inject(Fault.status(500, "boom"), times=1, model=GEN, path="/api/generate")
    results = tmp_path / "results.parquet"
    done = _cli("generate", str(prompts), "--model", GEN, "--out", str(results), *hosts, "--ray", "auto",
                "--ray-actors", "1", "--quiet")
    assert done.returncode == 1, done.stderr  # one row failed: listed, not fatal
    rows = pq.read_table(results).to_pylist()
    assert [r["index"] for r in rows] == list(range(30))
    assert sum(1 for r in rows if r["error"]) == 1 and all(r["response"] for r in rows if not r["error"])
    errors = [json.loads(line) for line in (tmp_path / "results.parquet.errors.jsonl").read_text().splitlines()]
    assert len(errors) == 1 and errors[0]["type"] == "ResponseError" and "boom" in errors[0]["message"]
    bad = _cli("embed", str(tmp_path / "missing.txt"), "--model", EMB, "--out", str(out), *hosts, "--ray")
    assert bad.returncode == 2 and "parquet" in bad.stderr
