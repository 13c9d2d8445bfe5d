"""The embed / generate / chat job runner: input -> ``client.batch`` -> checkpoint -> output.

One job goes through these steps:

1. Local checks, before any request: the output suffix, the output directory, one validating
   pass over an input file (count, bad lines, SHA-256).
2. The checkpoint ``OUT.ckpt`` is opened (``--restart`` deletes it first). Its header must match
   this job -- kind, model, result-affecting flags and the input's size and SHA-256 -- or the run
   is refused, so results of different jobs are never mixed.
3. If items remain: check the server and the model, then stream the items that are not done
   yet (failed ones are tried again) through ``client.batch``; each result is appended to the
   checkpoint as it arrives. Ctrl-C / SIGTERM stops the batch, flushes the checkpoint and exits
   130/143; a lost server or model stops it with exit 3/4. Either way rerunning resumes.
4. When every item is done, OUT is assembled from the checkpoint in input order, atomically. The
   checkpoint is deleted if everything succeeded, kept (so a rerun retries only the failures)
   otherwise.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from .. import AsyncClient
from .._errors import (
    ModelNotFoundError,
    OllamaConnectionError,
    OllamaTimeoutError,
    ResponseError,
)
from ._checkpoint import FAILED, OK, Checkpoint, CheckpointError
from ._inputs import InputError, InputSpec, Item, iter_items, scan
from ._outputs import (
    OutputError,
    check_not_an_input,
    check_writable,
    dumps,
    encode_embedding,
    errors_path,
    output_format,
    write_output,
)
from ._progress import JobProgress

__all__ = [
    "EXIT_FAILED_ITEMS",
    "EXIT_INTERNAL",
    "EXIT_MODEL",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Fatal",
    "JobConfig",
    "check_server",
    "checkpoint_path",
    "run_job",
]

EXIT_OK = 0
EXIT_FAILED_ITEMS = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_MODEL = 4
EXIT_INTERNAL = 70

CHECKPOINT_VERSION = 1
METRICS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)


class Fatal(Exception):
    """Stop the command with ``code`` and ``message`` (no traceback)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class JobConfig:
    """Everything a job needs, as parsed from the command line.

    ``params`` are the flags that change results (they go in the checkpoint header and must match
    on resume); ``call_kwargs`` are passed to ``client.batch.<kind>`` as they are.
    """

    kind: str
    input: InputSpec
    out: str
    model: str
    host: str | list[str] | None = None
    concurrency: int | str | None = None
    restart: bool = False
    quiet: bool = False
    log_interval: float = 10.0
    params: dict[str, Any] = field(default_factory=dict)
    call_kwargs: dict[str, Any] = field(default_factory=dict)
    dimensions: int | None = None
    flush_items: int = 256
    flush_seconds: float = 1.0


@dataclass
class _State:
    """What the async part tells the synchronous part when it returns."""

    seen: int = 0
    input_done: bool = False
    signal: int | None = None
    fatal: Fatal | None = None


def checkpoint_path(out: str) -> str:
    """``OUT.ckpt``: where the results of an unfinished job are kept."""
    return f"{out}.ckpt"


def _err(message: str) -> None:
    print(f"ollama-async: {message}", file=sys.stderr, flush=True)


# -- server checks ------------------------------------------------------------------------------


async def check_server(client: AsyncClient, model: str | None = None, capability: str | None = None) -> None:
    """Raise :class:`Fatal` unless the server answers and has ``model`` (with ``capability``)."""
    url = client.base_url
    try:
        await client.with_options(max_retries=0).version(timeout=10)
    except OllamaConnectionError as exc:
        if exc.plain_http:
            raise Fatal(
                EXIT_UNREACHABLE,
                f"the TLS handshake with {url} failed: the server there speaks plain HTTP. "
                f"Use --host {url.replace('https://', 'http://', 1)}",
            ) from None
        raise Fatal(
            EXIT_UNREACHABLE,
            f"cannot reach an Ollama server at {url} ({type(exc).__name__}). "
            "Is `ollama serve` running? Pass --host or set OLLAMA_HOST.",
        ) from None
    except OllamaTimeoutError as exc:
        raise Fatal(
            EXIT_UNREACHABLE,
            f"cannot reach an Ollama server at {url} ({type(exc).__name__}). "
            "Is `ollama serve` running? Pass --host or set OLLAMA_HOST.",
        ) from None
    except ResponseError as exc:
        raise Fatal(EXIT_UNREACHABLE, f"{url} does not answer like an Ollama server: {exc}") from None
    if model is None:
        return
    try:
        info = await client.show(model, timeout=30)
    except ModelNotFoundError:
        raise Fatal(EXIT_MODEL, f"model {model!r} is not on the server at {url}: run `ollama pull {model}`") from None
    except ResponseError as exc:
        if exc.status_code == 404:
            raise Fatal(EXIT_MODEL, f"model {model!r} is not on the server at {url}: run `ollama pull {model}`") from None
        raise Fatal(EXIT_MODEL, f"cannot use model {model!r}: {exc.error}") from None
    except (OllamaConnectionError, OllamaTimeoutError) as exc:
        raise Fatal(EXIT_UNREACHABLE, f"lost the Ollama server at {url}: {exc}") from None
    caps = info.capabilities
    if capability and caps and capability not in caps:
        raise Fatal(
            EXIT_MODEL,
            f"model {model!r} cannot {'embed' if capability == 'embedding' else 'generate'} "
            f"(its capabilities: {', '.join(caps)}); choose another --model",
        )


