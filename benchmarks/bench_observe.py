"""What observability costs per request: ``python benchmarks/bench_observe.py [--quick]``.

Client CPU (``time.process_time()`` of this process; the simulator runs in its own) per
non-streamed generate against an instant server at concurrency 64, and per stream chunk (4
streams of 2,000 tokens), for each setting:

- ``off``: ``metrics=False``, no hook, logging off, OpenTelemetry not imported (nothing enabled);
- ``metrics``: the default (``response.metrics``, ``client.stats()``);
- ``metrics + hook``: the default and one hook appending to a list;
- ``off, otel imported``: ``opentelemetry`` imported but no provider set;
- ``metrics, otel imported``: the default, likewise;
- ``otel SDK``: tracer and meter providers of the OpenTelemetry SDK given to the client (spans go
  to an exporter that drops them, metrics to an in-memory reader).

The settings take turns within each of the rounds (median of rounds), in phases, since
OpenTelemetry cannot be un-imported. On a shared machine the end-to-end figures move by more than
the differences they measure, so the cost of the observer itself is also timed in isolation
(``timeit``, best of 7): what one request adds to the path — :meth:`Observer.start` and
:meth:`Observer.finished` with a decoded reply — for each setting. Results go to
``benchmarks/results/observe.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run

import ollama_async as oa

CONCURRENCY = 64


async def generate_cpu(url: str, n: int, kwargs: dict[str, Any]) -> float:
    """CPU µs per request for ``n`` generates at concurrency 64."""
    async with oa.AsyncClient(url, concurrency=CONCURRENCY, **kwargs) as client:
        async def worker(count: int) -> None:
            for _ in range(count):
                await client.generate("instant", "why is the sky blue?")

        await asyncio.gather(*(worker(4) for _ in range(CONCURRENCY)))  # warm up
        cpu = time.process_time()
        await asyncio.gather(*(worker(n // CONCURRENCY) for _ in range(CONCURRENCY)))
        return (time.process_time() - cpu) / (n // CONCURRENCY * CONCURRENCY) * 1e6


async def stream_cpu(url: str, kwargs: dict[str, Any]) -> float:
    """CPU µs per chunk of 4 concurrent 2,000-token streams."""
    async with oa.AsyncClient(url, concurrency=4, **kwargs) as client:
        async def one() -> int:
            n = 0
            async for _ in await client.generate("long", "tell me a story", stream=True):
                n += 1
            return n

        await one()
        cpu = time.process_time()
        chunks = sum(await asyncio.gather(*(one() for _ in range(4))))
        return (time.process_time() - cpu) / chunks * 1e6


def otel_sdk() -> dict[str, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(Drop()))
    return {"tracer_provider": tracer_provider, "meter_provider": MeterProvider(metric_readers=[InMemoryMetricReader()])}


def observer_cost(kwargs: dict[str, Any]) -> float:
    """µs one request spends in the observer (start + finished), without any I/O."""
    import timeit

    from ollama_async._observe import make_observer
    from ollama_async._transport import Call

    client = oa.AsyncClient("127.0.0.1:11434", **kwargs)
    observer = client._transport.observer
    transport = client._transport
    reply = oa.GenerateResponse.model_validate_json(
        b'{"model":"m","created_at":"2026-11-22T21:41:47Z","response":"hi","done":true,"done_reason":"stop",'
        b'"total_duration":127595341,"load_duration":940865,"prompt_eval_count":15,'
        b'"prompt_eval_duration":32784999,"eval_count":6,"eval_duration":83452000}'
    )
    call = Call("POST", "/api/generate", b"{}", model="m")
    assert make_observer  # the constructor path the client took

    def one() -> None:
        m = observer.start(transport, call, False)
        if m is not None:
            observer.finished(m, reply)

    number = 20000
    return min(timeit.repeat(one, number=number, repeat=7)) / number * 1e6


def phase(url: str, settings: dict[str, Callable[[], dict[str, Any]]], rounds: int, n: int) -> dict[str, Any]:
    """Medians over rounds of the end-to-end figures; the best of rounds for the observer alone."""
    got: dict[str, dict[str, list[float]]] = {name: {"request": [], "chunk": [], "observer": []} for name in settings}
    for r in range(rounds):
        names = list(settings)
        names = names[r % len(names):] + names[: r % len(names)]
        for name in names:
            kwargs = settings[name]()
            got[name]["observer"].append(observer_cost(kwargs))
            got[name]["request"].append(asyncio.run(generate_cpu(url, n, kwargs)))
            got[name]["chunk"].append(asyncio.run(stream_cpu(url, kwargs)))
    return {
        name: {k: (min(v) if k == "observer" else statistics.median(v)) for k, v in d.items()}
        for name, d in got.items()
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 round, fewer requests")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    rounds, n = (1, 640) if args.quick else (args.rounds, 6400)
    hook_seen: list[oa.RequestMetrics] = []

    def hook(m: oa.RequestMetrics) -> None:
        hook_seen.append(m)
        if len(hook_seen) > 1000:
            hook_seen.clear()

    proc, url = run.start_simulator()
    try:
        first = {
            "off": lambda: {"metrics": False},
            "metrics": lambda: {},
            "metrics + hook": lambda: {"on_request": hook},
        }
        results = phase(url, first, rounds, n)
        assert "opentelemetry" not in sys.modules
        import opentelemetry.metrics
        import opentelemetry.trace  # noqa: F401  (imported, no provider: "unconfigured")

        second = {
            "off, otel imported": lambda: {"metrics": False},
            "metrics, otel imported": lambda: {},
            "otel SDK": otel_sdk,
        }
        results.update(phase(url, second, rounds, n))
    finally:
        proc.terminate()
        proc.wait(10)
    base = results["off"]
    print(f"{'setting':<24} {'observer µs/req':>15} {'CPU µs/request':>15} {'vs off':>7} {'CPU µs/chunk':>13} "
          f"{'vs off':>7}")
    for name, row in results.items():
        print(f"{name:<24} {row['observer']:>15.2f} {row['request']:>15.1f} {row['request'] / base['request']:>6.2f}x "
              f"{row['chunk']:>13.2f} {row['chunk'] / base['chunk']:>6.2f}x")
    out = run.RESULTS / ("tmp" if args.quick else "") / "observe.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rounds": rounds, "requests": n, "machine": run.machine(), "results": results},
                              indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
