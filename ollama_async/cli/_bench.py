"""``ollama-async bench``: find the concurrency at which a server stops getting faster.

Ollama decodes ``OLLAMA_NUM_PARALLEL`` requests per model at once and queues the rest; the
setting is visible nowhere in the API. So the bench measures it: at each concurrency level
(1, 2, 4, ... by default) it keeps exactly that many generate requests in flight for a number of
requests, and records throughput (requests/s, tokens/s), client latency (p50/p95) and the time
each request waited for a slot *inside the server* -- ``total_duration - load_duration -
prompt_eval_duration - eval_duration`` from the reply.

The saturation point is the lowest level after which doubling the concurrency adds less than
``--threshold`` (10%) throughput. It is confirmed by the server-side wait: below it requests
barely wait, above it the wait grows with every level while throughput stays flat. The bench
stops after two levels past saturation (unless ``--all-levels``), prints a table and writes a
PNG plot of both curves.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio

from .. import AsyncClient
from .._errors import OllamaConnectionError, OllamaError, OllamaTimeoutError, ResponseError
from .._types import GenerateResponse
from ._hosts import add_host_option, host_lines, hosts_of
from ._jobs import EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, Fatal, check_server
from ._outputs import OutputError, check_writable

__all__ = ["Level", "add_arguments", "find_saturation", "run_bench"]

DEFAULT_PROMPT = "Write a short paragraph about the sea."


@dataclass
class Level:
    """The measurements at one concurrency level. Times in seconds."""

    concurrency: int
    requests: int
    errors: int = 0
    wall: float = 0.0
    tokens: int = 0
    latencies: list[float] = field(default_factory=list, repr=False)
    queue_waits: list[float] = field(default_factory=list, repr=False)

    @property
    def requests_per_second(self) -> float:
        return (self.requests - self.errors) / self.wall if self.wall > 0 else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.wall if self.wall > 0 else 0.0

    @property
    def throughput(self) -> float:
        """Tokens/s when the server reports eval counts, else requests/s."""
        return self.tokens_per_second if self.tokens else self.requests_per_second

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return math.nan
        data = sorted(self.latencies)
        return data[min(len(data) - 1, max(0, math.ceil(q * len(data)) - 1))]

    @property
    def queue_mean(self) -> float:
        return sum(self.queue_waits) / len(self.queue_waits) if self.queue_waits else math.nan

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["latencies"], data["queue_waits"]
        data.update(requests_per_second=self.requests_per_second, tokens_per_second=self.tokens_per_second,
                    p50=self.percentile(0.5), p95=self.percentile(0.95), queue_mean=self.queue_mean)
        return data


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``bench`` subcommand's flags."""
    p.add_argument("-m", "--model", required=True, help="a generate model on the server")
    add_host_option(p, "Ollama server (default: OLLAMA_HOST, else 127.0.0.1:11434)")
    p.add_argument("--levels", default=None, metavar="1,2,4,...",
                   help="concurrency levels to try (default: powers of two up to --max-concurrency)")
    p.add_argument("--max-concurrency", type=int, default=32, help="highest level by default (32)")
    p.add_argument("--requests", type=int, default=None, metavar="N",
                   help="requests per level (default: max(8, 4 x concurrency))")
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help="the prompt every request sends")
    p.add_argument("--num-predict", type=int, default=32, help="tokens to generate per request (default 32)")
    p.add_argument("--threshold", type=float, default=0.10,
                   help="a doubling that adds less than this fraction of throughput counts as saturated (0.10)")
    p.add_argument("--all-levels", action="store_true", help="run every level, even past saturation")
    p.add_argument("--plot", default="ollama-async-bench.png", metavar="PATH",
                   help="PNG plot to write (default ollama-async-bench.png; '' for none)")
    p.add_argument("--json", dest="json_out", default=None, metavar="PATH", help="also write the numbers as JSON")
    p.set_defaults(func=run_bench)


