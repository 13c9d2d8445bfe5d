"""Ray Data on a simulated fleet: ``ollama_async.ray`` against ``ray.data.llm`` and a plain class.

Run: ``python benchmarks/bench_ray.py`` (about 5 minutes; ``--quick`` for a smaller run).
Writes ``benchmarks/results/ray.json`` and prints a markdown table.

One run, the same fleet for every variant: ``--hosts`` simulators (each in a process of its own,
as servers are, sampling its counters every 2 ms) with ``--slots`` slots each and a fixed service time per
request; the same number of ``map_batches`` actors (``--actors``) and the same rows. Variants:

- ``ollama_async.ray`` with the slot broker (the default), and with the split (each actor its
  share of every host's slots, no broker);
- a plain async ``map_batches`` class: aiohttp, round robin over the hosts, one
  ``asyncio.Semaphore`` per actor sized to its share of the fleet's slots (what users write);
- ``ray.data.llm.build_processor(HttpRequestProcessorConfig(...))``: one processor per host (it
  takes one URL), the actors divided among them, the rows split evenly, then unioned.

Then embeddings on the same fleet (a one-slot embed model, as Ollama forces): ``OllamaEmbed``
(32 texts per request) with 1,024 and with 256 rows per ``map_batches`` batch, against
``ray.data.llm`` posting each row to ``/api/embed``. A batch's last requests cannot renew their
grants (nothing of that batch is left to send), so the fewer requests a batch holds, the more
of them wait for the broker's round trip.

Measured over the window in which the servers worked (first request in to last reply out, so
that actor start-up is not counted): rows/s, rows/s / ideal (ideal = hosts x slots / service
time), slot occupancy (the fleet's busy slots, sampled every 2 ms, time-averaged over the window /
hosts x slots), and the most
requests any server had at once (in a slot or waiting for one: above slots + margin is queueing
that the job caused).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ray  # noqa: E402
import ray.data  # noqa: E402

from ollama_async.ray import OllamaEmbed, OllamaGenerate  # noqa: E402
from ollama_async.testing import ModelSpec, Simulator  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "ray.json"
MODEL = "llama3.2"
EMBED = "nomic-embed-text"


class Member:
    """One simulator in a process of its own, as a real server is: it does not share the
    driver's GIL with Ray Data's executor (with the fleet as threads of the driver, every
    request waited for the GIL a few times, which the slots' occupancy counted as service).

    It samples its own counters every 2 ms while watched (``perf_counter`` is the system's
    monotonic clock, so samples of several members line up) and hands them over afterwards.
    """

    def __init__(self, specs: list[ModelSpec]) -> None:
        ctx = multiprocessing.get_context("fork")  # before ray.init: no threads to inherit yet
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_member_main, args=(child, specs), daemon=True)
        self._proc.start()
        self.url: str = self._conn.recv()

    def call(self, cmd: str, arg: Any = None) -> Any:
        self._conn.send((cmd, arg))
        return self._conn.recv()

    def stop(self) -> None:
        try:
            self.call("stop")
        finally:
            self._proc.join(10)


def _member_main(conn: Any, specs: list[ModelSpec]) -> None:
    sim = Simulator(specs, seed=0)
    sim.start()
    conn.send(sim.url)
    samples: list[tuple[float, int, int, int]] = []
    stop = threading.Event()
    thread: threading.Thread | None = None

    def sample(model: str) -> None:
        while not stop.is_set():
            st = sim.stats(model)
            samples.append((time.perf_counter(), st.requests, st.in_flight, st.waiting))
            time.sleep(0.002)

    while True:
        cmd, arg = conn.recv()
        if cmd == "reset":
            sim.reset_stats()
            conn.send(None)
        elif cmd == "watch":
            samples.clear()
            stop.clear()
            thread = threading.Thread(target=sample, args=(arg,), daemon=True)
            thread.start()
            conn.send(None)
        elif cmd == "unwatch":
            stop.set()
            if thread is not None:
                thread.join()
            conn.send((list(samples), sim.stats(arg).max_in_flight))
        elif cmd == "stop":
            sim.stop()
            conn.send(None)
            return


class Watch:
    """The fleet's samples: the window in which it worked, its slot occupancy, the most requests
    one server held."""

    def __init__(self, members: list[Member], model: str = MODEL) -> None:
        self.members = members
        self.model = model
        self.first: float | None = None
        self.last: float | None = None
        self.peak = 0
        self.max_in_flight: list[int] = []
        self._series: list[list[tuple[float, int, int, int]]] = []

    def __enter__(self) -> Watch:
        for m in self.members:
            m.call("watch", self.model)
        return self

    def __exit__(self, *exc: object) -> None:
        firsts, lasts = [], []
        for m in self.members:
            samples, max_in_flight = m.call("unwatch", self.model)
            self._series.append(samples)
            self.max_in_flight.append(max_in_flight)
            self.peak = max([self.peak, *(in_flight + waiting for _, _, in_flight, waiting in samples)])
            base = samples[0][1] if samples else 0
            started = [t for t, requests, _, _ in samples if requests > base]
            if not started:
                continue
            firsts.append(started[0])
            last_done, last = -1, started[0]
            for t, requests, in_flight, _ in samples:  # the last time a request finished
                if requests - in_flight != last_done:
                    last_done, last = requests - in_flight, t
            lasts.append(last)
        self.first = min(firsts, default=None)
        self.last = max(lasts, default=None)

    def occupancy(self, slots: int) -> float:
        """The fleet's busy slots, time-averaged over the window, / all its slots."""
        if self.first is None or self.last is None:
            return 0.0
        shares = []
        for samples in self._series:
            inside = [busy for t, _, busy, _ in samples if self.first <= t <= self.last]
            shares.append(sum(inside) / (len(inside) * slots) if inside else 0.0)
        return sum(shares) / len(shares)


class PlainSemaphore:
    """The class users write: aiohttp, round robin over the hosts, a semaphore per actor."""

    def __init__(self, hosts: list[str], limit: int) -> None:
        self.hosts = hosts
        self.limit = limit
        self.session: Any = None
        self.sem: asyncio.Semaphore | None = None
        self.next = 0

    async def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import aiohttp
        import numpy as np

        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            self.sem = asyncio.Semaphore(self.limit)
        assert self.sem is not None

        async def one(prompt: str) -> str:
            assert self.sem is not None
            async with self.sem:
                host = self.hosts[self.next % len(self.hosts)]
                self.next += 1
                body = {"model": MODEL, "prompt": prompt, "stream": False}
                async with self.session.post(f"{host}/api/generate", json=body) as r:
                    return str((await r.json())["response"])

        responses = await asyncio.gather(*(one(str(p)) for p in batch["prompt"]))
        return {**batch, "response": np.array(responses, dtype=object)}


def run_variant(name: str, sims: list[Member], make: Any, rows: int, ideal: float, slots: int,
                model: str = MODEL) -> dict[str, Any]:
    for s in sims:
        s.call("reset")
    column = "prompt" if model == MODEL else "text"
    ds = ray.data.from_items([{"id": i, column: f"question number {i}"} for i in range(rows)],
                             override_num_blocks=max(8, rows // 64))
    with Watch(sims, model) as watch:
        started = time.perf_counter()
        out = make(ds).take_all()
        total = time.perf_counter() - started
    assert len(out) == rows and len({r["id"] for r in out}) == rows, name
    errors = sum(1 for r in out if r.get("error"))
    window = (watch.last or 0) - (watch.first or 0)
    occupancy = watch.occupancy(slots)
    result: dict[str, Any] = {
        "variant": name, "rows": rows, "errors": errors, "window_s": round(window, 3), "total_s": round(total, 3),
        "rows_per_s": round(rows / window, 1), "vs_ideal": round(rows / window / ideal, 4),
        "occupancy": round(occupancy, 4), "peak_requests_at_one_server": watch.peak,
        "max_in_flight": watch.max_in_flight,
    }
    print(f"  {name}: {result['rows_per_s']} rows/s, {100 * result['vs_ideal']:.1f} % of ideal, "
          f"occupancy {100 * occupancy:.1f} %, peak {watch.peak} at one server, {errors} errors", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--actors", type=int, default=3)
    parser.add_argument("--rows", type=int, default=2400)
    parser.add_argument("--prompt-ms", type=float, default=20)
    parser.add_argument("--token-ms", type=float, default=10)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--embed-rows", type=int, default=12000)
    parser.add_argument("--embed-ms", type=float, default=1.0, help="the embed model's cost per text")
    parser.add_argument("--embed-batch", type=int, default=32, help="texts per embed request")
    parser.add_argument("--embed-margin", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("generate", "embed"), help="run one half (results of the other are kept)")
    args = parser.parse_args()
    if args.quick:
        args.rows = 600
        args.embed_rows = 3000
    service_s = (args.prompt_ms + args.token_ms * args.tokens) / 1000
    ideal = args.hosts * args.slots / service_s
    spec = ModelSpec(MODEL, slots=args.slots, prompt_ms=args.prompt_ms, token_ms=args.token_ms, tokens=args.tokens)
    embed_spec = ModelSpec(EMBED, kind="embed", dim=768, embed_ms=args.embed_ms)  # one slot, as Ollama forces
    sims = [Member([spec, embed_spec]) for _ in range(args.hosts)]
    hosts = [s.url for s in sims]
    ray.init(num_cpus=2 * args.actors + 2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    pool = ray.data.ActorPoolStrategy(size=args.actors)
    batch = 64
    print(f"fleet: {args.hosts} hosts x {args.slots} slots x {service_s * 1000:.0f} ms; ideal {ideal:.0f} rows/s; "
          f"{args.actors} actors, {args.rows} rows", flush=True)

    def ours(**extra: Any) -> Any:
        def make(ds: Any) -> Any:
            kwargs = {"hosts": hosts, "model": MODEL, "slots": args.slots, "job": f"bench-{time.monotonic_ns()}",
                      **extra}
            return ds.map_batches(OllamaGenerate, fn_constructor_kwargs=kwargs, compute=pool, batch_size=batch)
        return make

    def plain(ds: Any) -> Any:
        limit = max(1, args.hosts * args.slots // args.actors)
        return ds.map_batches(PlainSemaphore, fn_constructor_kwargs={"hosts": hosts, "limit": limit}, compute=pool,
                              batch_size=batch)

    def ray_llm(ds: Any) -> Any:
        from ray.data.llm import HttpRequestProcessorConfig, build_processor

        parts = []
        per_host = max(1, args.actors // args.hosts)
        for h, host in enumerate(hosts):
            config = HttpRequestProcessorConfig(url=f"{host}/api/generate", concurrency=per_host, batch_size=batch)
            processor = build_processor(
                config,
                preprocess=lambda row: {**row, "payload": {"model": MODEL, "prompt": row["prompt"], "stream": False}},
                postprocess=lambda row: {"id": row["id"], "response": row["http_response"]["response"]},
            )
            parts.append(processor(ds.filter(lambda row, h=h: row["id"] % len(hosts) == h)))
        return parts[0].union(*parts[1:])

    variants = [
        ("ollama_async.ray, slot broker, margin 1", ours(margin=1)),
        ("ollama_async.ray, slot broker, margin 2", ours(margin=2)),
        ("ollama_async.ray, split over the actors, margin 1", ours(margin=1, share="split", actors=args.actors)),
        ("ollama_async.ray, slot broker, adaptive (slots not given)", ours(slots=None)),
        ("plain async class, semaphore per actor (aiohttp)", plain),
        ("ray.data.llm HttpRequestProcessorConfig", ray_llm),
    ]
    def ours_embed(rows_per_batch: int) -> Any:
        def make(ds: Any) -> Any:
            kwargs = {"hosts": hosts, "model": EMBED, "slots": 1, "margin": args.embed_margin,
                      "batch_size": args.embed_batch, "job": f"bench-{time.monotonic_ns()}"}
            return ds.map_batches(OllamaEmbed, fn_constructor_kwargs=kwargs, compute=pool, batch_size=rows_per_batch)
        return make

    def ray_llm_embed(ds: Any) -> Any:
        from ray.data.llm import HttpRequestProcessorConfig, build_processor

        parts = []
        for h, host in enumerate(hosts):
            config = HttpRequestProcessorConfig(url=f"{host}/api/embed", concurrency=max(1, args.actors // args.hosts),
                                                batch_size=batch)
            processor = build_processor(
                config,
                preprocess=lambda row: {**row, "payload": {"model": EMBED, "input": row["text"]}},
                postprocess=lambda row: {"id": row["id"], "embedding": row["http_response"]["embeddings"][0]},
            )
            parts.append(processor(ds.filter(lambda row, h=h: row["id"] % len(hosts) == h)))
        return parts[0].union(*parts[1:])

    embed_ideal = args.hosts * 1000 / args.embed_ms
    embed_variants = [
        *((f"OllamaEmbed, slot broker (slots=1, margin {args.embed_margin}, {args.embed_batch} texts per request, "
           f"{rows} rows per map_batches batch)", ours_embed(rows)) for rows in (1024, 256)),
        ("ray.data.llm HttpRequestProcessorConfig, /api/embed", ray_llm_embed),
    ]
    results = []
    embed_results = []
    try:
        for name, make in variants if args.only != "embed" else []:
            results.append(run_variant(name, sims, make, args.rows, ideal, args.slots))
        if args.only == "generate":
            embed_variants = []
        print(f"embed: {args.hosts} hosts x 1 slot x {args.embed_ms} ms per text; ideal {embed_ideal:.0f} texts/s; "
              f"{args.embed_rows} rows", flush=True)
        for name, make in embed_variants:
            embed_results.append(run_variant(name, sims, make, args.embed_rows, embed_ideal, 1, EMBED))
    finally:
        ray.shutdown()
        for s in sims:
            s.stop()
    for group in (results, embed_results):
        base = next((r for r in group if r["variant"].startswith("ray.data.llm")), None)
        for r in group:
            r["vs_ray_data_llm"] = round(r["rows_per_s"] / base["rows_per_s"], 2) if base else None
    report: dict[str, Any] = json.loads(RESULTS.read_text()) if args.only and RESULTS.exists() else {}
    report["machine"] = {"python": platform.python_version(), "ray": ray.__version__, "cpus": _cpus()}
    if args.only != "embed":
        report.update({"fleet": {"hosts": args.hosts, "slots": args.slots, "service_ms": service_s * 1000,
                                 "ideal_rows_per_s": ideal}, "actors": args.actors, "rows": args.rows,
                       "results": results})
    if args.only != "generate":
        report["embed"] = {"embed_ms": args.embed_ms, "rows": args.embed_rows, "ideal_texts_per_s": embed_ideal,
                           "results": embed_results}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print("\n| variant | rows/s | / ideal | slot occupancy | x ray.data.llm | peak requests at one server | errors |")
    print("|---|---|---|---|---|---|---|")
    for r in results + embed_results:
        print(f"| {r['variant']} | {r['rows_per_s']:,.0f} | {100 * r['vs_ideal']:.1f} % | {100 * r['occupancy']:.1f} % "
              f"| {r['vs_ray_data_llm'] or 0:.2f}x | {r['peak_requests_at_one_server']} | {r['errors']} |")


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
