"""Adaptive concurrency against fixed bounds, per simulator profile (independent, cpu, gpu).

Run: ``python benchmarks/bench_adaptive.py`` (about 6-8 minutes; ``--quick`` for a smoke run).
Writes ``benchmarks/results/adaptive.json``, ``benchmarks/results/adaptive.png`` and prints
markdown tables.

For each profile the simulator runs in its own process with two models of that profile: ``gen``
(generate/chat/stream) and ``emb`` (a model that can embed, with the profile's slots, so the
adaptive limiter applies; embedding-only models get a fixed 2 without any adapting). Request
durations are scaled down (4 tokens of a few ms) so that the whole sweep takes minutes; the
profile's shape (slots, contention) is kept.

- **Closed batches**: ``n`` requests started at once (``asyncio.gather``, as users do) through an
  ``AsyncClient`` with ``concurrency=b`` for b in 1..2 x slots, and through a fresh client in
  adaptive mode (told nothing). Throughput = n / elapsed. For 24-request bursts each cell is the
  median of 5 runs. Bursts sweep every bound 1..2 x slots for every kind; 2,000-request batches
  sweep slots/2, slots-1, slots, slots+1, slots+2, 1.5 x slots and 2 x slots for generate, and
  slots / slots+1 / 2 x slots for chat, stream and embed (the server runs no more than its slots
  at once; above them only the client's own round trip is hidden).
- **Open loop**: Poisson arrivals at 50 %, 80 % and 95 % of the capacity measured by the sweep
  (the best fixed bound's rate on the long generate batch), through a client bounded at the
  slots (hand-tuned) and a fresh adaptive one, 600 requests each, its learning included;
  p50/p99 of arrival to reply, medians of 3 interleaved rounds with the same arrival times.

Every figure is compared with the others of the same run, on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_batch import Sim  # noqa: E402

from ollama_async import AsyncClient  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "adaptive.json"
PLOT = ROOT / "benchmarks" / "results" / "adaptive.png"

# Scaled profiles: the shape of ollama_async.testing's PROFILES, a few ms per token.
PROFILES: dict[str, dict[str, Any]] = {
    "independent": {"slots": 4, "opts": "slots=4,token_ms=4,tokens=4"},
    "cpu": {"slots": 4, "opts": "profile=cpu,token_ms=2.6,prompt_ms=0.7,prompt_token_ms=0.25,tokens=4"},
    "gpu": {"slots": 8, "opts": "profile=gpu,token_ms=3,prompt_ms=0.3,prompt_token_ms=0.02,tokens=8"},
}
EMBED_MS = {"independent": 16.0, "cpu": 10.4, "gpu": 24.0}
KINDS = ("generate", "chat", "stream", "embed")


def bounds_for(slots: int, full: bool, small: bool) -> list[int]:
    """Every bound 1..2 x slots for bursts; around the slots for long batches (1 alone takes long)."""
    if small:
        return list(range(1, 2 * slots + 1))
    if full:
        return sorted({slots // 2, slots - 1, slots, slots + 1, slots + 2, 3 * slots // 2, 2 * slots})
    return sorted({slots, slots + 1, 2 * slots})


async def one(client: AsyncClient, kind: str, i: int) -> None:
    if kind == "generate":
        await client.generate("gen", f"prompt {i}")
    elif kind == "chat":
        await client.chat("gen", [{"role": "user", "content": f"question {i}"}])
    elif kind == "stream":
        async for _ in await client.generate("gen", f"prompt {i}", stream=True):
            pass
    else:
        await client.embed("emb", f"text {i}")


def client_for(url: str, bound: int | None) -> AsyncClient:
    return AsyncClient(url, concurrency="auto" if bound is None else bound)


async def closed(url: str, kind: str, n: int, bound: int | None) -> dict[str, Any]:
    """``n`` requests at once; throughput, and the adaptive bound's path."""
    async with client_for(url, bound) as client:
        await one(client, kind, -1)  # connection and model warm, like a running application
        model = "emb" if kind == "embed" else "gen"
        t0 = time.perf_counter()
        await asyncio.gather(*(one(client, kind, i) for i in range(n)))
        elapsed = time.perf_counter() - t0
        stats = client.limits.stats()[f"{model}:latest"]
    return {"rate": n / elapsed, "elapsed": elapsed, "final": stats.limit, "max_in_flight": stats.max_in_flight}


async def open_loop(url: str, rate: float, n: int, bound: int | None, seed: int) -> dict[str, Any]:
    """Poisson arrivals at ``rate``/s; latency from arrival to reply."""
    rng = random.Random(seed)
    latencies: list[float] = []
    async with client_for(url, bound) as client:
        await one(client, "generate", -1)

        async def timed(i: int, at: float) -> None:
            await one(client, "generate", i)
            latencies.append(time.perf_counter() - at)

        tasks = []
        t = time.perf_counter()
        for i in range(n):
            t += rng.expovariate(rate)
            delay = t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(timed(i, t)))
        await asyncio.gather(*tasks)
        final = client.limits.stats()["gen:latest"].limit
    latencies.sort()
    return {
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1],
        "final": final,
    }