def _fatal_for(exc: BaseException, url: str, model: str) -> Fatal | None:
    """Errors that would fail every remaining item: stop the run instead of recording each."""
    if isinstance(exc, OllamaConnectionError):
        return Fatal(EXIT_UNREACHABLE, f"lost the Ollama server at {url}: {exc}")
    if isinstance(exc, ModelNotFoundError):
        return Fatal(EXIT_MODEL, f"model {model!r} disappeared from the server at {url}: run `ollama pull {model}`")
    return None


def _error_record(item: Item, exc: BaseException) -> dict[str, Any]:
    message = exc.error if isinstance(exc, ResponseError) else str(exc)
    status = exc.status_code if isinstance(exc, ResponseError) else None
    return {"id": item.id, "type": type(exc).__name__, "message": message, "status_code": status}


# -- results ------------------------------------------------------------------------------------


def _text_record(kind: str, item: Item, resp: Any) -> tuple[dict[str, Any], int]:
    """The output line of a generate/chat result, and its token count."""
    record: dict[str, Any] = {"id": item.id, "index": item.index, "model": getattr(resp, "model", None)}
    if kind == "chat":
        message = resp.message
        record["response"] = message.content or ""
        if message.thinking:
            record["thinking"] = message.thinking
        if message.tool_calls:
            record["tool_calls"] = [
                tc.model_dump(mode="json", exclude_none=True) if hasattr(tc, "model_dump") else tc
                for tc in message.tool_calls
            ]
    else:
        record["response"] = resp.response or ""
        if resp.thinking:
            record["thinking"] = resp.thinking
    record["done_reason"] = resp.done_reason
    for name in METRICS:
        record[name] = getattr(resp, name, None)
    record["queue_duration"] = getattr(resp, "queue_duration", None)
    count, duration = record["eval_count"], record["eval_duration"]
    record["tokens_per_second"] = round(count / duration * 1e9, 3) if count and duration else None
    return record, int(count or 0)


# -- the async part -----------------------------------------------------------------------------


async def _watch_signals(scope: anyio.CancelScope, state: _State, progress: JobProgress) -> None:
    try:
        receiver = anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
    except NotImplementedError:  # pragma: no cover - Windows: KeyboardInterrupt instead
        return
    with receiver as signals:
        async for signum in signals:
            state.signal = int(signum)
            progress.log("interrupted: stopping and saving the checkpoint ...")
            scope.cancel()
            return


async def _ticker(ckpt: Checkpoint, progress: JobProgress, seconds: float) -> None:
    while True:
        await anyio.sleep(min(seconds, 0.5))
        ckpt.tick()
        progress.tick()


def _start_batch(client: AsyncClient, cfg: JobConfig, source: Iterator[Any]) -> Any:
    batch = client.batch
    if cfg.kind == "embed":
        return batch.embed(cfg.model, source, concurrency=cfg.concurrency, **cfg.call_kwargs)
    if cfg.kind == "generate":
        return batch.generate(cfg.model, source, concurrency=cfg.concurrency, **cfg.call_kwargs)
    return batch.chat(cfg.model, source, concurrency=cfg.concurrency, **cfg.call_kwargs)


