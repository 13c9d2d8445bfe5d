"""Bulk embeddings on an embedding-only model (one slot, as Ollama forces): 1 or 2 in flight.

Run: ``python benchmarks/bench_embed_slot.py`` (about a minute). Writes
``benchmarks/results/embed_slot.json`` and prints a markdown table.

The simulator runs in a child process (``python -m ollama_async.testing``) with an embed model
of one slot at ``--embed-ms`` per text; ``client.batch.embed`` sends ``--batch`` texts per request,
so the server's capacity is ``1000 / embed_ms`` texts/s. In one run, rounds alternating:

- the default client, which finds the model embedding-only and keeps 2 in flight (its one slot,
  and one request waiting for it in the server);
- the same with ``concurrency={"model": 1}`` (the bound before: the slot count alone);
- the official ``ollama.AsyncClient``, one ``embed`` call at a time per chunk in order (what a
  loop over chunks does) and with two such loops.

Reported: texts/s / the server's capacity, the median of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
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

RESULTS = ROOT / "benchmarks" / "results" / "embed_slot.json"
MODEL = "e"


async def ours(url: str, texts: list[str], batch: int, **kwargs: Any) -> float:
    async with AsyncClient(url, **kwargs) as client:
        await client.embed(MODEL, "warm up")
        t0 = time.perf_counter()
        result = await client.batch.embed(MODEL, texts, batch_size=batch)
        elapsed = time.perf_counter() - t0
        assert not result.errors and len(result.vectors) == len(texts)
        return elapsed


async def official(url: str, texts: list[str], batch: int, loops: int) -> float:
    import ollama

    client = ollama.AsyncClient(host=url)
    await client.embed(model=MODEL, input="warm up")
    chunks = [texts[i:i + batch] for i in range(0, len(texts), batch)]

    async def loop(part: list[list[str]]) -> None:
        for chunk in part:
            await client.embed(model=MODEL, input=chunk)

    t0 = time.perf_counter()
    await asyncio.gather(*(loop(chunks[k::loops]) for k in range(loops)))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--embed-ms", type=float, default=1.0, help="the model's cost per text")
    parser.add_argument("--batch", type=int, default=32, help="texts per request")
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    capacity = 1000 / args.embed_ms
    variants: dict[str, Any] = {
        "ollama_async, default (embed-only: 2 in flight)": lambda url, t: ours(url, t, args.batch),
        "ollama_async, concurrency={model: 1}": lambda url, t: ours(url, t, args.batch, concurrency={MODEL: 1}),
        "official, one loop over the chunks": lambda url, t: official(url, t, args.batch, 1),
        "official, two loops": lambda url, t: official(url, t, args.batch, 2),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    with Sim(f"{MODEL}:kind=embed,dim=768,embed_ms={args.embed_ms:g}") as sim:
        for r in range(args.rounds):
            for name, run in variants.items():
                texts = [f"round {r} {name} text {i}" for i in range(args.texts)]  # no cache hits
                elapsed = asyncio.run(run(sim.url, texts))
                rates[name].append(args.texts / elapsed)
                print(f"  round {r + 1}: {name}: {args.texts / elapsed:,.0f} texts/s", file=sys.stderr)
    results = [{"variant": name, "texts_per_s": round(statistics.median(v), 1),
                "vs_capacity": round(statistics.median(v) / capacity, 4)} for name, v in rates.items()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"python": platform.python_version()}, "embed_ms": args.embed_ms, "batch": args.batch,
        "texts": args.texts, "rounds": args.rounds, "capacity_texts_per_s": capacity, "results": results,
    }, indent=2) + "\n")
    print(f"\none slot x {args.embed_ms:g} ms per text, {args.batch} texts per request: capacity {capacity:,.0f} texts/s\n")
    print("| variant | texts/s | / server's capacity |")
    print("|---|---|---|")
    for row in results:
        print(f"| {row['variant']} | {row['texts_per_s']:,.0f} | {100 * row['vs_capacity']:.1f} % |")


if __name__ == "__main__":
    main()