async def profile_run(name: str, quick: bool) -> dict[str, Any]:
    prof = PROFILES[name]
    slots = prof["slots"]
    emb = f"emb:{prof['opts']},embed_ms={EMBED_MS[name]},capabilities=completion+embedding"
    big, small, reps = (300, 24, 2) if quick else (2000, 24, 5)
    out: dict[str, Any] = {"slots": slots, "opts": prof["opts"], "closed": {}, "open": {}}
    with Sim(f"gen:{prof['opts']}", emb) as sim:
        for kind in KINDS:
            for n in (small, big):
                full = n == small or kind == "generate"
                cells: dict[str, Any] = {}
                for bound in [*bounds_for(slots, full, n == small), None]:
                    runs = [await closed(sim.url, kind, n, bound) for _ in range(reps if n == small else 1)]
                    rates = [r["rate"] for r in runs]
                    cells["adaptive" if bound is None else str(bound)] = {
                        "rate": statistics.median(rates),
                        "final": runs[-1]["final"],
                        "max_in_flight": max(r["max_in_flight"] for r in runs),
                    }
                best_key = max((k for k in cells if k != "adaptive"), key=lambda k: cells[k]["rate"])
                ratio = cells["adaptive"]["rate"] / cells[best_key]["rate"]
                out["closed"][f"{kind}/{n}"] = {"cells": cells, "best": best_key, "ratio": ratio}
                print(f"{name:12} {kind:8} n={n:5}: best fixed {best_key} {cells[best_key]['rate']:.1f}/s, "
                      f"adaptive {cells['adaptive']['rate']:.1f}/s = {ratio:.1%} "
                      f"(final {cells['adaptive']['final']}, peak {cells['adaptive']['max_in_flight']})", flush=True)
        capacity = max(c["rate"] for c in out["closed"][f"generate/{big}"]["cells"].values())
        out["capacity"] = capacity
        m, rounds = (300, 1) if quick else (600, 3)
        for load in (0.5, 0.8, 0.95):
            both: dict[str, list[dict[str, Any]]] = {"fixed": [], "adaptive": []}
            for r in range(rounds):  # interleaved, same arrival times for both: noise hits both alike
                both["fixed"].append(await open_loop(sim.url, load * capacity, m, slots, seed=7 + r))
                both["adaptive"].append(await open_loop(sim.url, load * capacity, m, None, seed=7 + r))
            fixed, adaptive = ({k: statistics.median(x[k] for x in runs) for k in runs[0]} for runs in both.values())
            out["open"][str(load)] = {"fixed": fixed, "adaptive": adaptive, "rounds": both}
            print(f"{name:12} open {load:.0%}: fixed({slots}) p50 {fixed['p50_ms']:.1f} p99 {fixed['p99_ms']:.1f} ms; "
                  f"adaptive p50 {adaptive['p50_ms']:.1f} p99 {adaptive['p99_ms']:.1f} ms (final {adaptive['final']})",
                  flush=True)
    return out


def tables(doc: dict[str, Any]) -> str:
    lines = ["| profile | work | best fixed bound (req/s) | adaptive (req/s) | adaptive / best | goal | adaptive bound at end / peak |",
             "|---|---|---:|---:|---:|---:|---|"]
    for name, prof in doc["profiles"].items():
        for key, row in prof["closed"].items():
            best, ad = row["cells"][row["best"]], row["cells"]["adaptive"]
            goal = 0.90 if key.endswith("/24") else 0.95
            mark = "" if row["ratio"] >= goal else " (not met)"
            lines.append(f"| {name} ({prof['slots']} slots) | {key.replace('/', ' x ')} | {row['best']} ({best['rate']:.0f}) | "
                         f"{ad['rate']:.0f} | {row['ratio']:.1%}{mark} | {goal:.0%} | {ad['final']} / {ad['max_in_flight']} |")
    lines += ["", "| profile | load | fixed = slots: p50 / p99 ms | adaptive: p50 / p99 ms | p99 adaptive / fixed |",
              "|---|---:|---:|---:|---:|"]
    for name, prof in doc["profiles"].items():
        for load, row in prof["open"].items():
            f, a = row["fixed"], row["adaptive"]
            lines.append(f"| {name} | {float(load):.0%} | {f['p50_ms']:.1f} / {f['p99_ms']:.1f} | "
                         f"{a['p50_ms']:.1f} / {a['p99_ms']:.1f} | {a['p99_ms'] / f['p99_ms']:.2f} |")
    return "\n".join(lines)


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(doc["profiles"])
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 6.5), squeeze=False)
    for col, name in enumerate(names):
        prof = doc["profiles"][name]
        for row, n in enumerate(("24", str(doc["big"]))):
            ax = axes[row][col]
            for kind in KINDS:
                cells = prof["closed"].get(f"{kind}/{n}", {}).get("cells")
                if not cells:
                    continue
                xs = sorted(int(k) for k in cells if k != "adaptive")
                line = ax.plot(xs, [cells[str(x)]["rate"] for x in xs], marker=".", label=kind)[0]
                ax.axhline(cells["adaptive"]["rate"], color=line.get_color(), linestyle="--", linewidth=1)
            ax.axvline(prof["slots"], color="grey", linewidth=0.5)
            ax.set_title(f"{name}, {prof['slots']} slots, batches of {n}", fontsize=9)
            ax.set_xlabel("fixed bound (dashed: adaptive, told nothing)", fontsize=8)
            ax.set_ylabel("requests/s", fontsize=8)
            ax.tick_params(labelsize=7)
            if row == 0 and col == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="smaller batches (300), fewer repeats")
    ap.add_argument("--profiles", default=",".join(PROFILES))
    ap.add_argument("--output", type=Path, default=RESULTS)
    ap.add_argument("--plot", type=Path, default=PLOT)
    args = ap.parse_args()
    os.environ.pop("OLLAMA_NUM_PARALLEL", None)  # adaptive means told nothing
    doc: dict[str, Any] = {
        "benchmark": "adaptive",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()[0]},
        "big": 300 if args.quick else 2000,
        "profiles": {},
    }
    for name in args.profiles.split(","):
        doc["profiles"][name] = asyncio.run(profile_run(name, args.quick))
    doc["machine"]["load_end"] = os.getloadavg()[0]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=2) + "\n")
    plot(doc, args.plot)
    print()
    print(tables(doc))
    print(f"\nwritten to {args.output} and {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