async def _consume(
    client: AsyncClient, cfg: JobConfig, ckpt: Checkpoint, state: _State, progress: JobProgress
) -> None:
    pending: dict[int, Item] = {}
    reader_error: list[InputError] = []

    def source() -> Iterator[Any]:
        # Lazily read the input, skipping what the checkpoint holds; remember what was handed out.
        seq = 0
        try:
            for item in iter_items(cfg.input):
                state.seen = item.index + 1
                status = ckpt.status(item.index)
                if status:
                    if ckpt.key(item.index) != item.key:
                        raise InputError(
                            f"{cfg.input.name}:{item.line}: this item differs from the one in "
                            f"{ckpt.path}; the input changed. Restore it, or pass --restart to start over"
                        )
                    if status == OK:
                        continue
                pending[seq] = item
                seq += 1
                yield item.value
            state.input_done = True
            if progress.total is None:
                progress.set_total(state.seen)
        except InputError as exc:
            reader_error.append(exc)

    run = _start_batch(client, cfg, source())
    url = client.base_url
    iterator: AsyncIterator[Any] = run.__aiter__()
    try:
        async for res in iterator:
            item = pending.pop(res.index)
            if res.ok:
                if cfg.kind == "embed":
                    ckpt.append(item.index, OK, item.key, encode_embedding(item.id, res.result))
                    progress.update(ok=1)
                else:
                    record, tokens = _text_record(cfg.kind, item, res.result)
                    ckpt.append(item.index, OK, item.key, dumps(record))
                    progress.update(ok=1, tokens=tokens)
                continue
            error = res.error
            fatal = _fatal_for(error, url, cfg.model)
            if fatal is not None:
                state.fatal = fatal
                break
            ckpt.append(item.index, FAILED, item.key, dumps(_error_record(item, error)))
            progress.update(failed=1)
    finally:
        aclose = getattr(iterator, "aclose", None) or getattr(run, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):
                await aclose()
    if reader_error and state.fatal is None:
        state.fatal = Fatal(EXIT_USAGE, str(reader_error[0]))


async def _execute(cfg: JobConfig, ckpt: Checkpoint, state: _State, progress: JobProgress) -> None:
    capability = "embedding" if cfg.kind == "embed" else "completion"
    client_kwargs: dict[str, Any] = {}
    if cfg.concurrency is not None:  # else the client's default: OLLAMA_NUM_PARALLEL, or adaptive
        client_kwargs["concurrency"] = cfg.concurrency
    async with AsyncClient(cfg.host, **client_kwargs) as client:
        try:
            await check_server(client, cfg.model, capability)
        except Fatal as exc:
            state.fatal = exc
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_signals, tg.cancel_scope, state, progress)
            tg.start_soon(_ticker, ckpt, progress, cfg.flush_seconds)
            try:
                await _consume(client, cfg, ckpt, state, progress)
            finally:
                tg.cancel_scope.cancel()


# -- the job ------------------------------------------------------------------------------------


def _header(cfg: JobConfig, fingerprint: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": CHECKPOINT_VERSION,
        "kind": cfg.kind,
        "model": cfg.model,
        "params": cfg.params,
        "input": fingerprint,
    }


