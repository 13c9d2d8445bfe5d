"""``python -m ollama_async.testing``: run the simulator as a process.

``--model NAME[:key=value,...]`` may repeat; a name may itself contain ``:`` (a tag), so the
options start at the first ``:``-separated part that contains ``=``. Prints one line when ready
and exits 0 on SIGINT/SIGTERM. A bad argument is one ``PROG: error: ...`` line (exit 2), as in
argparse; ``ollama-async serve-sim`` runs the same ``main`` under its own name.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from .._argparse import ArgumentParser
from ._faults import RANDOM_KINDS
from ._handlers import App
from ._models import ModelSpec, default_models, spec_from_options
from ._registry import SIMULATED_VERSION
from ._server import DEFAULT_RANDOM_KINDS, serve

READY_PREFIX = "ollama-async simulator listening on"
T = TypeVar("T")
DEFAULT_PROG = "python -m ollama_async.testing"


def _checked(convert: Callable[[str], T], ok: Callable[[T], bool], expected: str) -> Callable[[str], T]:
    """An argparse ``type=``: ``convert`` the text, refuse it unless ``ok``, naming what was ``expected``."""

    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {expected}, not {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {expected}, not {text!r}")
        return value

    return parse


_port = _checked(int, lambda v: 0 <= v <= 65535, "a port between 0 and 65535 (0 picks a free port)")
_non_negative_int = _checked(int, lambda v: v >= 0, "an integer >= 0")
_seconds = _checked(float, math.isfinite, "a finite number of seconds")
_rate = _checked(float, lambda v: 0.0 <= v <= 1.0, "a probability between 0 and 1")


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


def _parser(prog: str) -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=prog,
        description="Run an Ollama-compatible simulator (deterministic models, scripted latency and faults).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=11434, help="0 picks a free port")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME[:key=value,...]",
        help="keys: profile (independent, cpu, gpu: batched-decoding timings, other keys override), kind, "
        "slots, load_ms, prompt_ms, prompt_token_ms, token_ms, contention, tokens, dim, embed_ms, "
        "context_length, family, parameter_size, quantization_level, capabilities (a+b+c). Default: "
        "llama3.2 (4 slots, 20 ms prompt, 10 ms/token) and nomic-embed-text",
    )
    p.add_argument("--max-queue", type=_non_negative_int, default=512, help="OLLAMA_MAX_QUEUE (default 512)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-alive", type=_seconds, default=300.0, help="default keep_alive in seconds")
    p.add_argument(
        "--fault-rate", type=_rate, default=0.0, help="probability of a random fault per inference request"
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


def cli_default_models() -> list[ModelSpec]:
    """What ``serve-sim`` serves without ``--model``: timings like a small model on a GPU.

    (``Simulator()`` itself defaults to instant models, for tests; a console user reading
    ``tokens_per_second`` should see a plausible figure, not millions.)
    """
    generate, embed = default_models()
    return [dataclasses.replace(generate, slots=4, prompt_ms=20.0, token_ms=10.0), embed]


def main(argv: Sequence[str] | None = None, *, prog: str = DEFAULT_PROG) -> int:
    """Console entry point; returns the exit code (2 for a bad argument, 1 when it cannot listen)."""
    parser = _parser(prog)
    name = prog.split()[0] if prog.startswith("ollama-async") else prog
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        specs = [parse_model(m) for m in args.model] if args.model else cli_default_models()
    except ValueError as exc:
        print(f"{name}: error: --model: {exc}", file=sys.stderr)
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
            print(f"{name}: error: --fault-kinds: {exc}", file=sys.stderr)
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
        print(f"{name}: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
