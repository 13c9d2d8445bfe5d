"""Output writers: the final file, assembled from the checkpoint in input order, atomically.

Results reach the checkpoint in completion order; only when every item is done is the output
written, by walking the indexes ``0..n-1`` and reading each item's record back. Everything goes
to ``OUT.tmp`` first, is fsync'd, then renamed over ``OUT``: a reader never sees a half-written
output, and a crash during assembly leaves the checkpoint intact for the next run.

Formats:

- ``.npy``: float32 matrix, one row per item in input order, streamed row after row behind
  a standard ``.npy`` header, so millions of rows never sit in RAM. A failed item's row is NaN.
- ``.parquet``: columns ``id`` (int64 line numbers, or strings from ``--id-field``) and
  ``embedding`` (``list<float32>``, null for a failed item), written in row groups.
- ``.jsonl``: embeddings as ``{"id": ..., "embedding": [...]}``; generate/chat results as
  the record built by the job. A failed item's line carries ``"error"`` instead.

Failures also go to ``OUT.errors.jsonl`` (id, index, type, message, status_code).

Checkpoint payloads are encoded here too: an embedding is ``u32 n | id as n bytes of JSON |
float32 vector``; a generate/chat result and a failure are JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from ._checkpoint import FAILED, OK, Checkpoint, fsync_dir

__all__ = [
    "SUFFIXES",
    "OutputError",
    "WriteResult",
    "decode_embedding",
    "dumps",
    "encode_embedding",
    "errors_path",
    "output_format",
    "write_output",
]

SUFFIXES = {".npy": "npy", ".parquet": "parquet", ".jsonl": "jsonl"}
_U32 = struct.Struct("<I")
_ROW_GROUP = 8192


class OutputError(Exception):
    """The output cannot be written (bad suffix, missing optional dependency, I/O error)."""


@dataclass
class WriteResult:
    """What the assembly wrote: item counts and the vector size (embeddings)."""

    ok: int = 0
    failed: int = 0
    dim: int | None = None
    written: bool = True


def output_format(path: str, kind: str) -> str:
    """``npy``/``parquet``/``jsonl`` from OUT's suffix; generate and chat write JSONL only."""
    suffix = os.path.splitext(path)[1].lower()
    fmt = SUFFIXES.get(suffix)
    if kind != "embed":
        if fmt != "jsonl":
            raise OutputError(f"--out for {kind} must end with .jsonl, not {suffix or 'no suffix'!r}: {path}")
        return fmt
    if fmt is None:
        raise OutputError(f"--out must end with .npy, .parquet or .jsonl (got {suffix or 'no suffix'!r}): {path}")
    if fmt == "npy":
        _need("numpy", "numpy")
    elif fmt == "parquet":
        _need("pyarrow", "parquet")
    return fmt


