"""``ollama-async``: argument parsing and dispatch (stdlib argparse only).

Every failure the user can cause -- a bad flag, a missing or malformed input, an unreachable
server, a missing model, an unwritable output -- ends in one ``ollama-async: error: ...`` line
on stderr and a documented exit code, never a traceback:

====  =========================================================================
0     every item succeeded (bench/demo: the run completed)
1     the job finished but some items failed (listed in ``OUT.errors.jsonl``)
2     usage or input error: bad flags, missing/malformed input, unwritable
      output, a checkpoint that belongs to another input or other settings
3     the server is unreachable, or was lost during the run
4     the model is missing on the server (or cannot do what was asked)
130   interrupted by Ctrl-C (143: SIGTERM); the checkpoint is kept, rerun to resume
70    an unexpected internal error (``OLLAMA_ASYNC_DEBUG=1`` shows the traceback)
====  =========================================================================
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from .._argparse import ArgumentParser
from .._errors import RequestError
from .._payloads import options_value
from . import _args
from ._hosts import add_host_option, hosts_of
from ._inputs import DEFAULT_FIELD, InputSpec, guess_format
from ._jobs import EXIT_INTERNAL, EXIT_USAGE, Fatal, JobConfig, run_job

__all__ = ["EXIT_INTERNAL", "build_parser", "main"]

_THINK: dict[str, bool | str] = {"true": True, "false": False, "low": "low", "medium": "medium", "high": "high", "max": "max"}

_EPILOG = """\
exit codes: 0 all items ok; 1 some items failed (see OUT.errors.jsonl); 2 usage or input error;
3 server unreachable; 4 model missing; 130/143 interrupted (rerun the same command to resume).
"""


class UsageError(Exception):
    """A flag value that argparse's types cannot check alone (JSON, files)."""


# -- value parsers ------------------------------------------------------------------------------


def _concurrency(text: str) -> int | str:
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def _think(text: str) -> bool | str:
    value: bool | str | None = _THINK.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(_THINK)}, not {text!r}")
    return value


def parse_options(values: Sequence[str] | None) -> dict[str, Any] | None:
    """``--options`` values: JSON objects or ``key=value`` pairs (values parsed as JSON if they can be)."""
    if not values:
        return None
    options: dict[str, Any] = {}
    for text in values:
        stripped = text.strip()
        if stripped.startswith("{"):
            try:
                parsed = json.loads(stripped)
            except ValueError as exc:
                raise UsageError(f"--options: invalid JSON {text!r}: {exc}") from None
            if not isinstance(parsed, dict):
                raise UsageError(f"--options: expected a JSON object, not {text!r}")
            options.update(parsed)
            continue
        key, sep, raw = stripped.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--options: expected a JSON object or key=value, not {text!r}")
        try:
            options[key.strip()] = json.loads(raw)
        except ValueError:
            options[key.strip()] = raw
    return options


