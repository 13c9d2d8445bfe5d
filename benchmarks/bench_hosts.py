"""Several servers as one client: routing, a host dying mid-batch, conversation affinity.

Run: ``python benchmarks/bench_hosts.py`` (about 2 minutes; ``--quick`` for a smaller run).
Writes ``benchmarks/results/hosts.json`` and prints a markdown table.

Four simulated hosts, each ``python -m ollama_async.testing`` in its own process on its own
port (so a kill is a dead server process and a restart comes back on the same port): 1, 2, 4
and 8 slots, at 3, 4, 5 and 6 ms per token, 16 tokens per generate (48 to 96 ms). The fleet's
ideal throughput is the sum of slots / service time over the hosts. Every figure is a ratio or
a count from the same run:

1. **routing**: 4,000 generates through one ``AsyncClient(host=[Host(url, concurrency=slots),
   ...])`` batch, against round-robin over per-host semaphores (the peers' way: item *i* goes to
   host *i mod 4*, each host's client is bounded by its slots), as share of the ideal; and
   against an oracle that knows every host's speed: one single-host client per host, all at
   once, each with its exact share of the items (what this machine can do at best, its CPU
   contention included);
2. **failover**: the same batch with the 8-slot host killed at 30 % done and restarted at 60 %:
   items lost and delivered twice (both must be 0), attempts re-sent elsewhere, and throughput
   before, during the outage (against the ideal of the three left) and after the restart;
3. **affinity**: 4 equal hosts of 4 slots (4 ms per token), 16 conversations x 6 turns, all at
   once with 0-50 ms pauses between turns, long system prompts, prompt time charged per uncached token at 0.05 ms
   (``ModelSpec.prompt_token_ms``; the simulator's prompt cache keeps one conversation per
   slot): the servers' total ``prompt_eval_duration`` of turns 2-6 with affinity on and off;
4. **overhead**: sequential round trips against an instant server with a single host string
   and with ``host=[url]`` (the router over one host), µs per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ollama_async import AsyncClient, GenerateResponse, Host  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "hosts.json"
MODEL = "llama3.2"
SLOTS = (1, 2, 4, 8)
TOKEN_MS = (3.0, 4.0, 5.0, 6.0)
TOKENS = 16
AFFINITY_SLOTS = 4  # the affinity run: 4 equal hosts of 4 slots, one conversation per slot


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProcessHost:
    """One simulator process on a fixed port, that can be killed and started again there."""

    def __init__(self, *models: str) -> None:
        self.models = models
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        args = [sys.executable, "-m", "ollama_async.testing", "--port", str(self.port)]
        for model in self.models:
            args += ["--model", model]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not re.search(r"http://\S+", line):
            self.proc.kill()
            raise RuntimeError(f"simulator did not start: {line!r}")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def close(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def fleet(slots: tuple[int, ...] = SLOTS, token_ms: tuple[float, ...] = TOKEN_MS, **extra: float) -> list[ProcessHost]:
    opts = "".join(f",{k}={v}" for k, v in extra.items())
    return [ProcessHost(f"{MODEL}:slots={s},token_ms={t},tokens={TOKENS}{opts}") for s, t in zip(slots, token_ms, strict=True)]


def ideal(indices: range | list[int] | None = None) -> float:
    """Requests/s the hosts can serve at most: slots / service time, summed."""
    chosen = range(len(SLOTS)) if indices is None else indices
    return sum(SLOTS[i] / (TOKENS * TOKEN_MS[i] / 1000.0) for i in chosen)


async def warm(urls: list[str]) -> None:
    for url in urls:
        async with AsyncClient(url) as c:
            await c.generate(MODEL, "load")


async def routed(hosts: list[ProcessHost], n: int) -> dict[str, Any]:
    async with AsyncClient(host=[Host(h.url, concurrency=s) for h, s in zip(hosts, SLOTS, strict=True)]) as client:
        await client.generate(MODEL, "warm")
        t0 = time.perf_counter()
        results = await client.batch.generate(MODEL, [f"p{i}" for i in range(n)])
        wall = time.perf_counter() - t0
        per_host = {h.url: h.requests for h in client.hosts}
    errors = sum(1 for r in results if not isinstance(r, GenerateResponse))
    return {"wall_s": wall, "rps": n / wall, "share": n / wall / ideal(), "errors": errors, "per_host": per_host}


async def round_robin(hosts: list[ProcessHost], n: int) -> dict[str, Any]:
    clients = [AsyncClient(h.url, concurrency=s) for h, s in zip(hosts, SLOTS, strict=True)]
    sems = [asyncio.Semaphore(s) for s in SLOTS]

    async def one(i: int) -> Any:
        k = i % len(clients)
        async with sems[k]:
            return await clients[k].generate(MODEL, f"p{i}")

    try:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
        wall = time.perf_counter() - t0
    finally:
        for c in clients:
            await c.aclose()
    errors = sum(1 for r in results if not isinstance(r, GenerateResponse))
    return {"wall_s": wall, "rps": n / wall, "share": n / wall / ideal(), "errors": errors}


async def oracle(hosts: list[ProcessHost], n: int) -> dict[str, Any]:
    shares = [SLOTS[i] / (TOKENS * TOKEN_MS[i] / 1000.0) / ideal() for i in range(len(SLOTS))]
    counts = [round(n * s) for s in shares]
    counts[-1] += n - sum(counts)

    async def one(url: str, slots: int, count: int) -> list[Any]:
        async with AsyncClient(url, concurrency=slots) as client:
            return list(await client.batch.generate(MODEL, [f"p{i}" for i in range(count)]))

    t0 = time.perf_counter()
    parts = await asyncio.gather(*(one(h.url, s, c) for h, s, c in zip(hosts, SLOTS, counts, strict=True)))
    wall = time.perf_counter() - t0
    errors = sum(1 for part in parts for r in part if not isinstance(r, GenerateResponse))
    return {"wall_s": wall, "rps": n / wall, "share": n / wall / ideal(), "errors": errors}


async def failover(hosts: list[ProcessHost], n: int, victim: int) -> dict[str, Any]:
    kill_at, back_at = int(0.3 * n), int(0.6 * n)
    url = hosts[victim].url
    async with AsyncClient(host=[Host(h.url, concurrency=s) for h, s in zip(hosts, SLOTS, strict=True)]) as client:
        await client.generate(MODEL, "warm")
        seen: dict[int, int] = {}
        errors = 0
        stamps: list[float] = []
        marks: dict[str, float] = {}
        t0 = time.perf_counter()

        at_kill, at_back = asyncio.Event(), asyncio.Event()

        async def chaos() -> None:  # beside the batch, so that the kill and the restart never stall it
            await at_kill.wait()
            await asyncio.to_thread(hosts[victim].kill)
            marks["kill"] = time.perf_counter() - t0
            await at_back.wait()
            await asyncio.to_thread(hosts[victim].start)
            marks["restart"] = time.perf_counter() - t0
            marks["served_before"] = _state(client, url).requests
            while _state(client, url).requests == marks["served_before"]:  # noqa: ASYNC110 - polls the client
                await asyncio.sleep(0.005)
            marks["readmitted"] = time.perf_counter() - t0

        watcher = asyncio.create_task(chaos())
        async for item in client.batch.generate(MODEL, [f"p{i}" for i in range(n)]):
            seen[item.index] = seen.get(item.index, 0) + 1
            errors += item.error is not None
            stamps.append(time.perf_counter() - t0)
            if len(stamps) == kill_at:
                at_kill.set()
            elif len(stamps) == back_at:
                at_back.set()
        wall = time.perf_counter() - t0
        watcher.cancel()
        state = {h.url: (h.state, h.requests, h.errors) for h in client.hosts}
        victim_state = _state(client, url)

    def rate(a: float, b: float) -> float:
        done = sum(1 for s in stamps if a <= s < b)
        return done / (b - a) if b > a else 0.0

    others = [i for i in range(len(SLOTS)) if i != victim]
    before, during = rate(0.0, marks["kill"]), rate(marks["kill"], marks["restart"])
    back = marks.get("readmitted", wall)
    return {
        "wall_s": wall, "lost": n - len(seen) + errors, "duplicated": sum(c - 1 for c in seen.values()),
        "resent": victim_state.errors, "rps_before": before, "rps_during": during,
        "rps_after_readmission": rate(back, wall), "readmitted_after_restart_s": back - marks["restart"],
        "share_before": before / ideal(), "share_during_of_survivors": during / ideal(others),
        "dip": 1 - during / before if before else 0.0, "hosts": state,
        "victim_served_after_restart": victim_state.requests - int(marks["served_before"]),
    }


def _state(client: AsyncClient, url: str) -> Any:
    return next(h for h in client.hosts if h.url == url)


SYSTEM = " ".join(f"rule{i} applies here" for i in range(120))  # ~360 words: a long system prompt


async def affinity(hosts: list[ProcessHost], conversations: int, turns: int, on: bool) -> dict[str, Any]:
    async with AsyncClient(host=[Host(h.url, concurrency=AFFINITY_SLOTS) for h in hosts], affinity=on) as client:
        later: list[int] = []
        first: list[int] = []

        async def talk(c: int) -> None:
            # the run is part of the text: the other run's conversations are not in the caches
            messages: list[dict[str, str]] = [{"role": "system", "content": f"run {on}, conversation {c}: {SYSTEM}"}]
            think = random.Random(c)  # the same pauses in both runs
            for turn in range(turns):
                await asyncio.sleep(think.uniform(0.0, 0.05))  # the user reads and types: turns interleave
                messages.append({"role": "user", "content": f"question {turn} of conversation {c} " * 10})
                reply = await client.chat(MODEL, messages)
                messages.append({"role": "assistant", "content": reply.message.content or ""})
                (later if turn else first).append(reply.prompt_eval_duration or 0)

        t0 = time.perf_counter()
        await asyncio.gather(*(talk(c) for c in range(conversations)))
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "prompt_eval_s_turn1": sum(first) / 1e9, "prompt_eval_s_later": sum(later) / 1e9}


async def overhead(url: str, n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, host in (("single host string", url), ("host=[url] (router)", [url])):
        async with AsyncClient(host=host, concurrency=1) as client:  # type: ignore[arg-type]
            for _ in range(200):
                await client.generate("instant", "x")
            best = float("inf")
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(n):
                    await client.generate("instant", "x")
                best = min(best, (time.perf_counter() - t0) / n * 1e6)
            out[label] = best
    return out


async def main(quick: bool) -> dict[str, Any]:
    n = 800 if quick else 4000
    hosts = fleet()
    try:
        await warm([h.url for h in hosts])
        result: dict[str, Any] = {"ideal_rps": ideal()}
        result["routed"] = await routed(hosts, n)
        result["oracle"] = await oracle(hosts, n)
        result["round_robin"] = await round_robin(hosts, n)
        result["failover"] = await failover(hosts, n, victim=3)
    finally:
        for h in hosts:
            h.close()
    hosts = fleet((AFFINITY_SLOTS,) * 4, (4.0,) * 4, prompt_token_ms=0.05)
    try:
        await warm([h.url for h in hosts])
        turns = 4 if quick else 6
        result["affinity_on"] = await affinity(hosts, 4 * AFFINITY_SLOTS, turns, True)
        result["affinity_off"] = await affinity(hosts, 4 * AFFINITY_SLOTS, turns, False)
    finally:
        for h in hosts:
            h.close()
    instant = ProcessHost("instant:slots=1,tokens=1")
    try:
        result["overhead_us"] = await overhead(instant.url, 300 if quick else 2000)
    finally:
        instant.close()
    return result


def table(r: dict[str, Any]) -> str:
    f = r["failover"]
    on, off = r["affinity_on"], r["affinity_off"]
    saved = 1 - on["prompt_eval_s_later"] / off["prompt_eval_s_later"] if off["prompt_eval_s_later"] else 0.0
    rows = [
        "| measurement | value |",
        "|---|---|",
        f"| fleet ideal | {r['ideal_rps']:.0f} req/s |",
        f"| routed (ollama-async, several hosts) | {r['routed']['rps']:.0f} req/s = **{r['routed']['share']:.1%}** of ideal, {r['routed']['errors']} errors |",
        f"| oracle split (one client per host, exact shares) | {r['oracle']['rps']:.0f} req/s = {r['oracle']['share']:.1%} of ideal; routed = **{r['routed']['rps'] / r['oracle']['rps']:.1%}** of it |",
        f"| round-robin over per-host semaphores | {r['round_robin']['rps']:.0f} req/s = {r['round_robin']['share']:.1%} of ideal |",
        f"| routed / round-robin | {r['routed']['rps'] / r['round_robin']['rps']:.2f}x |",
        f"| 8-slot host killed at 30 %, back at 60 %: lost / duplicated | **{f['lost']} / {f['duplicated']}** ({f['resent']} attempts re-sent elsewhere) |",
        f"| throughput before / during outage / after re-admission | {f['rps_before']:.0f} / {f['rps_during']:.0f} / {f['rps_after_readmission']:.0f} req/s (dip {f['dip']:.0%}; during = {f['share_during_of_survivors']:.1%} of the 3 survivors' ideal) |",
        f"| restarted host: back in the rotation after | {f['readmitted_after_restart_s']:.2f} s (probe back-off), then served {f['victim_served_after_restart']} |",
        f"| affinity on: prompt_eval of turns 2+ | {on['prompt_eval_s_later']:.2f} s (wall {on['wall_s']:.2f} s) |",
        f"| affinity off: prompt_eval of turns 2+ | {off['prompt_eval_s_later']:.2f} s (wall {off['wall_s']:.2f} s) |",
        f"| prompt_eval time saved by affinity | **{saved:.0%}** |",
    ]
    for label, us in r["overhead_us"].items():
        rows.append(f"| sequential round trip, {label} | {us:.0f} µs |")
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    res = asyncio.run(main(args.quick))
    res["machine"] = {"python": platform.python_version(), "platform": platform.platform()}
    print(table(res))
    if not args.quick:
        RESULTS.write_text(json.dumps(res, indent=2) + "\n")
