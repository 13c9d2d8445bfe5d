"""cProfile of one client in one benchmark scenario, against the simulator in its own process.

``python benchmarks/profile_client.py [--client ollama_async|ollama_async[httpx]|ollama|httpx|aiohttp]
[--scenario generate|stream|embed] [--top 25]``

Prints the top entries by own time (``tottime``) and writes them to
``benchmarks/results/profile_<scenario>_<client>.txt``. ``ollama_async[httpx]`` is the client
with its own HTTP pool switched off (``OLLAMA_ASYNC_TRANSPORT=httpx``): the path every request
took before that pool existed.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run
from _clients import MAIN, VARIANTS, Adapter

WORK = {"generate": 3000, "stream": 4, "embed": 30}


async def profile(cls: type[Adapter], url: str, scenario: str, concurrency: int) -> tuple[cProfile.Profile, str]:
    adapter = cls(url, concurrency)
    await adapter.start()
    texts = run.EMBED_TEXTS

    async def one() -> int:
        if scenario == "generate":
            await adapter.generate("instant", "why is the sky blue?")
            return 1
        if scenario == "stream":
            return await adapter.stream("long", "tell me a long story")
        await adapter.embed("emb", texts)
        return len(texts)

    async def batch(n: int) -> int:
        todo = iter(range(n))
        done = 0

        async def worker() -> None:
            nonlocal done
            for _ in todo:
                got = await one()
                done += got

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done

    await batch(max(concurrency, WORK[scenario] // 10))  # warm up: connections, caches
    prof = cProfile.Profile()
    cpu = time.process_time()
    prof.enable()
    items = await batch(WORK[scenario])
    prof.disable()
    cpu = time.process_time() - cpu
    await adapter.close()
    return prof, f"{items} items, {cpu / items * 1e6:.1f} µs CPU per item under the profiler"


def main() -> int:
    names = {c.name: c for c in MAIN + VARIANTS}
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--client", default="ollama_async", choices=sorted(names))
    p.add_argument("--scenario", default="generate", choices=sorted(WORK))
    p.add_argument("--concurrency", type=int, default=0, help="default: 64 (generate), 4 (stream), 2 (embed)")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    concurrency = args.concurrency or {"generate": 64, "stream": 4, "embed": 2}[args.scenario]
    proc, url = run.start_simulator()
    try:
        prof, summary = asyncio.run(profile(names[args.client], url, args.scenario, concurrency))
    finally:
        proc.terminate()
        proc.wait(10)
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(args.top)
    text = f"{args.client}, {args.scenario}, concurrency {concurrency}: {summary}\n{out.getvalue()}"
    print(text)
    target = run.RESULTS / f"profile_{args.scenario}_{args.client.replace('[', '_').replace(']', '')}.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