def _need(module: str, extra: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise OutputError(
            f"writing this format needs {module}: pip install 'ollama-async[{extra}]'"
        ) from None


def errors_path(out: str) -> str:
    """Where per-item failures are listed: ``OUT.errors.jsonl``."""
    return f"{out}.errors.jsonl"


def check_writable(out: str) -> None:
    """Raise :class:`OutputError` unless ``out`` can be created: checked before any work is done.

    Says which part is wrong: a parent that does not exist, a parent that is a file
    (``prompts.txt/x.npy``), an output that is a directory, a directory without write access.
    """
    directory = os.path.dirname(os.path.abspath(out))
    parent = directory
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise OutputError(f"cannot write {out}: {parent} is a file, not a directory")
    if parent != directory:
        raise OutputError(f"cannot write {out}: directory {directory} does not exist")
    if os.path.isdir(out):
        raise OutputError(f"cannot write {out}: it is a directory")
    if not os.access(directory, os.W_OK):
        raise OutputError(f"cannot write {out}: directory {directory} is not writable")


def check_not_an_input(out: str, files: dict[str, str], inputs: list[str]) -> None:
    """Refuse an output (or its checkpoint/errors/tmp file, named in ``files``) that is one of ``inputs``.

    Writing it would overwrite the data the job reads, silently: ``embed docs.jsonl --out docs.jsonl``.
    """
    for given in inputs:
        if given == "-" or not os.path.exists(given):
            continue
        for what, path in files.items():
            if os.path.exists(path) and os.path.samefile(path, given):
                raise OutputError(f"refusing to write {what} {path}: it is the input {given}")


try:
    import orjson as _orjson

    _HAS_ORJSON = True

    def dumps(obj: Any) -> bytes:
        """Compact JSON bytes; numpy float32 vectors print in their shortest float32 form."""
        data: bytes = _orjson.dumps(obj, option=_orjson.OPT_SERIALIZE_NUMPY)
        return data

except ImportError:  # pragma: no cover - orjson is optional
    _HAS_ORJSON = False

    def dumps(obj: Any) -> bytes:
        """Compact JSON bytes (stdlib fallback)."""
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _loads(data: bytes) -> Any:
    return json.loads(data)


# -- payloads ---------------------------------------------------------------------------------


def encode_embedding(id_: Any, vector: Any) -> bytes:
    """Checkpoint payload of one embedding: the id (JSON) and the float32 bytes of the vector."""
    id_bytes = json.dumps(id_).encode()
    data: bytes
    if hasattr(vector, "astype"):  # a numpy row
        data = vector.astype("<f4", copy=False).tobytes()
    else:
        data = struct.pack(f"<{len(vector)}f", *vector)
    return _U32.pack(len(id_bytes)) + id_bytes + data


def decode_embedding(payload: bytes) -> tuple[Any, memoryview]:
    """(id, float32 bytes of the vector) of an embedding payload."""
    (n,) = _U32.unpack_from(payload)
    return json.loads(payload[4 : 4 + n]), memoryview(payload)[4 + n :]


# -- assembly ---------------------------------------------------------------------------------


class _Atomic:
    """A temporary path beside ``path`` that replaces it on :meth:`commit`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.tmp = f"{path}.tmp"

    def commit(self) -> None:
        os.replace(self.tmp, self.path)
        fsync_dir(self.path)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.tmp)


def _open_tmp(atomic: _Atomic) -> IO[bytes]:
    try:
        return open(atomic.tmp, "wb")
    except OSError as exc:
        raise OutputError(f"cannot write {atomic.path}: {exc.strerror or exc}") from None


def _fsync_close(f: IO[bytes]) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()


def write_output(
    ckpt: Checkpoint, count: int, out: str, fmt: str, kind: str, *, id_is_str: bool, dim: int | None = None
) -> WriteResult:
    """Write OUT (and OUT.errors.jsonl) from the checkpoint, items ``0..count-1`` in order."""
    result = WriteResult()
    out_atomic, err_atomic = _Atomic(out), _Atomic(errors_path(out))
    err_file = _open_tmp(err_atomic)
    try:

        def on_error(index: int, payload: bytes) -> dict[str, Any]:
            error = _loads(payload)
            result.failed += 1
            err_file.write(dumps({"id": error.get("id"), "index": index, "type": error.get("type"),
                                  "message": error.get("message"), "status_code": error.get("status_code")}))
            err_file.write(b"\n")
            return error  # type: ignore[no-any-return]

        if fmt == "npy":
            _write_npy(ckpt, count, out_atomic, on_error, result, dim)
        elif fmt == "parquet":
            _write_parquet(ckpt, count, out_atomic, on_error, result, id_is_str)
        else:
            _write_jsonl(ckpt, count, out_atomic, on_error, result, kind)
        _fsync_close(err_file)
        if result.written:
            out_atomic.commit()
        if result.failed:
            err_atomic.commit()
        else:
            err_atomic.discard()
            with contextlib.suppress(FileNotFoundError):
                os.remove(err_atomic.path)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        if not err_file.closed:
            err_file.close()
        out_atomic.discard()
        err_atomic.discard()
    return result


ErrorSink = Callable[[int, bytes], dict[str, Any]]


def _first_dim(ckpt: Checkpoint, count: int) -> int | None:
    for index in range(count):
        if ckpt.status(index) == OK:
            _, payload = ckpt.read(index)
            return len(decode_embedding(payload)[1]) // 4
    return None


def _write_npy(
    ckpt: Checkpoint, count: int, atomic: _Atomic, on_error: ErrorSink, result: WriteResult, dim: int | None
) -> None:
    import numpy as np

    dim = _first_dim(ckpt, count) or dim
    if dim is None:  # every item failed and no --dimensions: no matrix shape to write
        result.written = False
        for index, status, payload in ckpt.iter_payloads(count):
            if status == FAILED:
                on_error(index, payload)
        return
    result.dim = dim
    nan_row = np.full(dim, np.nan, dtype="<f4").tobytes()
    f = _open_tmp(atomic)
    try:
        # Rows arrive in input order, so the matrix is streamed: header, then row after row.
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False, "shape": (count, dim)}
        )
        for index, status, payload in ckpt.iter_payloads(count):
            if status == OK:
                row = decode_embedding(payload)[1]
                if len(row) != dim * 4:
                    raise OutputError(f"item {index} has {len(row) // 4} dimensions, the others {dim}")
                f.write(row)
                result.ok += 1
            else:
                on_error(index, payload)
                f.write(nan_row)
        _fsync_close(f)
    finally:
        if not f.closed:
            f.close()


def _write_parquet(
    ckpt: Checkpoint, count: int, atomic: _Atomic, on_error: ErrorSink, result: WriteResult, id_is_str: bool
) -> None:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    id_type = pa.string() if id_is_str else pa.int64()
    schema = pa.schema([("id", id_type), ("embedding", pa.list_(pa.float32()))])
    writer = pq.ParquetWriter(atomic.tmp, schema)
    try:
        ids: list[Any] = []
        offsets = [0]
        mask: list[bool] = []
        values = bytearray()

        def emit() -> None:
            flat = pa.Array.from_buffers(pa.float32(), len(values) // 4, [None, pa.py_buffer(bytes(values))])
            lists = pa.ListArray.from_arrays(
                pa.array(offsets, type=pa.int32()), flat, mask=pa.array(mask, type=pa.bool_())
            )
            writer.write_table(pa.Table.from_arrays([pa.array(ids, type=id_type), lists], schema=schema))
            ids.clear()
            mask.clear()
            values.clear()
            offsets[:] = [0]

        for index, status, payload in ckpt.iter_payloads(count):
            if status == OK:
                id_, vector = decode_embedding(payload)
                values.extend(vector)
                mask.append(False)
                result.ok += 1
            else:
                id_ = on_error(index, payload).get("id")
                mask.append(True)
            ids.append(str(id_) if id_is_str else id_)
            offsets.append(len(values) // 4)
            if len(ids) >= _ROW_GROUP:
                emit()
        if ids:
            emit()
    finally:
        writer.close()
    with open(atomic.tmp, "rb+") as f:
        os.fsync(f.fileno())


def _write_jsonl(
    ckpt: Checkpoint, count: int, atomic: _Atomic, on_error: ErrorSink, result: WriteResult, kind: str
) -> None:
    f = _open_tmp(atomic)
    try:
        vector_line = _embedding_line()
        for index, status, payload in ckpt.iter_payloads(count):
            if status == OK:
                result.ok += 1
                if kind == "embed":
                    id_, vector = decode_embedding(payload)
                    f.write(vector_line(id_, vector))
                else:
                    f.write(payload)
            else:
                error = on_error(index, payload)
                line: dict[str, Any] = {"id": error.get("id")}
                if kind == "embed":
                    line["embedding"] = None
                else:
                    line["index"] = index
                line["error"] = {k: error.get(k) for k in ("type", "message", "status_code")}
                f.write(dumps(line))
            f.write(b"\n")
        _fsync_close(f)
    finally:
        if not f.closed:
            f.close()


def _embedding_line() -> Callable[[Any, memoryview], bytes]:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is optional

        def plain(id_: Any, vector: memoryview) -> bytes:
            raw = vector.tobytes()
            return dumps({"id": id_, "embedding": list(struct.unpack(f"<{len(raw) // 4}f", raw))})

        return plain

    def with_numpy(id_: Any, vector: memoryview) -> bytes:
        row = np.frombuffer(vector, dtype="<f4")
        return dumps({"id": id_, "embedding": row if _HAS_ORJSON else row.tolist()})

    return with_numpy
