"""Images for ``generate`` and chat messages: bytes, file paths or base64 to plain base64 strings.

The server wants plain base64 (no ``data:`` prefix). Accepted inputs, as in the official client:
bytes, a path (``pathlib.Path`` or a string naming an existing file), a base64 string, or an
:class:`Image` wrapping any of these. Added here: ``bytearray``/``memoryview``, any ``os.PathLike``,
``data:image/...;base64,`` URLs (the prefix is stripped), ``~`` in string paths.

Unlike the official client, which sends whatever it was given and leaves the server (or the
model) to choke on it, a bad image is a :class:`~ollama_async.RequestError` before any request:
empty data, a missing or unreadable file, a string that is not valid base64, and data whose first
bytes are not those of a PNG, JPEG, GIF, WEBP, BMP, TIFF or HEIC/AVIF image. The error's ``field``
names the entry (``images[2]``, ``messages[0].images[1]``) and its text says what was found.
A valid base64 string is returned exactly as given (byte parity with the official client).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

import pydantic

from ollama_async._errors import RequestError

__all__ = ["Image", "ImageInput", "encode_image", "encode_images", "sniff_image"]

_IMAGE_SUFFIXES = frozenset({"png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff", "heic", "heif", "avif"})
# Longer strings are not tried as paths: PATH_MAX is 4096 on Linux, and Path() on a
# multi-megabyte base64 string is slow or raises "File name too long".
_MAX_PATH_LEN = 4096
_DATA_URL = re.compile(r"\Adata:([^;,]*)((?:;[^;,]*)*),", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"})
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


class Image(pydantic.BaseModel):
    """An image argument, constructed as the official ``ollama.Image``: ``Image(value=...)``.

    ``value`` is bytes, a path or a string (a file path or base64). Serialising the model
    (``model_dump()``) gives the base64 string that goes on the wire, as the official one does;
    an invalid image raises there (wrapped by pydantic in a ``PydanticSerializationError``, a
    ``ValueError``). :func:`encode_image` accepts an ``Image`` directly and raises the
    :class:`RequestError` itself.
    """

    value: str | bytes | Path

    @pydantic.model_serializer
    def _serialize(self) -> str:
        return encode_image(self.value)


ImageInput: TypeAlias = str | bytes | bytearray | memoryview | os.PathLike[str] | Image
"""One image as callers may give it."""


def encode_images(values: Sequence[ImageInput] | None, *, field: str = "images") -> list[str] | None:
    """Encode every image of ``values``; errors name ``f"{field}[{i}]"``.

    ``None`` or an empty sequence gives ``None``: the official client sends no ``images`` key then.
    A single image (a str, bytes, path or Image) instead of a list is an error, not iterated.
    """
    if values is None:
        return None
    if isinstance(values, (str, bytes, bytearray, memoryview, os.PathLike, Image)):
        raise RequestError(
            f"must be a list of images, not a single {type(values).__name__}; wrap it in a list", field=field
        )
    try:
        items = list(values)
    except TypeError:
        raise RequestError(f"must be a list of images, not {type(values).__name__}", field=field) from None
    if not items:
        return None
    return [encode_image(v, field=f"{field}[{i}]") for i, v in enumerate(items)]


def encode_image(value: ImageInput, *, field: str = "images") -> str:
    """Return the plain base64 of one image, checking that it is an image.

    - bytes-like: encoded;
    - a path (``os.PathLike``, or a string naming an existing file): the file is read;
    - a string ending in an image suffix (``.png``, ``.jpg``, ...) that does not exist: error;
    - a ``data:...;base64,`` URL: the prefix is stripped;
    - any other string must be valid base64 (whitespace and newlines are tolerated and removed)
      and is returned as given when it has none.
    """
    if isinstance(value, Image):
        value = value.value
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        _check_image(data, field)
        return base64.b64encode(data).decode("ascii")
    if isinstance(value, os.PathLike):
        data = _read_file(Path(os.fspath(value)), field)
        return base64.b64encode(data).decode("ascii")
    if isinstance(value, str):
        return _encode_str(value, field)
    raise RequestError(
        f"an image must be bytes, a file path, a base64 string or an Image, not {type(value).__name__}",
        field=field,
    )


def _encode_str(value: str, field: str) -> str:
    if not value.strip():
        raise RequestError("empty image string", field=field)
    if value.startswith(("http://", "https://")):
        raise RequestError(
            f"image URLs are not fetched ({_short(value)}); download the image and pass its bytes or path",
            field=field,
        )
    match = _DATA_URL.match(value)
    if match:
        if "base64" not in (p.strip().lower() for p in match.group(2).split(";")):
            raise RequestError(f"a data URL must be base64-encoded ({_short(value)})", field=field)
        return _check_base64(value[match.end():], field)

    path = _as_existing_path(value)
    if path is not None:
        return base64.b64encode(_read_file(path, field)).decode("ascii")
    # Base64 has no dot, so a string ending in an image suffix was meant as a file.
    if "." in value and value.rsplit(".", 1)[-1].lower().strip() in _IMAGE_SUFFIXES:
        raise RequestError(f"file {value} does not exist", field=field)
    return _check_base64(value, field)


def _as_existing_path(value: str) -> Path | None:
    if len(value) > _MAX_PATH_LEN or "\n" in value or "\0" in value:
        return None
    try:
        path = Path(value).expanduser() if value.startswith("~") else Path(value)
        return path if path.exists() else None
    except (OSError, ValueError, RuntimeError):
        return None


def _read_file(path: Path, field: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RequestError(f"file {path} does not exist", field=field) from None
    except IsADirectoryError:
        raise RequestError(f"{path} is a directory, not an image file", field=field) from None
    except OSError as exc:
        raise RequestError(f"cannot read image file {path}: {exc.strerror or exc}", field=field) from None
    _check_image(data, field, source=f"file {path}")
    return data


def _check_base64(text: str, field: str) -> str:
    cleaned = _WHITESPACE.sub("", text)
    try:
        data = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(
            f"not a file path and not valid base64 ({_short(text)}); pass the image's bytes, a path to an "
            "existing file or its base64 encoding",
            field=field,
        ) from None
    _check_image(data, field, source="base64 data")
    return text if cleaned == text else cleaned


def sniff_image(data: bytes) -> str | None:
    """The image format named by the magic number at the start of ``data``, or ``None``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM" and len(data) >= 18 and int.from_bytes(data[14:18], "little") in _BMP_HEADER_SIZES:
        return "bmp"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "avif" if data[8:12] in (b"avif", b"avis") else "heic"
    return None


