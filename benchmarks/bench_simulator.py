"""How much CPU the simulator spends per request, next to what a fast client spends.

Starts ``python -m ollama_async.testing`` as its own process with instant models (all latencies
0), drives it with raw aiohttp at a fixed concurrency for a few seconds per scenario, and reads
the server process's CPU time (psutil) and this process's CPU time around each run:

* ``generate``: non-stream ``/api/generate`` of 8 tokens (server CPU per request);
* ``stream``: streamed ``/api/generate`` of 256 tokens (server CPU per chunk);
* ``embed``: ``/api/embed`` of 256 inputs x 768 dims (server CPU per response).

The client decodes every reply with orjson (every NDJSON line for streams), as a fast client
would. Results go to ``benchmarks/results/simulator.json`` and a markdown table to stdout.

Usage: ``python benchmarks/bench_simulator.py [--seconds 4] [--concurrency 64]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "simulator.json"

MODELS = [
    "fast:slots=64,tokens=8",
    "stream256:slots=64,tokens=256",
    "embed768:kind=embed,dim=768",
]


def start_server() -> tuple[subprocess.Popen[str], str]:
    args = [sys.executable, "-m", "ollama_async.testing", "--port", "0"]
    for m in MODELS:
        args += ["--model", m]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ollama-async simulator listening on"):
        proc.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    return proc, line.split()[-1]


async def run_scenario(
    session: aiohttp.ClientSession,
    url: str,
    payload: dict[str, Any],
    stream: bool,
    seconds: float,
    concurrency: int,
    server: psutil.Process,
) -> dict[str, float]:
    body = orjson.dumps(payload)
    headers = {"Content-Type": "application/json"}
    counts = {"requests": 0, "chunks": 0}
    measuring = False
    stop_at = 0.0

    async def one() -> None:
        async with session.post(url, data=body, headers=headers) as r:
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {await r.text()}")
            if stream:
                n = 0
                async for line in r.content:
                    if line.strip():
                        orjson.loads(line)
                        n += 1
                if measuring:
                    counts["chunks"] += n
            else:
                orjson.loads(await r.read())
        if measuring:
            counts["requests"] += 1

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            await one()

    # warm-up (connections, caches), not measured
    stop_at = time.perf_counter() + 0.5
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    measuring = True
    cpu0 = server.cpu_times()
    own0 = time.process_time()
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    wall = time.perf_counter() - t0
    cpu1 = server.cpu_times()
    own1 = time.process_time()
    server_cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    client_cpu = own1 - own0
    return {
        "requests": counts["requests"],
        "chunks": counts["chunks"],
        "wall_s": wall,
        "server_cpu_s": server_cpu,
        "client_cpu_s": client_cpu,
    }


async def main_async(seconds: float, concurrency: int) -> dict[str, Any]:
    proc, base = start_server()
    server = psutil.Process(proc.pid)
    scenarios: list[tuple[str, str, dict[str, Any], bool]] = [
        (
            "generate",
            "/api/generate",
            {"model": "fast", "prompt": "why is the sky blue?", "stream": False},
            False,
        ),
        ("stream", "/api/generate", {"model": "stream256", "prompt": "tell me a long story"}, True),
        (
            "embed",
            "/api/embed",
            {"model": "embed768", "input": [f"document number {i} about topic {i % 17}" for i in range(256)]},
            False,
        ),
    ]
    results: list[dict[str, Any]] = []
    try:
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for name, path, payload, stream in scenarios:
                r = await run_scenario(session, base + path, payload, stream, seconds, concurrency, server)
                n = max(r["requests"], 1)
                row: dict[str, Any] = {
                    "scenario": name,
                    "concurrency": concurrency,
                    "requests": r["requests"],
                    "wall_s": round(r["wall_s"], 3),
                    "requests_per_s": round(r["requests"] / r["wall_s"], 1),
                    "server_cpu_us_per_request": round(r["server_cpu_s"] / n * 1e6, 1),
                    "client_cpu_us_per_request": round(r["client_cpu_s"] / n * 1e6, 1),
                    "server_to_client_cpu": round(r["server_cpu_s"] / max(r["client_cpu_s"], 1e-9), 3),
                }
                if stream:
                    chunks = max(r["chunks"], 1)
                    row["chunks"] = r["chunks"]
                    row["server_cpu_us_per_chunk"] = round(r["server_cpu_s"] / chunks * 1e6, 2)
                    row["client_cpu_us_per_chunk"] = round(r["client_cpu_s"] / chunks * 1e6, 2)
                results.append(row)
    finally:
        proc.terminate()
        rc = proc.wait(timeout=30)
    return {
        "benchmark": "simulator",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "seconds_per_scenario": seconds,
        "server_exit_code": rc,
        "results": results,
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        "| scenario | req/s | server CPU / request | client CPU / request | server CPU / chunk | server / client CPU |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        per_chunk = f"{r['server_cpu_us_per_chunk']:.2f} µs" if "server_cpu_us_per_chunk" in r else "-"
        lines.append(
            f"| {r['scenario']} | {r['requests_per_s']:.0f} | {r['server_cpu_us_per_request']:.1f} µs | "
            f"{r['client_cpu_us_per_request']:.1f} µs | {per_chunk} | {r['server_to_client_cpu']:.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=4.0, help="measured seconds per scenario")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args()
    report = asyncio.run(main_async(args.seconds, args.concurrency))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"\nwritten to {args.output}")
    return 0 if report["server_exit_code"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
