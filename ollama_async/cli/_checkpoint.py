"""The resume checkpoint: an append-only binary log of finished items beside the output.

``OUT.ckpt`` starts with a header that ties it to one job (what kind, which model and
result-affecting flags, which input), followed by one record per finished item, in the order the
results arrived::

    header:  b"OACKPT\\x00\\x01" | u32 n | n bytes of JSON | u32 crc32(JSON)
    record:  u32 payload length | u64 index | u8 status | u64 item key | payload | u32 crc32

(little-endian; ``status`` 1 = ok, 2 = failed; ``key`` is the item's hash from ``_inputs``; the
crc covers the record's fixed part and payload). Records are buffered and written, flushed and
fsync'd together every ``flush_items`` records or ``flush_seconds`` seconds, and on close. A
process killed mid-write leaves at most a torn last record, which the next open detects (short
read or crc mismatch) and truncates away; the items it lost are simply done again.

An index may appear more than once (an item that failed, then succeeded on a rerun): the last
record wins. In memory the checkpoint keeps, per index, the offset of its last record, its
status and its key: 17 bytes per item, whatever the payload size, so a resumed run over
millions of items stays small. Payloads are read back, one at a time, only when the final
output is assembled.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import time
import zlib
from array import array
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["FAILED", "OK", "Checkpoint", "CheckpointError"]

MAGIC = b"OACKPT\x00\x01"
OK = 1
FAILED = 2
_REC = struct.Struct("<IQBQ")
_U32 = struct.Struct("<I")
_MAX_PAYLOAD = 1 << 31


class CheckpointError(Exception):
    """The checkpoint cannot be used (unreadable, locked by another run, not ours)."""


def _lock(f: IO[bytes], path: str) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise CheckpointError(f"{path} is in use by another ollama-async run") from None


def fsync_dir(path: str) -> None:
    """Make a rename or a file creation in ``path``'s directory durable (no-op where unsupported)."""
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class Checkpoint:
    """An open checkpoint: what is done, what failed, and an appender for new results.

    Use :meth:`open`; it creates the file (with ``header``) or loads an existing one. Compare
    :attr:`header` with the job's own before trusting what it says is done.
    """

    def __init__(
        self, path: str, f: IO[bytes], header: dict[str, Any], *, flush_items: int, flush_seconds: float
    ) -> None:
        self.path = path
        self.header = header
        self._f = f
        self._reader: IO[bytes] | None = None
        self._offsets = array("q")
        self._keys = array("Q")
        self._status = bytearray()
        self._end = 0
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._flush_items = max(1, flush_items)
        self._flush_seconds = flush_seconds
        self._last_flush = time.monotonic()
        self.ok_count = 0
        self.failed_count = 0
        self.truncated_bytes = 0
        self.created = False

    # -- opening ----------------------------------------------------------------------------

    @staticmethod
    def discard(path: str) -> None:
        """Delete the checkpoint at ``path`` (``--restart``), unless another run holds it."""
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CheckpointError(f"cannot remove {path}: {exc.strerror or exc}") from None
        try:
            _lock(f, path)
            os.remove(path)
        except OSError as exc:
            raise CheckpointError(f"cannot remove {path}: {exc.strerror or exc}") from None
        finally:
            f.close()

    @classmethod
    def open(
        cls, path: str, header: dict[str, Any], *, flush_items: int = 512, flush_seconds: float = 1.0
    ) -> Checkpoint:
        """Open ``path`` for appending, creating it with ``header`` if it does not exist.

        The returned object's ``header`` is the one *in the file*, which may differ from the one
        given: the caller decides whether the job still matches.
        """
        exists = os.path.exists(path) and os.path.getsize(path) > 0
        try:
            f = open(path, "r+b" if exists else "w+b")  # noqa: SIM115 - owned by the Checkpoint
        except OSError as exc:
            raise CheckpointError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from None
        try:
            _lock(f, path)
            if exists:
                ckpt = cls(path, f, {}, flush_items=flush_items, flush_seconds=flush_seconds)
                ckpt._load()
            else:
                data = json.dumps(header, sort_keys=True).encode()
                f.write(MAGIC + _U32.pack(len(data)) + data + _U32.pack(zlib.crc32(data)))
                f.flush()
                os.fsync(f.fileno())
                fsync_dir(path)
                ckpt = cls(path, f, header, flush_items=flush_items, flush_seconds=flush_seconds)
                ckpt._end = f.tell()
                ckpt.created = True
            return ckpt
        except BaseException:
            f.close()
            raise

    def _load(self) -> None:
        f = self._f
        f.seek(0)
        head = f.read(len(MAGIC) + 4)
        if len(head) < len(MAGIC) + 4 or not head.startswith(MAGIC):
            raise CheckpointError(f"{self.path} is not an ollama-async checkpoint (use --restart to replace it)")
        (n,) = _U32.unpack_from(head, len(MAGIC))
        data = f.read(n)
        crc = f.read(4)
        if len(data) < n or len(crc) < 4 or _U32.unpack(crc)[0] != zlib.crc32(data):
            raise CheckpointError(f"{self.path} has a damaged header (use --restart to replace it)")
        self.header = json.loads(data)
        pos = f.tell()
        size = os.fstat(f.fileno()).st_size
        while pos + _REC.size + 4 <= size:
            fixed = f.read(_REC.size)
            length, index, status, key = _REC.unpack(fixed)
            if length > _MAX_PAYLOAD or pos + _REC.size + length + 4 > size or status not in (OK, FAILED):
                break
            payload = f.read(length)
            crc = f.read(4)
            if len(crc) < 4 or _U32.unpack(crc)[0] != zlib.crc32(payload, zlib.crc32(fixed)):
                break
            self._set(index, pos, status, key)
            pos += _REC.size + length + 4
        if pos < size:  # a torn or damaged tail: drop it, those items are done again
            self.truncated_bytes = size - pos
            f.truncate(pos)
            f.flush()
            os.fsync(f.fileno())
        self._end = pos
        f.seek(pos)

    def _set(self, index: int, offset: int, status: int, key: int) -> None:
        if index >= len(self._offsets):
            grow = index + 1 - len(self._offsets)
            self._offsets.extend([-1] * grow)
            self._keys.extend([0] * grow)
            self._status.extend(bytes(grow))
        old = self._status[index]
        if old == OK:
            self.ok_count -= 1
        elif old == FAILED:
            self.failed_count -= 1
        if status == OK:
            self.ok_count += 1
        else:
            self.failed_count += 1
        self._offsets[index] = offset
        self._keys[index] = key
        self._status[index] = status

    # -- queries ----------------------------------------------------------------------------

    def status(self, index: int) -> int:
        """``OK``, ``FAILED`` or 0 (not recorded) for item ``index``."""
        return self._status[index] if index < len(self._status) else 0

    def key(self, index: int) -> int:
        """The input key recorded with item ``index`` (0 if none)."""
        return self._keys[index] if index < len(self._keys) else 0

    def max_index(self) -> int:
        """One past the highest index recorded."""
        return len(self._status)

    def read(self, index: int) -> tuple[int, bytes]:
        """(status, payload) of the last record of ``index``; flushes pending records first."""
        offset = self._offsets[index] if index < len(self._offsets) else -1
        if offset < 0:
            raise KeyError(index)
        if self._buffer:
            self.flush()
        if self._reader is None:
            self._reader = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        r = self._reader
        r.seek(offset)
        length, _, status, _ = _REC.unpack(r.read(_REC.size))
        return status, r.read(length)

    def iter_payloads(self, count: int) -> Iterator[tuple[int, int, bytes]]:
        """(index, status, payload) for indexes ``0..count-1`` in order; status 0 if missing."""
        for index in range(count):
            if self.status(index):
                status, payload = self.read(index)
                yield index, status, payload
            else:
                yield index, 0, b""

    # -- appending --------------------------------------------------------------------------

    def append(self, index: int, status: int, key: int, payload: bytes) -> None:
        """Record item ``index``; written to disk at the next flush."""
        fixed = _REC.pack(len(payload), index, status, key)
        record = fixed + payload + _U32.pack(zlib.crc32(payload, zlib.crc32(fixed)))
        self._set(index, self._end + self._buffered, status, key)
        self._buffer.append(record)
        self._buffered += len(record)
        if len(self._buffer) >= self._flush_items or time.monotonic() - self._last_flush >= self._flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write buffered records in one go and fsync them."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        f = self._f
        f.seek(self._end)
        f.write(b"".join(self._buffer))
        f.flush()
        os.fsync(f.fileno())
        self._end += self._buffered
        self._buffer.clear()
        self._buffered = 0

    def tick(self) -> None:
        """Flush if records have waited ``flush_seconds`` (call now and then while idle)."""
        if self._buffer and time.monotonic() - self._last_flush >= self._flush_seconds:
            self.flush()

    @property
    def closed(self) -> bool:
        return self._f.closed

    def close(self) -> None:
        """Flush what is buffered and release the file (and its lock)."""
        if self._f.closed:
            return
        try:
            self.flush()
        finally:
            if self._reader is not None:
                self._reader.close()
            self._f.close()

    @property
    def empty(self) -> bool:
        """No record was ever written (nor is one buffered)."""
        return not self._status and not self._buffer

    def remove(self) -> None:
        """Close and delete the checkpoint file (the job finished without failures)."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)
