"""Micro-benchmarks behind the client's small speed changes (no server): ``python benchmarks/micro.py``.

Each line is the best of 7 repeats, in µs per operation:

* decoding one stream chunk with ``GenerateResponse``, with the ``_format`` slot kept as a
  pydantic ``PrivateAttr`` on the base class (as before) and as a property (now);
* the same through ``model_validate_json`` and through the compiled validator directly (what
  ``iter_parts`` calls);
* an ``httpx.Response`` for a body already in memory: ``Response(content=...)`` / ``.read()``
  (what httpx does) and ``Response(stream=...)`` with the content set (what ``_fast.py`` does);
* parsing one whole response with llhttp (``_fast.py``) and with h11 (the choice of parser),
  and a chunked body with llhttp, per 100-byte chunk.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from typing import Any

import h11
import httpx
from pydantic import PrivateAttr, create_model

from ollama_async import GenerateResponse
from ollama_async import _fast as fast
from ollama_async._types import BaseGenerateResponse
from ollama_async._wire import DEFAULT_WIRE_LIMITS

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


RESPONSE_BODY = b'{"model":"instant","created_at":"2026-11-22T21:41:47.980114594Z","response":"ok","done":true}'
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
            b"Date: Tue, 01 Dec 2026 11:00:00 GMT\r\nContent-Length: %d\r\n\r\n%s") % (len(RESPONSE_BODY), RESPONSE_BODY)


def _exchange(stream: bool) -> Any:
    conn = fast._Conn.__new__(fast._Conn)
    return fast._Exchange(conn, stream, False, DEFAULT_WIRE_LIMITS)


def parse_llhttp() -> float:
    """A whole response into a fresh exchange, as ``_Conn.data_received`` does (parser included)."""

    def run() -> None:
        ex = _exchange(False)
        ex.parser.feed_data(RESPONSE)
        assert ex.complete

    return best(run)


def parse_h11() -> float:
    """The same response through h11 (which must frame a request first), for the choice of parser."""
    request = h11.Request(method="POST", target="/api/generate", headers=[("Host", "x"), ("Content-Length", "2")])

    def run() -> None:
        conn = h11.Connection(h11.CLIENT)
        conn.send(request)
        conn.send(h11.Data(data=b"{}"))
        conn.send(h11.EndOfMessage())
        conn.receive_data(RESPONSE)
        while type(conn.next_event()) is not h11.EndOfMessage:
            pass

    return best(run)


def parse_chunks() -> float:
    chunk = b"%x\r\n%s\n\r\n" % (len(LINE) + 1, LINE)
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 500

    def run() -> None:
        ex = _exchange(True)
        ex.parser.feed_data(data)

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
        ("whole response, llhttp (_fast)", parse_llhttp()),
        ("whole response, h11 (request framed too)", parse_h11()),
        ("chunked body, llhttp, per chunk (_fast)", parse_chunks()),
    ]
    width = max(len(name) for name, _ in rows)
    for name, us in rows:
        print(f"{name:{width}s}  {us:6.2f} µs")


if __name__ == "__main__":
    main()
