"""``python -m ollama_async.testing``: run the simulator as a process.

``--model NAME[:key=value,...]`` may repeat; a name may itself contain ``:`` (a tag), so the
options start at the first ``:``-separated part that contains ``=``. Prints one line when ready
and exits 0 on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from ._faults import RANDOM_KINDS
from ._handlers import App
from ._models import ModelSpec, default_models, spec_from_options
from ._registry import SIMULATED_VERSION
from ._server import DEFAULT_RANDOM_KINDS, serve

READY_PREFIX = "ollama-async simulator listening on"


def parse_model(text: str) -> ModelSpec:
    """``llama3.2:1b:slots=4,token_ms=5`` -> ``ModelSpec(name="llama3.2:1b", slots=4, token_ms=5)``."""
    parts = text.split(":")
    name_parts: list[str] = []
    opt_parts: list[str] = []
    for i, part in enumerate(parts):
        if i > 0 and "=" in part:
            opt_parts = parts[i:]
            break
        name_parts.append(part)
    name = ":".join(name_parts)
    options: dict[str, str] = {}
    for item in ":".join(opt_parts).split(","):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"model option {item!r} is not key=value")
        options[key.strip()] = value.strip()
    return spec_from_options(name, options)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ollama_async.testing",
        description="Run an Ollama-compatible simulator (deterministic models, scripted latency and faults).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=11434, help="0 picks a free port")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME[:key=value,...]",
        help="keys: profile (independent, cpu, gpu: batched-decoding timings, other keys override), kind, "
        "slots, load_ms, prompt_ms, prompt_token_ms, token_ms, contention, tokens, dim, embed_ms, "
        "context_length, family, parameter_size, quantization_level, capabilities (a+b+c)",
    )
    p.add_argument("--max-queue", type=int, default=512, help="OLLAMA_MAX_QUEUE (default 512)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-alive", type=float, default=300.0, help="default keep_alive in seconds")
    p.add_argument(
        "--fault-rate", type=float, default=0.0, help="probability of a random fault per inference request"
    )
    p.add_argument(
        "--fault-kinds",
        default=",".join(DEFAULT_RANDOM_KINDS),
        help=f"comma-separated random fault kinds (any of {', '.join(RANDOM_KINDS)}, status_<code>)",
    )
    p.add_argument(
        "--version", dest="server_version", default=SIMULATED_VERSION, help="version /api/version reports"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        specs = [parse_model(m) for m in args.model] if args.model else default_models()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = App(
        specs,
        max_queue=args.max_queue,
        seed=args.seed,
        keep_alive_s=args.keep_alive,
        version=args.server_version,
    )
    if args.fault_rate > 0:
        kinds = [k.strip() for k in args.fault_kinds.split(",") if k.strip()]
        try:
            app.faults.set_random(args.fault_rate, kinds, args.seed, None)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def ready(port: int) -> None:
            host = f"[{args.host}]" if ":" in args.host else args.host
            print(f"{READY_PREFIX} http://{host}:{port}", flush=True)

        await serve(app, args.host, args.port, ready, stop)

    try:
        asyncio.run(run())
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