def _levels(args: argparse.Namespace) -> list[int]:
    if args.levels:
        try:
            levels = sorted({int(x) for x in args.levels.split(",") if x.strip()})
        except ValueError:
            raise Fatal(EXIT_USAGE, f"--levels must be comma-separated integers, not {args.levels!r}") from None
        if not levels or levels[0] < 1:
            raise Fatal(EXIT_USAGE, "--levels must be integers >= 1")
        return levels
    if args.max_concurrency < 1:
        raise Fatal(EXIT_USAGE, "--max-concurrency must be >= 1")
    levels, c = [], 1
    while c <= args.max_concurrency:
        levels.append(c)
        c *= 2
    return levels


def _server_wait(resp: GenerateResponse) -> float | None:
    """Seconds the request waited for a slot inside the server (the reply's ``queue_duration``)."""
    queue = resp.queue_duration
    return None if queue is None else queue / 1e9


async def _measure(client: AsyncClient, args: argparse.Namespace, concurrency: int) -> Level:
    n = args.requests or max(8, 4 * concurrency)
    level = Level(concurrency=concurrency, requests=n)
    next_request = 0
    first_error: list[BaseException] = []
    options = {"num_predict": args.num_predict}

    fatal: list[Fatal] = []

    async def worker(scope: anyio.CancelScope) -> None:
        nonlocal next_request
        while next_request < n:
            next_request += 1
            started = time.perf_counter()
            try:
                resp = await client.generate(args.model, args.prompt, options=options)
            except (OllamaConnectionError, OllamaTimeoutError) as exc:
                fatal.append(Fatal(EXIT_UNREACHABLE, f"lost the Ollama server at {client.base_url}: {exc}"))
                scope.cancel()
                return
            except OllamaError as exc:
                level.errors += 1
                first_error.append(exc)
                continue
            level.latencies.append(time.perf_counter() - started)
            level.tokens += resp.eval_count or 0
            wait = _server_wait(resp)
            if wait is not None:
                level.queue_waits.append(wait)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker, tg.cancel_scope)
    if fatal:
        raise fatal[0]
    level.wall = time.perf_counter() - started
    if level.errors == n:
        exc = first_error[0]
        message = exc.error if isinstance(exc, ResponseError) else str(exc)
        raise Fatal(EXIT_UNREACHABLE, f"every request at concurrency {concurrency} failed: {message}")
    return level


def find_saturation(levels: list[Level], threshold: float) -> int | None:
    """The lowest concurrency after which more in flight no longer raises throughput.

    A level counts as saturated when the next one adds less than ``threshold`` throughput while
    its requests got slower (p50 latency up by more than ``threshold``) or spent a noticeable
    part of their time queued in the server (``queue_duration``). Without latency data the
    throughput rule alone decides.
    """
    flat_at: int | None = None
    for prev, cur in itertools.pairwise(levels):
        if not (prev.throughput > 0 and cur.throughput < prev.throughput * (1 + threshold)):
            continue
        if flat_at is None:
            flat_at = prev.concurrency
        slower = cur.percentile(0.5) > prev.percentile(0.5) * (1 + threshold)
        queued = cur.queue_mean > threshold * cur.percentile(0.5)
        if slower or queued:
            return prev.concurrency
    return flat_at


def _stalled(levels: list[Level], threshold: float) -> bool:
    """Two levels in a row without a gain: no point in going higher."""
    if len(levels) < 3:
        return False
    a, b, c = levels[-3:]
    return b.throughput < a.throughput * (1 + threshold) and c.throughput < b.throughput * (1 + threshold)


async def _bench(args: argparse.Namespace, levels: list[int], results: list[Level]) -> None:
    """Measure each level into ``results`` (kept by the caller, so Ctrl-C loses none of them)."""
    # The client-side bound must not cap the levels (OLLAMA_NUM_PARALLEL may be set here).
    async with AsyncClient(hosts_of(args.host), concurrency=max(levels)) as client:
        await check_server(client, args.model, "completion")
        print(f"benchmarking {args.model} at {client.base_url}: levels {', '.join(map(str, levels))}",
              file=sys.stderr, flush=True)
        await client.generate(args.model, args.prompt, options={"num_predict": 1})  # load the model first
        for c in levels:
            level = await _measure(client, args, c)
            results.append(level)
            print(f"  concurrency {c:>3}: {level.requests_per_second:8.2f} req/s, {level.tokens_per_second:9.1f} tok/s, "
                  f"p50 {level.percentile(0.5) * 1000:8.1f} ms, server wait {level.queue_mean * 1000:8.1f} ms",
                  file=sys.stderr, flush=True)
            if not args.all_levels and _stalled(results, args.threshold):
                break
        for line in host_lines(client):  # several hosts: how the work was shared
            print(line, file=sys.stderr, flush=True)