def _mismatch(saved: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """Why a checkpoint does not belong to this job, or None if it does."""
    if saved.get("version") != wanted["version"]:
        return f"it was written by another version of ollama-async (format {saved.get('version')!r})"
    if saved.get("kind") != wanted["kind"]:
        return f"it was made by `ollama-async {saved.get('kind')}`, this is `ollama-async {wanted['kind']}`"
    if saved.get("model") != wanted["model"]:
        return f"it was made with --model {saved.get('model')!r}, not {wanted['model']!r}"
    old, new = saved.get("params") or {}, wanted["params"]
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        return "it was made with other settings: " + ", ".join(
            f"{k} was {old.get(k)!r}, now {new.get(k)!r}" for k in changed
        )
    a, b = saved.get("input") or {}, wanted["input"]
    if a.get("stdin") != b.get("stdin"):
        return "it was made from " + ("stdin" if a.get("stdin") else "a file") + ", this input is " + (
            "stdin" if b.get("stdin") else "a file"
        )
    if (a.get("size"), a.get("sha256")) != (b.get("size"), b.get("sha256")):
        return (
            f"the input changed since (size {a.get('size')} -> {b.get('size')} bytes, "
            f"sha256 {str(a.get('sha256'))[:12]}... -> {str(b.get('sha256'))[:12]}...)"
        )
    return None


def _prepare(cfg: JobConfig) -> tuple[str, int | None, dict[str, Any]]:
    """Checks that need no server: output format and directory, the input scan."""
    fmt = output_format(cfg.out, cfg.kind)
    check_writable(cfg.out)
    check_not_an_input(cfg.out, {"the output": cfg.out, "the checkpoint": checkpoint_path(cfg.out),
                                 "the errors file": errors_path(cfg.out), "the temporary output": f"{cfg.out}.tmp"},
                       [cfg.input.path])
    if cfg.input.is_stdin:
        return fmt, None, {"stdin": True}
    found = scan(cfg.input)
    if found.count == 0:
        raise Fatal(EXIT_USAGE, f"{cfg.input.name} has no items (it is empty or only blank lines)")
    return fmt, found.count, {"stdin": False, "size": found.size, "sha256": found.sha256, "count": found.count}


def run_job(cfg: JobConfig) -> int:
    """Run one embed/generate/chat job to completion (or to a resumable stop); the exit code."""
    try:
        fmt, total, fingerprint = _prepare(cfg)
    except (InputError, OutputError) as exc:
        raise Fatal(EXIT_USAGE, str(exc)) from None
    ckpt_path = checkpoint_path(cfg.out)
    try:
        if cfg.restart:
            Checkpoint.discard(ckpt_path)
            with contextlib.suppress(FileNotFoundError):
                os.remove(errors_path(cfg.out))
        ckpt = Checkpoint.open(ckpt_path, _header(cfg, fingerprint), flush_items=cfg.flush_items,
                               flush_seconds=cfg.flush_seconds)
    except CheckpointError as exc:
        raise Fatal(EXIT_USAGE, str(exc)) from None
    except OSError as exc:
        raise Fatal(EXIT_USAGE, f"cannot write next to {cfg.out}: {exc.strerror or exc}") from None
    try:
        return _run_with(cfg, ckpt, fmt, total, _header(cfg, fingerprint))
    finally:
        if ckpt.created and ckpt.empty:  # nothing done (e.g. server down): leave no trace
            ckpt.remove()
        elif not ckpt.closed:
            ckpt.close()


def _run_with(cfg: JobConfig, ckpt: Checkpoint, fmt: str, total: int | None, header: dict[str, Any]) -> int:
    why = _mismatch(ckpt.header, header)
    if why is not None:
        raise Fatal(
            EXIT_USAGE,
            f"refusing to resume from {ckpt.path}: {why}. "
            "Pass --restart to discard the checkpoint and start over.",
        )
    if total is not None and ckpt.max_index() > total:
        raise Fatal(EXIT_USAGE, f"{ckpt.path} has more items than the input; pass --restart to start over")
    if ckpt.ok_count or ckpt.failed_count:
        retry = f", retrying {ckpt.failed_count} failed" if ckpt.failed_count else ""
        _err(f"resuming from {ckpt.path}: {ckpt.ok_count} items already done{retry}")
    progress = JobProgress(
        cfg.kind,
        total=total,
        done_before=ckpt.ok_count,
        quiet=cfg.quiet,
        log_interval=cfg.log_interval,
        tokens=cfg.kind != "embed",
    )
    state = _State()
    if total is not None and ckpt.ok_count == total:
        state.seen, state.input_done = total, True
    else:
        try:
            anyio.run(_execute, cfg, ckpt, state, progress)
        except KeyboardInterrupt:  # a Ctrl-C outside the signal watcher's window
            state.signal = signal.SIGINT
        finally:
            ckpt.flush()
            progress.close()
    if state.signal is not None:
        _err(
            f"interrupted: {ckpt.ok_count} items are saved in {ckpt.path}; "
            "run the same command again to resume"
        )
        return 128 + state.signal
    if state.fatal is not None:
        if (ckpt.ok_count or ckpt.failed_count) and state.fatal.code in (EXIT_UNREACHABLE, EXIT_MODEL):
            state.fatal.message += f" ({ckpt.ok_count} items are saved in {ckpt.path}; rerun to resume)"
        raise state.fatal
    if not state.input_done:  # the batch ended without reading everything: do not finish a partial output
        raise Fatal(EXIT_INTERNAL, "the run stopped before the whole input was read; rerun the same command to finish")
    count = state.seen if total is None else total
    if count == 0:
        raise Fatal(EXIT_USAGE, f"{cfg.input.name} has no items (it is empty or only blank lines)")
    if ckpt.max_index() > count:
        raise Fatal(EXIT_USAGE, f"{ckpt.path} has more items than the input; pass --restart to start over")
    missing = count - ckpt.ok_count - ckpt.failed_count
    if missing:
        raise Fatal(EXIT_UNREACHABLE, f"{missing} items got no result; rerun the same command to finish them")
    try:
        result = write_output(
            ckpt, count, cfg.out, fmt, cfg.kind, id_is_str=cfg.input.id_field is not None, dim=cfg.dimensions
        )
    except OutputError as exc:
        raise Fatal(EXIT_USAGE, str(exc)) from None
    where = cfg.out if result.written else "(no output: every item failed)"
    _err(f"wrote {where}: {result.ok} ok, {result.failed} failed")
    if result.failed:
        _err(f"failures are listed in {errors_path(cfg.out)}; rerun the same command to retry them")
        ckpt.close()
        return EXIT_FAILED_ITEMS
    ckpt.remove()
    return EXIT_OK