def parse_format(text: str | None) -> Any:
    """``--format``: ``json``, an inline JSON schema, or the path of a JSON schema file."""
    if text is None:
        return None
    if text == "json":
        return "json"
    if text.lstrip().startswith("{"):
        source, data = "the inline schema", text
    else:
        try:
            with open(text, encoding="utf-8") as f:
                data = f.read()
        except OSError as exc:
            raise UsageError(f"--format: expected 'json' or a JSON schema file; cannot read {text}: "
                             f"{exc.strerror or exc}") from None
        source = text
    try:
        schema = json.loads(data)
    except ValueError as exc:
        raise UsageError(f"--format: {source} is not valid JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise UsageError(f"--format: {source} must hold a JSON object (a JSON schema)")
    return schema


# -- the parser -------------------------------------------------------------------------------


def _job_parser(sub: Any, name: str, help_: str, description: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help_, description=description, epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="a .txt file (one item per line), a .jsonl file, or - for stdin")
    p.add_argument("-m", "--model", required=True, help="the model to run")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="the output file")
    add_host_option(p, "Ollama server (default: OLLAMA_HOST, else 127.0.0.1:11434)")
    p.add_argument("--field", default=None,
                   help=f"JSONL field holding the item (default: {DEFAULT_FIELD[name]!r})")
    p.add_argument("--id-field", default=None, help="JSONL field holding the item's id (default: the line number)")
    p.add_argument("--input-format", choices=("auto", "txt", "jsonl"), default="auto",
                   help="default: by suffix (.jsonl/.ndjson/.json, .txt), else by the first line")
    p.add_argument("--concurrency", type=_concurrency, default=None, metavar="N|auto",
                   help="requests in flight (default: the batch engine's)")
    p.add_argument("--keep-alive", type=_args.keep_alive, default=None, metavar="DURATION",
                   help="how long the server keeps the model loaded (seconds, or 5m, 1h, -1)")
    p.add_argument("--options", action="append", default=None, metavar="JSON|KEY=VALUE",
                   help="model options, e.g. '{\"temperature\": 0}' or num_ctx=4096 (repeatable)")
    p.add_argument("--restart", action="store_true", help="discard the checkpoint of an earlier run and start over")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar; one summary line every --log-interval s")
    p.add_argument("--log-interval", type=float, default=10.0, metavar="SECONDS",
                   help="seconds between summary lines without a bar (0: none; default 10)")
    from ._ray import add_arguments as ray_args

    ray_args(p)
    p.set_defaults(kind=name)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The ``ollama-async`` parser with all subcommands."""
    parser = ArgumentParser(
        prog="ollama-async",
        description="Bulk embeddings, batch generate/chat with resume, benchmarks and a demo for Ollama.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .._version import __version__

    parser.add_argument("--version", action="version", version=f"ollama-async {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    embed = _job_parser(sub, "embed", "embed every line of a file into .npy/.parquet/.jsonl",
                        "Embed every item of INPUT with --model; write OUT (.npy, .parquet or .jsonl).")
    embed.add_argument("--batch-size", type=_positive, default=64, help="texts per /api/embed request (default 64)")
    embed.add_argument("--dimensions", type=_positive, default=None, help="truncate vectors to this many dimensions")
    embed.add_argument("--truncate", action=argparse.BooleanOptionalAction, default=None,
                       help="let the server cut inputs longer than the context (server default: yes)")
    embed.set_defaults(func=_cmd_job)

    for name, what in (("generate", "prompt"), ("chat", "conversation")):
        p = _job_parser(sub, name, f"run a {what} per line and save responses + metrics as JSONL",
                        f"Run every {what} of INPUT through --model; write one JSON line per item to OUT "
                        "(.jsonl) with the id, the response, done_reason and the server's metrics.")
        p.add_argument("--format", default=None, metavar="json|SCHEMA",
                       help="structured output: 'json', a JSON schema file, or an inline schema")
        p.add_argument("--system", default=None, help="system prompt")
        p.add_argument("--think", type=_think, nargs="?", const=True, default=None, metavar="LEVEL",
                       help="thinking: true/false/low/medium/high/max (bare --think: true)")
        p.set_defaults(func=_cmd_job)

    bench = sub.add_parser("bench", help="find the concurrency that saturates a server",
                           description="Measure throughput and latency at rising concurrency; report where "
                                       "the server saturates (its effective parallelism).")
    from ._bench import add_arguments as bench_args

    bench_args(bench)

    demo = sub.add_parser("demo", help="batch generate, a live stream and a bulk embed (simulator by default)",
                          description="Show the client at work: without --host/OLLAMA_HOST against the "
                                      "built-in simulator, else against your server.")
    from ._demo import add_arguments as demo_args

    demo_args(demo)

    sub.add_parser("serve-sim", aliases=["simulator"], add_help=False,
                   help="run the Ollama simulator (python -m ollama_async.testing; see serve-sim --help)")
    return parser


# -- commands ---------------------------------------------------------------------------------


def _job_config(args: argparse.Namespace) -> JobConfig:
    kind: str = args.kind
    options = parse_options(args.options)
    try:
        options_value(options)  # the client's own checks, now rather than on every item
    except RequestError as exc:
        raise UsageError(f"--{exc}") from None
    for warning in _args.unknown_options(options):
        print(f"ollama-async: warning: {warning}", file=sys.stderr, flush=True)
    field = args.field or DEFAULT_FIELD[kind]
    fmt = guess_format(args.input, None if args.input_format == "auto" else args.input_format,
                       args.field, args.id_field)
    defaults: dict[str, Any] = {}
    params: dict[str, Any] = {"field": field, "id_field": args.id_field, "options": options}
    call_kwargs: dict[str, Any] = {}
    if args.keep_alive is not None:
        call_kwargs["keep_alive"] = args.keep_alive
    system = None
    if kind == "embed":
        params.update(dimensions=args.dimensions, truncate=args.truncate)
        call_kwargs["batch_size"] = args.batch_size
        for key in ("dimensions", "truncate"):
            if getattr(args, key) is not None:
                call_kwargs[key] = getattr(args, key)
        if options is not None:
            call_kwargs["options"] = options
    else:
        fmt_value = parse_format(args.format)
        system = args.system
        params.update(format=fmt_value, system=system, think=args.think)
        if kind == "generate" and system is not None:
            defaults["system"] = system
        for key, value in (("format", fmt_value), ("think", args.think), ("options", options)):
            if value is not None:
                defaults[key] = value
    spec = InputSpec(
        path=args.input, fmt=fmt, kind=kind, field=field, id_field=args.id_field,  # type: ignore[arg-type]
        system=system if kind == "chat" else None, defaults=tuple(defaults.items()),
    )
    return JobConfig(
        kind=kind, input=spec, out=args.out, model=args.model, host=hosts_of(args.host), concurrency=args.concurrency,
        restart=args.restart, quiet=args.quiet, log_interval=args.log_interval, params=params,
        call_kwargs=call_kwargs, dimensions=getattr(args, "dimensions", None),
    )


def _cmd_job(args: argparse.Namespace) -> int:
    from ._ray import run_ray_job, wants_ray

    if wants_ray(args):
        return run_ray_job(args)
    return run_job(_job_config(args))


def _error(message: str) -> None:
    print(f"ollama-async: error: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in ("serve-sim", "simulator"):
        from ..testing import main as simulator_main

        return simulator_main(args_list[1:], prog=f"ollama-async {args_list[0]}")
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help, --version, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        code: int = args.func(args)
        return code
    except (Fatal, UsageError) as exc:
        _error(exc.message if isinstance(exc, Fatal) else str(exc))
        return exc.code if isinstance(exc, Fatal) else EXIT_USAGE
    except RequestError as exc:  # a setting the client refuses, e.g. OLLAMA_HOST='not a url'
        _error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:  # e.g. `ollama-async demo | head`
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the final flush at exit
        return 141
    except Exception as exc:
        if os.environ.get("OLLAMA_ASYNC_DEBUG"):
            raise
        leaf = _only_leaf(exc)
        if isinstance(leaf, RequestError):  # a setting refused inside a task group
            _error(str(leaf))
            return EXIT_USAGE
        _error(f"unexpected {type(leaf).__name__}: {leaf} (set OLLAMA_ASYNC_DEBUG=1 for a traceback)")
        return EXIT_INTERNAL


def _only_leaf(exc: BaseException) -> BaseException:
    """The one exception inside (nested) exception groups of one member each, else ``exc``."""
    while len(getattr(exc, "exceptions", ())) == 1:
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    return exc
