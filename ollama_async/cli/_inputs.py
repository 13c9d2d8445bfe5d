"""Input readers: text files, JSONL files and stdin, streamed one item at a time.

A job's input is never loaded whole: :func:`iter_items` reads line by line and yields
:class:`Item` objects, so memory stays flat for inputs of millions of lines. Blank lines are
skipped (they are not items); an item's default id is its 1-based line number, so that every
output row can be traced back to the input even when blank lines were skipped.

Each item carries a 64-bit ``key``, a hash of its id and its request. The checkpoint stores it
with the item's result, so a resumed run can tell, item by item, that the input it is reading
now is the one the checkpoint was made from (the only check possible for stdin).

:func:`scan` makes one validating pass over a file before any request is sent: it counts the
items (the progress total), finds bad lines early (with their line numbers) and computes the
file's SHA-256, the fingerprint a checkpoint is tied to.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

__all__ = [
    "InputError",
    "InputSpec",
    "Item",
    "ScanResult",
    "iter_items",
    "scan",
]

Kind = Literal["embed", "generate", "chat"]
Format = Literal["txt", "jsonl", "auto"]

DEFAULT_FIELD: dict[str, str] = {"embed": "text", "generate": "prompt", "chat": "messages"}

# Per-line request keys a JSONL record may carry besides the main field; merged over the flags.
GENERATE_KEYS = ("system", "suffix", "images", "options", "format", "think", "raw", "template")
CHAT_KEYS = ("tools", "options", "format", "think")

_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


class InputError(Exception):
    """The input cannot be used: missing file, undecodable or malformed line, missing field."""


@dataclass(frozen=True)
class InputSpec:
    """Where the items come from and how a line becomes an item.

    ``path`` is a file path or ``"-"`` for stdin. ``fmt`` is ``"txt"`` (one item per line) or
    ``"jsonl"`` (one JSON object per line; the item is ``field``, the id ``id_field``).
    ``defaults`` are request keys applied to every item (from flags such as ``--system``).
    """

    path: str
    fmt: Format
    kind: Kind
    field: str
    id_field: str | None = None
    system: str | None = None
    defaults: tuple[tuple[str, Any], ...] = ()

    @property
    def is_stdin(self) -> bool:
        return self.path == "-"

    @property
    def name(self) -> str:
        return "<stdin>" if self.is_stdin else self.path


@dataclass(frozen=True)
class Item:
    """One input item: its position, where it came from, its id, its request and its hash."""

    index: int
    line: int
    id: Any
    value: Any
    key: int


@dataclass(frozen=True)
class ScanResult:
    """What one pass over an input file found: item count, byte size, SHA-256 of the content."""

    count: int
    size: int
    sha256: str


def guess_format(path: str, explicit: str | None, field: str | None, id_field: str | None) -> Format:
    """Pick txt or jsonl: ``--input-format``, else the file suffix, else JSONL if a field was named.

    Without any of these the answer is ``"auto"``: the first non-blank line decides (JSONL if
    it starts with ``{``), which is what lets stdin be either without a flag.
    """
    if explicit in ("txt", "jsonl"):
        return explicit  # type: ignore[return-value]
    if path != "-":
        lower = path.lower()
        if lower.endswith(_JSONL_SUFFIXES):
            return "jsonl"
        if lower.endswith(".txt"):
            return "txt"
    if field is not None or id_field is not None:
        return "jsonl"
    return "auto"


def item_key(id_: Any, value: Any) -> int:
    """64-bit BLAKE2b of the canonical JSON of (id, request): stable across runs and machines."""
    data = json.dumps([id_, value], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return int.from_bytes(hashlib.blake2b(data.encode("utf-8"), digest_size=8).digest(), "little")


def _open(spec: InputSpec) -> BinaryIO:
    if spec.is_stdin:
        return sys.stdin.buffer
    try:
        return open(spec.path, "rb")
    except FileNotFoundError:
        raise InputError(f"input file not found: {spec.path}") from None
    except IsADirectoryError:
        raise InputError(f"input is a directory, not a file: {spec.path}") from None
    except OSError as exc:
        raise InputError(f"cannot read input {spec.path}: {exc.strerror or exc}") from None


def _iter_lines(spec: InputSpec, sha: Any = None) -> Iterator[tuple[int, str]]:
    """(line number, text) of every non-blank line, decoded as UTF-8, line ends removed."""
    f = _open(spec)
    try:
        for lineno, raw in enumerate(f, 1):
            if sha is not None:
                sha.update(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{spec.name}:{lineno}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
            if lineno == 1 and text.startswith("\ufeff"):
                text = text[1:]
            text = text.rstrip("\r\n")
            if text.strip():
                yield lineno, text
    finally:
        if not spec.is_stdin:
            f.close()


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _from_record(spec: InputSpec, lineno: int, record: Any) -> tuple[Any, Any]:
    """(id, request value) of one parsed JSONL line."""
    where = f"{spec.name}:{lineno}"
    if isinstance(record, str):
        # A bare JSON string is the item itself (a prompt, a text, one user message).
        if spec.id_field is not None:
            raise InputError(f"{where}: a JSON string has no id field {spec.id_field!r}")
        return lineno, _from_text(spec, record)
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object, got {_type_name(record)}")
    if spec.id_field is not None:
        if spec.id_field not in record:
            raise InputError(f"{where}: missing id field {spec.id_field!r} (keys: {', '.join(record) or 'none'})")
        id_ = record[spec.id_field]
        if not isinstance(id_, (str, int)) or isinstance(id_, bool):
            raise InputError(f"{where}: id field {spec.id_field!r} must be a string or an integer, not {_type_name(id_)}")
    else:
        id_ = lineno
    if spec.field not in record:
        raise InputError(f"{where}: missing field {spec.field!r} (keys: {', '.join(record) or 'none'})")
    main = record[spec.field]
    if spec.kind == "embed":
        if not isinstance(main, str):
            raise InputError(f"{where}: field {spec.field!r} must be a string, not {_type_name(main)}")
        return id_, main
    if spec.kind == "generate":
        if not isinstance(main, str):
            raise InputError(f"{where}: field {spec.field!r} must be a string, not {_type_name(main)}")
        request = dict(spec.defaults)
        request["prompt"] = main
        _merge(request, record, GENERATE_KEYS)
        return id_, request
    if isinstance(main, str):
        messages: Any = [{"role": "user", "content": main}]
    elif isinstance(main, list) and all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in main):
        messages = main
    else:
        raise InputError(f"{where}: field {spec.field!r} must be a list of messages with a 'role' each, or a string")
    request = dict(spec.defaults)
    request["messages"] = _with_system(spec, messages)
    _merge(request, record, CHAT_KEYS)
    return id_, request


def _merge(request: dict[str, Any], record: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Per-line request keys win over the flags; ``options`` are merged key by key."""
    for key in keys:
        if key in record:
            value = record[key]
            if key == "options" and isinstance(value, dict) and isinstance(request.get("options"), dict):
                value = {**request["options"], **value}
            request[key] = value


def _with_system(spec: InputSpec, messages: list[Any]) -> list[Any]:
    if spec.system is None or (messages and messages[0].get("role") == "system"):
        return messages
    return [{"role": "system", "content": spec.system}, *messages]


def _from_text(spec: InputSpec, text: str) -> Any:
    if spec.kind == "embed":
        return text
    request = dict(spec.defaults)
    if spec.kind == "generate":
        request["prompt"] = text
    else:
        request["messages"] = _with_system(spec, [{"role": "user", "content": text}])
    return request


def _items(spec: InputSpec, sha: Any = None) -> Iterator[Item]:
    fmt = spec.fmt
    for index, (lineno, text) in enumerate(_iter_lines(spec, sha)):
        if fmt == "auto":
            fmt = "jsonl" if text.lstrip().startswith("{") else "txt"
        if fmt == "jsonl":
            try:
                record = json.loads(text)
            except ValueError as exc:
                raise InputError(f"{spec.name}:{lineno}: invalid JSON: {exc}") from None
            id_, value = _from_record(spec, lineno, record)
        else:
            id_, value = lineno, _from_text(spec, text)
        yield Item(index, lineno, id_, value, item_key(id_, value))


def iter_items(spec: InputSpec) -> Iterator[Item]:
    """Stream the items of ``spec`` in input order; raises :class:`InputError` on a bad line."""
    return _items(spec)


def scan(spec: InputSpec) -> ScanResult:
    """Read a whole input file once: validate every line, count items, hash the bytes."""
    if spec.is_stdin:
        raise ValueError("stdin cannot be scanned ahead")
    sha = hashlib.sha256()
    count = 0
    for _ in _items(spec, sha):
        count += 1
    return ScanResult(count=count, size=os.path.getsize(spec.path), sha256=sha.hexdigest())