def _print_table(levels: list[Level], saturation: int | None) -> None:
    headers = ("concurrency", "requests", "errors", "req/s", "tokens/s", "p50 ms", "p95 ms", "server wait ms")
    rows = [
        (str(x.concurrency) + (" *" if x.concurrency == saturation else ""), str(x.requests), str(x.errors),
         f"{x.requests_per_second:.2f}", f"{x.tokens_per_second:.1f}", f"{x.percentile(0.5) * 1000:.1f}",
         f"{x.percentile(0.95) * 1000:.1f}", f"{x.queue_mean * 1000:.1f}")
        for x in levels
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def _plot(levels: list[Level], saturation: int | None, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [x.concurrency for x in levels]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    use_tokens = any(x.tokens for x in levels)
    left.plot(xs, [x.throughput for x in levels], "o-", color="tab:blue")
    left.set_ylabel("tokens/s" if use_tokens else "requests/s")
    left.set_title("throughput")
    right.plot(xs, [x.percentile(0.5) * 1000 for x in levels], "o-", label="latency p50")
    right.plot(xs, [x.percentile(0.95) * 1000 for x in levels], "o--", label="latency p95")
    right.plot(xs, [x.queue_mean * 1000 for x in levels], "s-", label="server-side wait (mean)")
    right.set_ylabel("ms")
    right.set_title("latency")
    right.legend()
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("requests in flight")
        ax.grid(True, alpha=0.3)
        if saturation is not None:
            ax.axvline(saturation, color="tab:red", linestyle=":", label="saturation")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_bench(args: argparse.Namespace) -> int:
    """Run the bench; print the table and the verdict; write the plot (and JSON)."""
    if args.requests is not None and args.requests < 1:
        raise Fatal(EXIT_USAGE, "--requests must be >= 1")
    if args.num_predict < 1:
        raise Fatal(EXIT_USAGE, "--num-predict must be >= 1")
    levels = _levels(args)
    for path in (args.json_out, args.plot):
        if path:
            try:
                check_writable(path)
            except OutputError as exc:
                raise Fatal(EXIT_USAGE, str(exc)) from None
    results: list[Level] = []
    try:
        anyio.run(_bench, args, levels, results)
    except KeyboardInterrupt:
        if results:
            print(f"interrupted: the {len(results)} levels measured so far", file=sys.stderr, flush=True)
            _print_table(results, None)
        raise
    saturation = find_saturation(results, args.threshold)
    _print_table(results, saturation)
    if saturation is None:
        print(f"\nno saturation up to concurrency {results[-1].concurrency}: the server kept getting faster; "
              "try a higher --max-concurrency")
    else:
        best = next(x for x in results if x.concurrency == saturation)
        print(f"\nsaturates at concurrency {saturation} ({best.throughput:.1f} "
              f"{'tokens' if best.tokens else 'requests'}/s): the server's effective parallelism. "
              f"Run batches with --concurrency {saturation} (or OLLAMA_NUM_PARALLEL={saturation} on the server "
              "if it is lower than you expected).")
    if args.json_out:
        try:
            with open(args.json_out, "w", encoding="utf-8") as f:
                json.dump({"model": args.model, "saturation": saturation,
                           "levels": [x.as_dict() for x in results]}, f, indent=2)
        except OSError as exc:
            raise Fatal(EXIT_USAGE, f"cannot write {args.json_out}: {exc.strerror or exc}") from None
    if args.plot:
        try:
            _plot(results, saturation, args.plot, f"ollama-async bench: {args.model}")
        except ImportError:
            print("no plot: matplotlib is not installed (pip install 'ollama-async[plot]')", file=sys.stderr)
        except OSError as exc:
            raise Fatal(EXIT_USAGE, f"cannot write {args.plot}: {exc.strerror or exc}") from None
        else:
            print(f"plot written to {args.plot}")
    return EXIT_OK
