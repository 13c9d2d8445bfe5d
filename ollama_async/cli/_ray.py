"""``--ray [ADDRESS]`` for ``embed`` / ``generate`` / ``chat``: the job as a Ray Data pipeline.

``ray.data.read_parquet(INPUT)`` → ``map_batches`` with :mod:`ollama_async.ray`'s classes (one
slot broker for the job, so the servers' slots hold across every actor) → this process iterates
the results in input order and writes OUT (parquet) itself, so that it shows the same progress
as a local job (a bar, or summary lines with ``--quiet``) and writes OUT the same way: to
``OUT.tmp``, renamed over OUT at the end, failures listed in ``OUT.errors.jsonl``, exit code 1
when some rows failed. Without a checkpoint: Ray itself redoes the work of a failed actor; a
killed driver reruns the job.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import anyio

from .. import AsyncClient
from ._inputs import DEFAULT_FIELD
from ._jobs import EXIT_FAILED_ITEMS, EXIT_OK, EXIT_USAGE, Fatal, check_server
from ._outputs import errors_path
from ._progress import JobProgress

__all__ = ["add_arguments", "run_ray_job", "wants_ray"]

_COLUMNS = ("response", "thinking", "done_reason", "total_duration", "load_duration", "prompt_eval_count",
            "prompt_eval_duration", "eval_count", "eval_duration", "queue_duration")


#: The actors wait on the network: a fraction of a CPU each leaves the CPUs to Ray Data's reads
#: (with one CPU per actor, a 2-CPU machine running 2 actors never schedules the parquet reads).
_ACTOR_CPUS = 0.25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The Ray flags of a job command."""
    from ._main import _positive
    group = parser.add_argument_group("Ray (pip install 'ollama-async[ray]')")
    group.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help="run the job on Ray: bare --ray joins RAY_ADDRESS, else starts a local instance; 'auto' "
                            "joins the cluster of `ray start`, ray://HOST:PORT a remote one. INPUT and OUT "
                            "are parquet")
    group.add_argument("--ray-actors", type=_positive, default=2, metavar="N",
                       help="map_batches actors (default 2)")
    group.add_argument("--slots", type=_positive, default=None, metavar="N",
                       help="each server's slots (OLLAMA_NUM_PARALLEL; embed-only models: 1); "
                            "default: found adaptively")


def wants_ray(args: argparse.Namespace) -> bool:
    """Whether to run on Ray; the Ray-only flags without ``--ray`` are a usage error."""
    if args.ray is None and (args.slots is not None or args.ray_actors != 2):
        raise Fatal(EXIT_USAGE, "--slots and --ray-actors need --ray")
    return args.ray is not None


def _hosts(host: Any) -> list[str]:
    if host is None:
        return [os.environ.get("OLLAMA_HOST", "")]
    return [str(h) for h in host] if isinstance(host, list) else [str(host)]  # --host is repeatable


async def _check(hosts: list[str], model: str, kind: str) -> None:
    for host in hosts:
        async with AsyncClient(host or None) as client:
            await check_server(client, model, "embedding" if kind == "embed" else "completion")


def _settings(args: argparse.Namespace) -> tuple[type, dict[str, Any]]:
    from ..ray import OllamaChat, OllamaEmbed, OllamaGenerate
    from ._main import UsageError, parse_format, parse_options

    options = parse_options(args.options)
    kwargs: dict[str, Any] = {"input_column": args.field or DEFAULT_FIELD[args.kind], "slots": args.slots}
    if args.keep_alive is not None:
        kwargs["keep_alive"] = args.keep_alive
    if options is not None:
        kwargs["options"] = options
    if args.kind == "embed":
        kwargs.update(batch_size=args.batch_size, dimensions=args.dimensions, truncate=args.truncate)
        return OllamaEmbed, kwargs
    for key, value in (("format", parse_format(args.format)), ("system", args.system), ("think", args.think)):
        if value is not None:
            kwargs[key] = value
    if args.kind == "chat" and "system" in kwargs:
        raise UsageError("--system with --ray: put the system message in each conversation")
    return (OllamaGenerate if args.kind == "generate" else OllamaChat), kwargs


