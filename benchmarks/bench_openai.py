"""The ``/v1`` layer and base64 bulk embeddings, against the simulator in its own process.

Run: ``python benchmarks/bench_openai.py`` (3 rounds, about 5 minutes; ``--quick`` for one small
round).
Writes ``benchmarks/results/openai.json`` and prints a markdown table. Both figures are ratios
measured in the same run (medians of the rounds, the clients taking turns in alternating order),
so they mean the same on any machine:

1. **Bulk embeddings**, vectors/s for 256 x 768 replies: this client's ``batch.embed`` (which now
   asks ``/v1/embeddings`` for base64 and decodes it straight into float32) against the official
   ``ollama`` client's ``embed`` + ``np.asarray`` (``/api/embed``, JSON floats), both keeping one
   request ready behind the model's single slot. Goal: >= 6x. Also the client process's CPU per
   vector, steadier than rates on a shared machine.
2. **The /v1 chat path**, requests/s at 64 in flight: ``client.openai.chat.completions.create``
   against openai-python's ``AsyncOpenAI`` on the same simulator route.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import ollama  # noqa: E402
import openai  # noqa: E402

from benchmarks.bench_batch import Sim  # noqa: E402
from ollama_async import AsyncClient  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "openai.json"
EMB, GEN = "embedder", "chatter"
MESSAGES = [{"role": "user", "content": "say something short"}]


def texts(n: int) -> list[str]:
    """1024 distinct texts, repeated: the simulator serves them from its caches, so the client's
    own cost is what is measured."""
    return [f"document {i % 1024} about topic {i % 1024 % 97} and some more words" for i in range(n)]


async def embed_ours(url: str, items: list[str], batch: int) -> tuple[float, float]:
    async with AsyncClient(url) as client:
        await client.batch.embed(EMB, items[:1024], batch_size=batch)  # warm: connections, caches
        start, cpu = time.perf_counter(), time.process_time()
        result = await client.batch.embed(EMB, items, batch_size=batch)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert not result.errors and result.vectors.shape == (len(items), 768)
    return len(items) / elapsed, cpu / len(items) * 1e6


async def embed_official(url: str, items: list[str], batch: int) -> tuple[float, float]:
    client = ollama.AsyncClient(host=url)
    chunks = [items[i : i + batch] for i in range(0, len(items), batch)]
    gate = asyncio.Semaphore(2)  # one request ready behind the single slot, as the batch engine keeps

    async def one(chunk: list[str]) -> Any:
        async with gate:
            reply = await client.embed(EMB, chunk)
            return np.asarray(reply.embeddings, dtype=np.float32)

    await asyncio.gather(*(one(c) for c in chunks[: 1024 // batch]))
    start, cpu = time.perf_counter(), time.process_time()
    arrays = await asyncio.gather(*(one(c) for c in chunks))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert sum(len(a) for a in arrays) == len(items)
    return len(items) / elapsed, cpu / len(items) * 1e6


async def drive(call: Any, n: int, concurrency: int) -> float:
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    await asyncio.gather(*(call() for _ in range(concurrency)))  # warm the pool
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - start)


async def chat_ours(url: str, n: int, concurrency: int) -> float:
    async with AsyncClient(url, concurrency={GEN: concurrency}) as client:
        async def call() -> None:
            reply = await client.openai.chat.completions.create(model=GEN, messages=MESSAGES)
            assert reply.choices[0].message.content

        return await drive(call, n, concurrency)


async def chat_official(url: str, n: int, concurrency: int) -> float:
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="ollama", max_retries=0) as client:
        async def call() -> None:
            reply = await client.chat.completions.create(model=GEN, messages=MESSAGES)  # type: ignore[arg-type]
            assert reply.choices[0].message.content

        return await drive(call, n, concurrency)


def _median(rounds: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per comparison (medians are reported)")
    args = parser.parse_args()
    n_embed = 256 * (8 if args.quick else 40)
    n_chat = 600 if args.quick else 3000
    rounds = 1 if args.quick else args.rounds
    out: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                           "load_average_start": os.getloadavg()[0], "rounds": rounds}
    embeds: list[dict[str, float]] = []
    chats: list[dict[str, float]] = []
    with Sim(f"{EMB}:kind=embed,dim=768") as sim:
        items = texts(n_embed)
        for i in range(rounds):  # the two clients take turns, in alternating order
            first, second = (embed_official, embed_ours) if i % 2 == 0 else (embed_ours, embed_official)
            results = {first: asyncio.run(first(sim.url, items, 256)), second: asyncio.run(second(sim.url, items, 256))}
            (official, official_cpu), (ours, ours_cpu) = results[embed_official], results[embed_ours]
            embeds.append({"official_vps": official, "ours_vps": ours, "ratio": ours / official,
                           "official_cpu_us_per_vector": official_cpu, "ours_cpu_us_per_vector": ours_cpu,
                           "cpu_ratio": official_cpu / ours_cpu})
    with Sim(f"{GEN}:slots=64,tokens=8") as sim:
        for i in range(rounds):
            first_c, second_c = (chat_official, chat_ours) if i % 2 == 0 else (chat_ours, chat_official)
            rps = {first_c: asyncio.run(first_c(sim.url, n_chat, 64)), second_c: asyncio.run(second_c(sim.url, n_chat, 64))}
            chats.append({"openai_rps": rps[chat_official], "ours_rps": rps[chat_ours],
                          "ratio": rps[chat_ours] / rps[chat_official]})
    out["embed"] = {"vectors": n_embed, "batch": 256, "dim": 768, "goal": 6.0, "rounds": embeds,
                    **{k: _median(embeds, k) for k in embeds[0]}}
    out["chat"] = {"requests": n_chat, "concurrency": 64, "rounds": chats, **{k: _median(chats, k) for k in chats[0]}}
    out["load_average_end"] = os.getloadavg()[0]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    e, c = out["embed"], out["chat"]
    print(f"medians of {rounds} round(s); load average {out['load_average_start']:.1f} at start, "
          f"{out['load_average_end']:.1f} at end\n")
    print("| measure | this client | baseline | ratio | goal |")
    print("|---|---:|---:|---:|---:|")
    print(f"| bulk embed, vectors/s (256x768 replies) | {e['ours_vps']:,.0f} | {e['official_vps']:,.0f} "
          f"(ollama + np.asarray) | {e['ratio']:.1f}x | &ge; 6x |")
    print(f"| bulk embed, client CPU us per vector | {e['ours_cpu_us_per_vector']:.1f} | "
          f"{e['official_cpu_us_per_vector']:.1f} | {e['cpu_ratio']:.1f}x less | - |")
    print(f"| /v1 chat, requests/s at 64 in flight | {c['ours_rps']:,.0f} | {c['openai_rps']:,.0f} "
          f"(openai AsyncOpenAI) | {c['ratio']:.2f}x | - |")
    print("\nper round, bulk-embed ratio:", ", ".join(f"{r['ratio']:.1f}x" for r in embeds),
          "| /v1 chat ratio:", ", ".join(f"{r['ratio']:.2f}x" for r in chats))


if __name__ == "__main__":
    main()