def _describe(data: bytes) -> str:
    """Name what non-image data looks like, for the error message."""
    known = (
        (b"%PDF", "a PDF document"),
        (b"PK\x03\x04", "a ZIP archive (or docx/xlsx)"),
        (b"\x1f\x8b", "gzip data"),
        (b"<svg", "an SVG image (vector images are not supported; rasterise it to PNG)"),
        (b"<?xml", "XML (an SVG image? rasterise it to PNG)"),
        (b"<!DOCTYPE html", "an HTML page"),
        (b"<html", "an HTML page"),
        (b"data:", "a data URL that was base64-encoded again"),
    )
    head = data.lstrip()[:16]
    for magic, name in known:
        if head[: len(magic)].lower() == magic.lower():
            return name
    if data[4:8] == b"ftyp":
        return f"an ISO media file of brand {data[8:12].decode('latin-1')!r} (a video?)"
    if data[:4] == b"RIFF":
        return f"a RIFF file of type {data[8:12].decode('latin-1')!r} (audio or video?)"
    return ""


def _check_image(data: bytes, field: str, *, source: str = "data") -> None:
    if not data:
        raise RequestError(f"empty image ({source} has no bytes)", field=field)
    if sniff_image(data) is None:
        what = _describe(data)
        raise RequestError(
            f"not an image: {source} starts with {data[:16]!r}" + (f", {what}" if what else "")
            + "; expected PNG, JPEG, GIF, WEBP, BMP, TIFF, HEIC or AVIF",
            field=field,
        )


def _short(text: Any, limit: int = 40) -> str:
    text = str(text)
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"
