"""Batch throughput, adaptive concurrency and flat memory, against the simulator in its own process.

Run: ``python benchmarks/bench_batch.py`` (about 3-5 minutes; ``--quick`` for a smaller run).
Writes ``benchmarks/results/batch.json`` and prints a markdown table.

Every figure is a ratio, so that it means the same on any machine:

- throughput / ideal, where ideal = slots / service time (the simulator is told how long one
  request takes: ``tokens=1, token_ms=<service>``);
- RSS after iterating 1M texts / RSS after 100k (each in a fresh process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ollama_async import AsyncClient  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "batch.json"


class Sim:
    """``python -m ollama_async.testing`` in a child process; ``url`` once it is ready."""

    def __init__(self, *models: str) -> None:
        args = [sys.executable, "-m", "ollama_async.testing", "--port", "0"]
        for model in models:
            args += ["--model", model]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"http://\S+", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.url = match.group(0)

    def __enter__(self) -> Sim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def batch_throughput(url: str, slots: int, service_ms: float, n: int, **client_kwargs: Any) -> dict[str, Any]:
    """One batch of ``n`` generates; throughput as a share of slots / service time."""
    async with AsyncClient(url, **client_kwargs) as client:
        await client.generate("m", "warm up")
        limiter = client.limits.for_model("m")
        limits: list[int] = []
        t0 = time.perf_counter()
        run = client.batch.generate("m", (f"prompt {i}" for i in range(n)), progress=lambda p: limits.append(limiter.limit))
        results = await run
        elapsed = time.perf_counter() - t0
        stats = client.limits.stats()["m:latest"]
    ok = [r for r in results if not isinstance(r, BaseException)]
    ideal = slots / (service_ms / 1000)
    # What the simulator really spent per request (its timers overshoot on a busy machine):
    work = sum((r.total_duration or 0) - (r.queue_duration or 0) for r in ok) / max(len(ok), 1) / 1e9
    tail = limits[len(limits) // 2 :]
    return {
        "items": n, "slots": slots, "service_ms": service_ms, "elapsed_s": round(elapsed, 3),
        "throughput": round(n / elapsed, 1), "ideal": round(ideal, 1), "ratio": round(n / elapsed / ideal, 4),
        "server_work_ms": round(work * 1000, 2), "ratio_vs_server": round(n / elapsed / (slots / work), 4),
        "errors": n - len(ok), "mode": stats.mode, "final_limit": stats.limit, "max_in_flight": stats.max_in_flight,
        "limit_mean_second_half": round(sum(tail) / max(len(tail), 1), 2),
        "client_wait_mean_ms": round(stats.wait_mean * 1000, 2),
    }


async def official_gather(url: str, slots: int, service_ms: float, n: int) -> dict[str, Any]:
    """The official client, the naive way: ``asyncio.gather`` of every call at once."""
    import ollama

    client = ollama.AsyncClient(host=url)
    await client.generate(model="m", prompt="warm up")
    latencies: list[float] = []

    async def one(i: int) -> Any:
        t = time.perf_counter()
        try:
            return await client.generate(model="m", prompt=f"prompt {i}")
        finally:
            latencies.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    elapsed = time.perf_counter() - t0
    ideal = slots / (service_ms / 1000)
    latencies.sort()
    ok = [r for r in results if not isinstance(r, BaseException)]
    work = sum((r.load_duration or 0) + (r.prompt_eval_duration or 0) + (r.eval_duration or 0)
               for r in ok) / max(len(ok), 1) / 1e9
    return {
        "items": n, "slots": slots, "service_ms": service_ms, "elapsed_s": round(elapsed, 3),
        "throughput": round(n / elapsed, 1), "ideal": round(ideal, 1), "ratio": round(n / elapsed / ideal, 4),
        "server_work_ms": round(work * 1000, 2), "ratio_vs_server": round(n / elapsed / (slots / work), 4),
        "errors": n - len(ok),
        "latency_p50_s": round(latencies[len(latencies) // 2], 3), "latency_max_s": round(latencies[-1], 3),
    }


# -- memory: a child process iterates N texts from a generator ----------------------------------


async def _embed_child(url: str, n: int, batch_size: int) -> dict[str, Any]:
    import psutil  # type: ignore[import-untyped]

    def texts() -> Any:
        for i in range(n):
            yield f"text number {i} of the bulk embedding benchmark"

    count = failed = 0
    t0 = time.perf_counter()
    async with AsyncClient(url) as client:
        async for item in client.batch.embed("e", texts(), batch_size=batch_size):
            count += 1
            failed += not item.ok
    elapsed = time.perf_counter() - t0
    return {
        "texts": count, "failed": failed, "elapsed_s": round(elapsed, 2), "texts_per_s": round(count / elapsed),
        "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def embed_rss(url: str, n: int, batch_size: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--embed-child", url, str(n), str(batch_size)],
        check=True, capture_output=True, text=True, cwd=ROOT,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# -- decoding: pydantic vs the lean decoder, per vector ------------------------------------------


def decode_speed(dim: int, n: int = 64, rounds: int = 30) -> dict[str, Any]:
    import random

    from ollama_async import EmbedResponse
    from ollama_async.batch._batch import decode_embed

    rng = random.Random(0)
    body = json.dumps({"model": "m", "embeddings": [[rng.uniform(-1, 1) for _ in range(dim)] for _ in range(n)],
                       "total_duration": 1}, separators=(",", ":")).encode()

    def per_vector_us(fn: Any) -> float:
        fn()
        t = time.perf_counter()
        for _ in range(rounds):
            fn()
        return (time.perf_counter() - t) / rounds / n * 1e6

    import numpy as np

    pyd = per_vector_us(lambda: EmbedResponse.model_validate_json(body))
    pyd_np = per_vector_us(lambda: np.asarray(EmbedResponse.model_validate_json(body).embeddings, dtype=np.float32))
    lean = per_vector_us(lambda: decode_embed(body))
    return {"dim": dim, "pydantic_us_per_vector": round(pyd, 2), "pydantic_to_numpy_us_per_vector": round(pyd_np, 2),
            "orjson_numpy_us_per_vector": round(lean, 2), "speedup_vs_pydantic_to_numpy": round(pyd_np / lean, 2)}


# -- the run --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller batches (a smoke run)")
    parser.add_argument("--embed-child", nargs=3, metavar=("URL", "N", "BATCH_SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.embed_child:
        url, n, bs = args.embed_child
        print(json.dumps(asyncio.run(_embed_child(url, int(n), int(bs)))))
        return
    os.environ.pop("OLLAMA_NUM_PARALLEL", None)  # adaptive mode must not be told the slots
    n = 400 if args.quick else 2000
    report: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }

    def run(name: str, coro: Any) -> None:
        result = asyncio.run(coro)
        report[name] = result
        print(f"{name}: {result}", file=sys.stderr)

    with Sim("m:slots=4,tokens=1,token_ms=20") as sim:
        run("fixed_4_slots_bound_4", batch_throughput(sim.url, 4, 20, n, concurrency=4))
        run("fixed_4_slots_bound_6", batch_throughput(sim.url, 4, 20, n, concurrency=6))
        run("adaptive_4_slots", batch_throughput(sim.url, 4, 20, n, concurrency="auto"))
        run("official_gather_4_slots", official_gather(sim.url, 4, 20, n))
    with Sim("m:slots=1,tokens=1,token_ms=20") as sim:
        run("adaptive_1_slot", batch_throughput(sim.url, 1, 20, n // 2, concurrency="auto"))
    with Sim("m:slots=16,tokens=1,token_ms=100") as sim:
        run("adaptive_16_slots", batch_throughput(sim.url, 16, 100, n, concurrency="auto"))
        run("fixed_16_slots_bound_16", batch_throughput(sim.url, 16, 100, n, concurrency=16))

    big = 100_000 if args.quick else 1_000_000
    with Sim("e:kind=embed,dim=8,embed_ms=0") as sim:
        small = embed_rss(sim.url, big // 10, 256)
        large = embed_rss(sim.url, big, 256)
    report["embed_rss"] = {
        "small": small, "large": large,
        "rss_ratio": round(large["rss_mb"] / small["rss_mb"], 3),
        "peak_rss_ratio": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
    }
    print(f"embed_rss: {report['embed_rss']}", file=sys.stderr)
    report["decode"] = [decode_speed(768), decode_speed(8, n=256)]

    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))


def table(r: dict[str, Any]) -> str:
    rows = ["| case | slots x service | items | throughput / ideal | / server's measured capacity | errors "
            "| bound (final / max in flight) |",
            "|---|---|---|---|---|---|---|"]
    cases = [
        ("batch, bound = slots (`concurrency=4`)", "fixed_4_slots_bound_4"),
        ("batch, bound = slots + 2 (`concurrency=6`)", "fixed_4_slots_bound_6"),
        ("batch, adaptive (not told the slots)", "adaptive_4_slots"),
        ("official `ollama.AsyncClient`, `asyncio.gather`", "official_gather_4_slots"),
        ("batch, adaptive", "adaptive_1_slot"),
        ("batch, adaptive", "adaptive_16_slots"),
        ("batch, bound = slots (`concurrency=16`)", "fixed_16_slots_bound_16"),
    ]
    for label, key in cases:
        c = r[key]
        bound = f"{c['final_limit']} / {c['max_in_flight']}" if "final_limit" in c else (
            f"none (p50 latency {c['latency_p50_s']} s)")
        rows.append(f"| {label} | {c['slots']} x {c['service_ms']:g} ms | {c['items']} | "
                    f"{c['ratio'] * 100:.1f} % | {c['ratio_vs_server'] * 100:.1f} % "
                    f"({c['server_work_ms']} ms) | {c['errors']} | {bound} |")
    e = r["embed_rss"]
    rows += ["", "| bulk embed (iteration, generator input, dim 8, batch_size 256) | texts | texts/s | RSS MB | peak RSS MB |",
             "|---|---|---|---|---|"]
    for name in ("small", "large"):
        x = e[name]
        rows.append(f"| {name} | {x['texts']:,} | {x['texts_per_s']:,} | {x['rss_mb']} | {x['peak_rss_mb']} |")
    rows.append(f"| **ratio large / small** | | | **{e['rss_ratio']}** | **{e['peak_rss_ratio']}** |")
    rows += ["", "| decode `/api/embed` | pydantic `EmbedResponse` | pydantic → numpy | orjson → numpy (batch) |",
             "|---|---|---|---|"]
    for d in r["decode"]:
        rows.append(f"| dim {d['dim']}, µs per vector | {d['pydantic_us_per_vector']} | "
                    f"{d['pydantic_to_numpy_us_per_vector']} | {d['orjson_numpy_us_per_vector']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
