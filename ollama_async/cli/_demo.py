"""``ollama-async demo``: the README's one command that shows what the client is for.

Without ``--host`` (and without ``OLLAMA_HOST``) it starts the bundled simulator in-process -- a
4-slot generate model with a small per-token latency and an embed model -- so it runs anywhere
in seconds. With a host it does the same against that server and its models, after checking
they are there (and saying which ``ollama pull`` to run if not). The three steps:

1. a batch of generates through ``client.batch.generate``, with live progress and throughput;
2. one streamed generate, printed token by token;
3. a bulk embed through ``client.batch.embed``, with progress and texts/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import anyio

from .. import AsyncClient
from .._errors import OllamaConnectionError, OllamaTimeoutError
from .._limits import LimitStats
from ._hosts import add_host_option, hosts_of
from ._jobs import EXIT_FAILED_ITEMS, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, Fatal, check_server
from ._progress import JobProgress

__all__ = ["add_arguments", "describe_limiter", "run_demo"]

TOPICS = (
    "the sea", "a lighthouse", "bread", "volcanoes", "the moon", "bees", "glaciers", "jazz", "maps",
    "rivers", "owls", "clocks", "deserts", "tea", "bridges", "comets", "forests", "violins", "salt", "trains",
)
STREAM_PROMPT = "Explain in two sentences why the sky is blue."
SIM_SLOTS = 4


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``demo`` subcommand's flags."""
    add_host_option(p, "run against this server (default: OLLAMA_HOST; without either, the built-in simulator)")
    p.add_argument("-m", "--model", default="llama3.2", help="generate model (default llama3.2)")
    p.add_argument("--embed-model", default="nomic-embed-text", help="embed model (default nomic-embed-text)")
    p.add_argument("--generates", type=int, default=200, metavar="N", help="prompts in the batch (default 200)")
    p.add_argument("--embeds", type=int, default=5000, metavar="N", help="texts to embed (default 5000)")
    p.add_argument("--num-predict", type=int, default=32, help="tokens per generate (default 32)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_demo)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _prompts(n: int) -> Any:
    for i in range(n):
        yield f"Write one sentence about {TOPICS[i % len(TOPICS)]} (#{i})."


def _texts(n: int) -> Any:
    for i in range(n):
        yield f"Document {i}: notes on {TOPICS[i % len(TOPICS)]} and {TOPICS[(i * 7 + 3) % len(TOPICS)]}."


async def _batch_generate(client: AsyncClient, args: argparse.Namespace) -> int:
    _say(f"1) batch generate: {args.generates} prompts through client.batch.generate(...)")
    progress = JobProgress("generate", total=args.generates, quiet=args.quiet, log_interval=0, tokens=True)
    failed: list[BaseException] = []
    started = time.perf_counter()
    try:
        run = client.batch.generate(args.model, _prompts(args.generates), options={"num_predict": args.num_predict})
        async for item in run:
            if item.error is None:
                progress.update(ok=1, tokens=item.unwrap().eval_count or 0)
            else:
                failed.append(item.error)
                progress.update(failed=1)
    finally:
        progress.close(summary=False)
    wall = time.perf_counter() - started
    ok = args.generates - len(failed)
    _say(f"   {ok} responses in {wall:.2f} s: {ok / wall:.1f} requests/s, {progress.tokens / wall:.0f} tokens/s")
    _say(f"   {_limiter_line(client, args.model)}")
    if failed:
        _say(f"   {len(failed)} failed, e.g. {type(failed[0]).__name__}: {failed[0]}")
    return len(failed)


def _limiter_line(client: AsyncClient, model: str) -> str:
    """How the client's per-model limiter bounded the requests in flight."""
    stats = client.limits.stats().get(model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest")
    return "in flight: ?" if stats is None else describe_limiter(stats)


def describe_limiter(stats: LimitStats) -> str:
    """One model's limiter in words; explains an adaptive peak above the limit (it looks like a bug)."""
    line = (f"client limiter: {stats.mode}, limit {stats.limit}, peak {stats.max_in_flight} in flight, "
            f"mean wait for a slot {stats.wait_mean * 1000:.1f} ms")
    if stats.mode == "adaptive" and stats.max_in_flight > stats.limit:
        line += (f"\n   (adaptive mode tried up to {stats.max_in_flight} in flight, saw the extra requests queue"
                 f" inside the server and settled on {stats.limit}" + (f": {stats.reason})" if stats.reason else ")"))
    return line


async def _stream(client: AsyncClient, args: argparse.Namespace) -> None:
    _say(f"\n2) streamed generate: {STREAM_PROMPT!r}")
    sys.stdout.write("   ")
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    stream = await client.generate(args.model, STREAM_PROMPT, stream=True, options={"num_predict": args.num_predict})
    async for chunk in stream:
        if first is None:
            first = time.perf_counter() - started
        if chunk.response:
            sys.stdout.write(chunk.response.replace("\n", "\n   "))
            sys.stdout.flush()
        if chunk.done:
            tokens = chunk.eval_count or 0
    wall = time.perf_counter() - started
    _say(f"\n   {tokens} tokens in {wall:.2f} s, first token after {(first or 0) * 1000:.0f} ms")


async def _bulk_embed(client: AsyncClient, args: argparse.Namespace) -> int:
    _say(f"\n3) bulk embed: {args.embeds} texts through client.batch.embed(..., batch_size=64)")
    progress = JobProgress("embed", total=args.embeds, quiet=args.quiet, log_interval=0)
    failed = 0
    dim = 0
    started = time.perf_counter()
    try:
        run = client.batch.embed(args.embed_model, _texts(args.embeds), batch_size=64)
        async for item in run:
            if item.error is None:
                dim = len(item.unwrap())
                progress.update(ok=1)
            else:
                failed += 1
                progress.update(failed=1)
    finally:
        progress.close(summary=False)
    wall = time.perf_counter() - started
    ok = args.embeds - failed
    _say(f"   {ok} vectors of {dim} dimensions in {wall:.2f} s: {ok / wall:.0f} texts/s")
    _say(f"   {_limiter_line(client, args.embed_model)}")
    return failed


async def _demo(args: argparse.Namespace, host: str | list[str], where: str) -> int:
    async with AsyncClient(host) as client:
        await check_server(client, args.model, "completion")
        await check_server(client, args.embed_model, "embedding")
        _say(f"ollama-async demo against {where} ({client.base_url})\n")
        started = time.perf_counter()
        try:
            failed = await _batch_generate(client, args)
            await _stream(client, args)
            failed += await _bulk_embed(client, args)
        except (OllamaConnectionError, OllamaTimeoutError) as exc:
            raise Fatal(EXIT_UNREACHABLE, f"lost the Ollama server at {client.base_url}: {exc}") from None
        _say(f"\ndone in {time.perf_counter() - started:.1f} s"
             + (f", {failed} requests failed" if failed else ""))
        return EXIT_FAILED_ITEMS if failed else EXIT_OK


def run_demo(args: argparse.Namespace) -> int:
    """Run the three steps against ``--host``/``OLLAMA_HOST`` or a fresh in-process simulator."""
    for name in ("generates", "embeds", "num_predict"):
        if getattr(args, name) < 1:
            raise Fatal(EXIT_USAGE, f"--{name.replace('_', '-')} must be >= 1")
    host = hosts_of(args.host) or os.environ.get("OLLAMA_HOST") or None
    if host is not None:
        return anyio.run(_demo, args, host, "your server")
    from ..testing import ModelSpec, Simulator

    models = [
        ModelSpec(name=args.model, kind="generate", slots=SIM_SLOTS, tokens=args.num_predict, token_ms=2.0,
                  prompt_ms=2.0),
        ModelSpec(name=args.embed_model, kind="embed", dim=768, embed_ms=0.05),
    ]
    with Simulator(models=models, seed=0) as sim:
        where = f"the built-in simulator ({SIM_SLOTS}-slot {args.model}, 2 ms/token; {args.embed_model}, 768 dims)"
        return anyio.run(_demo, args, sim.url, where)
