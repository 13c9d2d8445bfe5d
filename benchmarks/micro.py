"""Micro-benchmarks behind the client's small speed changes (no server): ``python benchmarks/micro.py``.

Each line is the best of 7 repeats, in µs per operation:

* decoding one stream chunk with ``GenerateResponse``, with the ``_format`` slot kept as a
  pydantic ``PrivateAttr`` on the base class (as before) and as a property (now);
* the same through ``model_validate_json`` and through the compiled validator directly (what
  ``iter_parts`` calls);
* an ``httpx.Response`` for a body already in memory: ``Response(content=...)`` / ``.read()``
  (what httpx does) and ``Response(stream=...)`` with the content set (what ``_fast.py`` does);
* the chunked-encoding parser of ``_fast.py``, per 100-byte chunk.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import PrivateAttr, create_model

from ollama_async import GenerateResponse
from ollama_async import _fast as fast
from ollama_async._types import BaseGenerateResponse

LINE = b'{"model":"long","created_at":"2026-11-22T21:41:47.980114594Z","response":" home","done":false}'


def best(fn: Callable[[], Any], number: int = 20000) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


class _OldBase(BaseGenerateResponse):
    _old_format: Any = PrivateAttr(default=None)


OldGenerate: Any = create_model(  # GenerateResponse as it was: a PrivateAttr on its base class
    "OldGenerate",
    __base__=_OldBase,
    **{k: (f.annotation, f) for k, f in GenerateResponse.model_fields.items() if k not in _OldBase.model_fields},
)


def parse_chunks() -> float:
    chunk = b"%x\r\n%s\n\r\n" % (len(LINE) + 1, LINE)
    data = chunk * 500

    class Pool:
        loop = None

    def run() -> None:
        conn = fast._Conn.__new__(fast._Conn)
        conn.pool, conn.loop, conn.transport = Pool(), None, None  # type: ignore[assignment]
        conn.buf, conn.state, conn.remaining, conn.closed, conn.paused = bytearray(data), fast._CHUNK_SIZE, 0, False, False
        ex = fast._Exchange(conn, True, False)
        ex.status = 200
        conn._parse(ex)

    return best(run, 200) / 500


def main() -> None:
    raw = [(b"Content-Type", b"application/json; charset=utf-8"), (b"Content-Length", b"300")]
    body = b"x" * 300

    def via_content() -> bytes:
        return httpx.Response(200, headers=raw, content=body).content

    def via_stream() -> bytes:
        response = httpx.Response(200, headers=raw, stream=httpx.ByteStream(body))
        fast._set_content(response, body)
        return response.content

    validator = GenerateResponse.__pydantic_validator__.validate_json
    rows = [
        ("stream chunk, PrivateAttr on the base (before)", best(lambda: OldGenerate.model_validate_json(LINE))),
        ("stream chunk, property (now)", best(lambda: GenerateResponse.model_validate_json(LINE))),
        ("stream chunk, compiled validator directly", best(lambda: validator(LINE))),
        ("httpx.Response(content=...) (httpx's way)", best(via_content)),
        ("httpx.Response(stream=...) + content set (_fast)", best(via_stream)),
        ("chunked parser, per chunk (_fast)", parse_chunks()),
    ]
    width = max(len(name) for name, _ in rows)
    for name, us in rows:
        print(f"{name:{width}s}  {us:6.2f} µs")


if __name__ == "__main__":
    main()