def run_ray_job(args: argparse.Namespace) -> int:
    """Run one embed/generate/chat command on Ray (see the module docstring)."""
    src, out = args.input, args.out
    if not (src.endswith(".parquet") or os.path.isdir(src)) or not os.path.exists(src):
        raise Fatal(EXIT_USAGE, f"--ray reads a parquet file or a directory of them; {src!r} is not one")
    if not out.endswith(".parquet"):
        raise Fatal(EXIT_USAGE, f"--ray writes parquet: OUT must end in .parquet, not {out!r}")
    try:
        import pyarrow as pa  # type: ignore[import-untyped]
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
        import ray
        import ray.data
    except ImportError:
        raise Fatal(EXIT_USAGE, "--ray needs Ray Data: pip install 'ollama-async[ray]'") from None
    hosts = _hosts(args.host)
    cls, kwargs = _settings(args)
    anyio.run(_check, hosts, args.model, args.kind)
    ray.init(address=None if args.ray == "local" else args.ray, include_dashboard=False, log_to_driver=False,
             configure_logging=False, ignore_reinit_error=True)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows come back in input order
    context.enable_progress_bars = False  # ours instead
    try:
        ds = ray.data.read_parquet(src)
        field = kwargs["input_column"]
        if field not in ds.columns():
            raise Fatal(EXIT_USAGE, f"{src}: no column {field!r} (columns: {', '.join(ds.columns())}); use --field")
        if args.id_field is not None and args.id_field not in ds.columns():
            raise Fatal(EXIT_USAGE, f"{src}: no column {args.id_field!r} for --id-field")
        results = ds.map_batches(cls, fn_constructor_kwargs={"hosts": hosts, "model": args.model, **kwargs},
                                 compute=ray.data.ActorPoolStrategy(size=args.ray_actors), batch_size=256,
                                 num_cpus=_ACTOR_CPUS)
        progress = JobProgress(f"{args.kind} {args.model}", total=ds.count(), quiet=args.quiet,
                               log_interval=args.log_interval, tokens=args.kind != "embed")
        try:
            failed = _write(results, args, pa, pq, progress)
        finally:
            progress.close()
    finally:
        ray.shutdown()
    return EXIT_FAILED_ITEMS if failed else EXIT_OK


def _write(results: Any, args: argparse.Namespace, pa: Any, pq: Any, progress: JobProgress) -> int:
    """Stream the job's batches into ``OUT.tmp`` (then renamed) and ``OUT.errors.jsonl``."""
    out, tmp, index, failed = args.out, f"{args.out}.tmp", 0, 0
    writer = None
    with open(errors_path(out), "w", encoding="utf-8") as errors:
        try:
            for batch in results.iter_batches(batch_format="pyarrow", batch_size=None):
                table, ids, error = _output(batch, args, index, pa)
                for i, message in enumerate(error):
                    if message is not None:
                        kind, _, text = message.partition(": ")
                        record = {"id": ids[i], "index": index + i, "type": kind, "message": text, "status_code": None}
                        errors.write(json.dumps(record) + "\n")
                bad = sum(1 for m in error if m is not None)
                tokens = 0 if args.kind == "embed" else sum(n or 0 for n in batch.column("eval_count").to_pylist())
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                index += batch.num_rows
                failed += bad
                progress.update(ok=batch.num_rows - bad, failed=bad, tokens=tokens)
        except BaseException:
            if writer is not None:
                writer.close()
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
    if writer is None:  # an empty input: an empty file of the right kind
        writer = pq.ParquetWriter(tmp, pa.schema([("id", pa.int64())]))
    writer.close()
    os.replace(tmp, out)
    if not failed:
        os.remove(errors_path(out))
    return failed


def _output(batch: Any, args: argparse.Namespace, start: int, pa: Any) -> tuple[Any, list[Any], list[str | None]]:
    """The columns OUT keeps of one result batch (as the local CLI writes them)."""
    n = batch.num_rows
    if args.id_field is not None:
        ids: list[Any] = [None if v is None else str(v) for v in batch.column(args.id_field).to_pylist()]
        id_array = pa.array(ids, type=pa.string())
    else:
        ids = list(range(start, start + n))
        id_array = pa.array(ids, type=pa.int64())
    error: list[str | None] = batch.column("error").to_pylist()
    columns: dict[str, Any] = {"id": id_array}
    if args.kind == "embed":
        vectors = batch.column("embedding").combine_chunks()
        mask = pa.array([e is not None for e in error])
        columns["embedding"] = pa.ListArray.from_arrays(
            pa.array(range(0, (n + 1) * vectors.type.list_size, vectors.type.list_size), type=pa.int32()),
            vectors.flatten(), mask=mask,
        ).cast(pa.list_(pa.float32()))  # a failed row's vector is null, as without --ray
    else:
        columns["index"] = pa.array(range(start, start + n), type=pa.int64())
        columns["model"] = pa.array([args.model] * n, type=pa.string())
        for name in _COLUMNS:
            if name in batch.column_names:
                columns[name] = batch.column(name)
        columns["error"] = batch.column("error")
    return pa.table(columns), ids, error
