"""Every client benchmark in one command: ``python benchmarks/run.py [--quick]``.

Starts the simulator (``python -m ollama_async.testing``) in its own process and measures, in
the same run and against the same server, ``ollama_async.AsyncClient``, the official
``ollama.AsyncClient``, raw ``httpx.AsyncClient`` and raw ``aiohttp.ClientSession``:

* ``generate``: non-streamed ``/api/generate`` against an instant server (1 token, no latency)
  at concurrency 1, 8 and 64: requests/s and client CPU µs per request (``time.process_time``
  of this process). Two more rows isolate the client's own levers: ``ollama_async[httpx]``
  (its HTTP pool switched off) and ``ollama_async[adaptive]`` (default in-flight limits instead
  of ``concurrency=N``);
* ``stream``: 4 concurrent 2,000-token streams (no latency): chunks decoded per second;
* ``embed``: ``/api/embed`` of 256 texts x 768 dims, 2 at a time, each ending in a float32
  numpy array: vectors/s (stream and embed also show ``ollama_async[httpx]``);
* ``latency``: p50/p99 of 8-token generates (1 ms per token) at concurrency 8, and what each
  client adds over raw aiohttp;
* ``batch``: saturation and memory from ``benchmarks/bench_batch.py`` (another module's
  benchmark), run when that file is there; it is expected to take ``--quick`` and to write
  ``benchmarks/results/batch.json``.

Each number is the median of several rounds; the clients take turns within a round (the
order rotates), so a noisy neighbour on the machine hurts all of them alike. The server's own
CPU use is recorded next to every measurement: a server near 1.0 core would be the bottleneck.

Writes ``results/latest.json``, ``results/latest.md`` and ``results/*.png`` (``--out DIR``
elsewhere). ``--quick`` is a short smoke run that writes to ``results/tmp/`` (git-ignored), so it
never replaces the published numbers; ``--only generate,stream`` picks scenarios.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _clients import MAIN, VARIANTS, Adapter, OllamaAsyncHttpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SCENARIOS = ("generate", "stream", "embed", "latency", "batch")

MODELS = {
    "instant": "instant:slots=256,tokens=1",
    "long": "long:slots=64,tokens=2000",
    "emb": "emb:kind=embed,dim=768",
    "lat": "lat:slots=64,tokens=8,token_ms=1",
}
EMBED_TEXTS = [f"benchmark text number {i} for the embedding model" for i in range(256)]


# -- environment ---------------------------------------------------------------------------------


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    args = [sys.executable, "-m", "ollama_async.testing", "--host", "127.0.0.1", "--port", "0"]
    for spec in MODELS.values():
        args += ["--model", spec]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    return proc, "http://" + line.split("http://", 1)[1].split()[0]


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("ollama-async", "ollama", "httpx", "httpcore", "aiohttp", "pydantic", "pydantic-core", "orjson",
                "numpy", "anyio"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": versions,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


# -- measuring -------------------------------------------------------------------------------------


async def measure(
    op: Callable[[], Awaitable[int]], concurrency: int, seconds: float, server: psutil.Process,
    latencies: list[float] | None = None,
) -> dict[str, float]:
    """Run ``op`` from ``concurrency`` workers for ``seconds``; ``op`` returns items done."""
    gc.collect()
    items = 0
    deadline = 0.0

    async def worker() -> None:
        nonlocal items
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            done = await op()  # not `items += await op()`: that reads `items` before the await
            items += done
            if latencies is not None:
                latencies.append(time.perf_counter() - start)

    server_before = sum(server.cpu_times()[:2])
    cpu_before = time.process_time()
    wall_before = time.perf_counter()
    deadline = wall_before + seconds
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - wall_before
    cpu = time.process_time() - cpu_before
    server_cpu = sum(server.cpu_times()[:2]) - server_before
    return {
        "items": items,
        "wall_s": wall,
        "rate": items / wall,
        "cpu_us_per_item": cpu / items * 1e6 if items else float("nan"),
        "client_cores": cpu / wall,
        "server_cores": server_cpu / wall,
    }


def _median(rounds: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def summarize(rounds: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "rate": _median(rounds, "rate"),
        "cpu_us_per_item": _median(rounds, "cpu_us_per_item"),
        "server_cores": _median(rounds, "server_cores"),
        "client_cores": _median(rounds, "client_cores"),
        "rounds": [{k: round(v, 3) for k, v in r.items()} for r in rounds],
    }


def _rotated(classes: list[type[Adapter]], shift: int) -> list[type[Adapter]]:
    shift %= len(classes)
    return classes[shift:] + classes[:shift]


async def _with_client(cls: type[Adapter], url: str, concurrency: int, body: Callable[[Adapter], Awaitable[Any]]) -> Any:
    adapter = cls(url, concurrency)
    await adapter.start()
    try:
        return await body(adapter)
    finally:
        await adapter.close()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- scenarios ---------------------------------------------------------------------------------------


async def scenario_generate(url: str, server: psutil.Process, cfg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    classes = MAIN + VARIANTS
    for concurrency in cfg["concurrency"]:
        rounds: dict[str, list[dict[str, float]]] = {c.name: [] for c in classes}
        for r in range(cfg["rounds"]):
            for cls in _rotated(classes, r):
                if cls.name == "ollama_async[adaptive]" and concurrency != max(cfg["concurrency"]):
                    continue

                async def body(a: Adapter, concurrency: int = concurrency) -> dict[str, float]:
                    async def op() -> int:
                        await a.generate("instant", "why is the sky blue?")
                        return 1

                    await measure(op, concurrency, cfg["warmup"], server)
                    return await measure(op, concurrency, cfg["seconds"], server)

                result = await _with_client(cls, url, concurrency, body)
                rounds[cls.name].append(result)
                log(f"generate c={concurrency:<3} {cls.name:24s} {result['rate']:9.0f} req/s "
                    f"{result['cpu_us_per_item']:7.0f} µs/req  server {result['server_cores']:.2f} cores")
        out[f"c{concurrency}"] = {name: summarize(rs) for name, rs in rounds.items() if rs}
    return out


async def scenario_stream(url: str, server: psutil.Process, cfg: dict[str, Any]) -> dict[str, Any]:
    classes = [*MAIN, OllamaAsyncHttpx]
    rounds: dict[str, list[dict[str, float]]] = {c.name: [] for c in classes}
    for r in range(cfg["rounds"]):
        for cls in _rotated(classes, r):
            async def body(a: Adapter) -> dict[str, float]:
                async def op() -> int:
                    return await a.stream("long", "tell me a long story")

                await op()
                return await measure(op, cfg["streams"], cfg["seconds"], server)

            result = await _with_client(cls, url, cfg["streams"], body)
            rounds[cls.name].append(result)
            log(f"stream {cls.name:24s} {result['rate']:9.0f} chunks/s {result['cpu_us_per_item']:6.2f} µs/chunk "
                f"server {result['server_cores']:.2f} cores")
    return {"streams": cfg["streams"], "tokens": 2000, "clients": {n: summarize(rs) for n, rs in rounds.items()}}


async def scenario_embed(url: str, server: psutil.Process, cfg: dict[str, Any]) -> dict[str, Any]:
    classes = [*MAIN, OllamaAsyncHttpx]
    rounds: dict[str, list[dict[str, float]]] = {c.name: [] for c in classes}
    texts = EMBED_TEXTS
    for r in range(cfg["rounds"]):
        for cls in _rotated(classes, r):
            async def body(a: Adapter) -> dict[str, float]:
                async def op() -> int:
                    array = await a.embed("emb", texts)
                    assert array.shape == (len(texts), 768) and str(array.dtype) == "float32"
                    return len(texts)

                await op()
                return await measure(op, cfg["embed_concurrency"], cfg["seconds"], server)

            result = await _with_client(cls, url, cfg["embed_concurrency"], body)
            rounds[cls.name].append(result)
            log(f"embed {cls.name:24s} {result['rate']:9.0f} vectors/s "
                f"{result['cpu_us_per_item'] * len(texts) / 1e3:6.2f} ms/request server {result['server_cores']:.2f} cores")
    return {
        "inputs_per_request": len(texts), "dim": 768, "concurrency": cfg["embed_concurrency"],
        "clients": {n: summarize(rs) for n, rs in rounds.items()},
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def scenario_latency(url: str, server: psutil.Process, cfg: dict[str, Any]) -> dict[str, Any]:
    concurrency = 8
    rounds: dict[str, list[dict[str, float]]] = {c.name: [] for c in MAIN}
    for r in range(cfg["rounds"]):
        for cls in _rotated(MAIN, r):
            async def body(a: Adapter) -> dict[str, float]:
                async def op() -> int:
                    await a.generate("lat", "a short answer please")
                    return 1

                await measure(op, concurrency, cfg["warmup"], server)
                lat: list[float] = []
                result = await measure(op, concurrency, cfg["seconds"], server, latencies=lat)
                result["p50_ms"] = _percentile(lat, 0.50) * 1e3
                result["p99_ms"] = _percentile(lat, 0.99) * 1e3
                return result

            result = await _with_client(cls, url, concurrency, body)
            rounds[cls.name].append(result)
            log(f"latency {cls.name:24s} p50 {result['p50_ms']:6.2f} ms p99 {result['p99_ms']:6.2f} ms")
    clients = {}
    for name, rs in rounds.items():
        clients[name] = {**summarize(rs), "p50_ms": _median(rs, "p50_ms"), "p99_ms": _median(rs, "p99_ms")}
    base = clients["aiohttp"]
    for entry in clients.values():
        entry["p50_added_ms"] = entry["p50_ms"] - base["p50_ms"]
        entry["p99_added_ms"] = entry["p99_ms"] - base["p99_ms"]
    return {"concurrency": concurrency, "model": MODELS["lat"], "clients": clients}


def scenario_batch(quick: bool) -> dict[str, Any]:
    script = ROOT / "benchmarks" / "bench_batch.py"
    if not script.exists():
        return {"skipped": "benchmarks/bench_batch.py is not there yet"}
    args = [sys.executable, str(script)] + (["--quick"] if quick else [])
    log(f"batch: python {' '.join(args[1:])} (a few minutes)")
    started = time.time()
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    result: dict[str, Any] = {
        "command": " ".join(["python", str(script.relative_to(ROOT)), *args[2:]]), "exit_code": proc.returncode,
    }
    if proc.returncode != 0:
        result["error"] = (proc.stderr or proc.stdout)[-2000:]
    # it prints its markdown table last; in full mode it also writes results/batch.json
    lines = proc.stdout.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if first is not None:
        result["markdown"] = "\n".join(lines[first:])
    data = RESULTS / "batch.json"
    if data.exists() and data.stat().st_mtime >= started:
        try:
            result["results"] = json.loads(data.read_text())
        except ValueError as exc:
            result["error"] = f"batch.json is not JSON: {exc}"
    return result


# -- ratios and targets -----------------------------------------------------------------------------


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    gen = results.get("generate")
    if gen:
        for key, clients in gen.items():
            ours = clients["ollama_async"]
            out[f"generate_{key}"] = {
                "vs_official": ours["rate"] / clients["ollama"]["rate"],
                "vs_aiohttp": ours["rate"] / clients["aiohttp"]["rate"],
                "cpu_vs_official": ours["cpu_us_per_item"] / clients["ollama"]["cpu_us_per_item"],
                "cpu_vs_aiohttp": ours["cpu_us_per_item"] / clients["aiohttp"]["cpu_us_per_item"],
            }
    for name in ("stream", "embed"):
        block = results.get(name)
        if block:
            clients = block["clients"]
            ours = clients["ollama_async"]
            out[name] = {
                "vs_official": ours["rate"] / clients["ollama"]["rate"],
                "vs_aiohttp": ours["rate"] / clients["aiohttp"]["rate"],
            }
    return out


def targets(results: dict[str, Any], rat: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []

    def add(name: str, value: float | None, goal: float) -> None:
        if value is not None:
            rows.append({"target": name, "measured": round(value, 2), "goal": goal, "met": value >= goal})

    top = f"generate_c{max(int(k[1:]) for k in results['generate'])}" if results.get("generate") else None
    if top and top in rat:
        add(f"non-stream generate {top[9:]}: x official", rat[top]["vs_official"], 4.0)
        add(f"non-stream generate {top[9:]}: x raw aiohttp", rat[top]["vs_aiohttp"], 0.75)
    if "stream" in rat:
        add("streaming chunks/s: x official", rat["stream"]["vs_official"], 3.0)
    if "embed" in rat:
        add("embed vectors/s: x official", rat["embed"]["vs_official"], 4.0)
    return rows


# -- main ------------------------------------------------------------------------------------------


def config(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        cfg: dict[str, Any] = {"rounds": 1, "seconds": 0.4, "warmup": 0.1, "concurrency": [1, 8, 64], "streams": 4,
                               "embed_concurrency": 2}
    else:
        cfg = {"rounds": 5, "seconds": 2.0, "warmup": 0.3, "concurrency": [1, 8, 64], "streams": 4,
               "embed_concurrency": 2}
    if args.rounds:
        cfg["rounds"] = args.rounds
    if args.seconds:
        cfg["seconds"] = args.seconds
    if args.concurrency:
        cfg["concurrency"] = [int(c) for c in args.concurrency.split(",")]
    return cfg


async def run_async(selected: list[str], cfg: dict[str, Any], url: str, server: psutil.Process) -> dict[str, Any]:
    results: dict[str, Any] = {}
    runners = {"generate": scenario_generate, "stream": scenario_stream, "embed": scenario_embed,
               "latency": scenario_latency}
    for name in selected:
        if name in runners:
            results[name] = await runners[name](url, server, cfg)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one short round per scenario (smoke test)")
    p.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {','.join(SCENARIOS)}")
    p.add_argument("--out", type=Path, default=None,
                   help="results directory (default benchmarks/results; with --quick benchmarks/results/tmp)")
    p.add_argument("--rounds", type=int, default=0, help="rounds per measurement (default 5, quick 1)")
    p.add_argument("--seconds", type=float, default=0.0, help="seconds per measurement (default 2, quick 0.4)")
    p.add_argument("--concurrency", default="", help="generate concurrencies (default 1,8,64)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = p.parse_args(argv)
    selected = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(selected) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    cfg = config(args)
    out_dir: Path = args.out or (RESULTS / "tmp" if args.quick else RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)

    meta = machine()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the simulator too
    proc, url = start_simulator()
    try:
        server = psutil.Process(proc.pid)
        results = asyncio.run(run_async(selected, cfg, url, server))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    if "batch" in selected:
        results["batch"] = scenario_batch(args.quick)
    meta["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    rat = ratios(results)
    doc = {
        "command": "python benchmarks/run.py" + (" --quick" if args.quick else ""),
        "mode": "quick" if args.quick else "full",
        "config": cfg,
        "machine": meta,
        "simulator_models": MODELS,
        "results": results,
        "ratios": rat,
        "targets": targets(results, rat),
    }
    (out_dir / "latest.json").write_text(json.dumps(doc, indent=2, default=float) + "\n")
    from _report import markdown, plots

    (out_dir / "latest.md").write_text(markdown(doc))
    if not args.no_plots:
        plots(doc, out_dir)
    print((out_dir / "latest.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
