"""The transports side by side: ``python benchmarks/bench_transport.py [--quick]``.

In one run against one simulator process (``instant`` model: 1 token, no latency), non-streamed
``/api/generate`` at concurrency 64, requests/s and client CPU µs per request for:

* ``fast (llhttp)``: ``ollama_async.AsyncClient`` on its own pool, framed by httptools/llhttp
  (the default under asyncio);
* ``fast (h11)``: the same pool with llhttp swapped for h11 behind the same parser callbacks
  (this benchmark's :class:`H11Parser`): the measurement behind the choice of parser;
* ``httpx path``: the same client with ``OLLAMA_ASYNC_TRANSPORT=httpx`` (httpx + httpcore + h11);
* ``httpx-aiohttp``: a raw ``httpx.AsyncClient`` on ``httpx_aiohttp.AiohttpTransport``;
* ``raw aiohttp``: ``aiohttp.ClientSession``, orjson, no validation (the floor of that stack);
* ``official``: ``ollama.AsyncClient``.

Goals (issue 9): fast >= 15x official and >= 3x httpx-aiohttp. Medians of ``--rounds`` rounds,
the clients taking turns in a rotating order. Writes ``results/transport.json`` (``--quick``:
``results/tmp/transport.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import httptools
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _clients import GEN_HEADERS, Adapter, Official, OllamaAsync, OllamaAsyncHttpx, RawAiohttp, RawHttpx
from run import RESULTS, machine, measure, start_simulator

import ollama_async._fast as fast_module

CONCURRENCY = 64


class H11Parser:
    """h11 driving the fast path's llhttp callbacks: the same pool, h11's framing instead."""

    def __init__(self, proto: Any) -> None:
        self.proto = proto
        self.conn = h11.Connection(h11.CLIENT)
        # h11 parses a response only after it sent a request: frame one, as a real h11 path would
        self.conn.send(h11.Request(method="POST", target="/api/generate", headers=[("Host", "x"),
                                                                                 ("Content-Length", "0")]))
        self.conn.send(h11.EndOfMessage())
        self.status = 0
        self.version = b"1.1"

    def feed_data(self, data: bytes) -> None:
        conn = self.conn
        try:
            conn.receive_data(data)
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return
                if isinstance(event, (h11.Response, h11.InformationalResponse)):
                    self.status = event.status_code
                    self.version = event.http_version
                    self.proto.on_status(event.reason)
                    for name, value in event.headers.raw_items():
                        self.proto.on_header(name, value)
                    self.proto.on_headers_complete()
                    if isinstance(event, h11.InformationalResponse):
                        self.proto.on_message_complete()
                elif isinstance(event, h11.Data):
                    self.proto.on_body(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    self.proto.on_message_complete()
                    return
        except h11.RemoteProtocolError as exc:
            raise httptools.HttpParserError(str(exc)) from exc

    def get_status_code(self) -> int:
        return self.status

    def get_http_version(self) -> str:
        return self.version.decode()

    def should_keep_alive(self) -> bool:
        return self.conn.their_state is not h11.MUST_CLOSE and self.conn.our_state is not h11.MUST_CLOSE


@contextlib.contextmanager
def h11_framing() -> Iterator[None]:
    """Swap llhttp for :class:`H11Parser` inside ``ollama_async._fast`` for the duration."""
    real = fast_module.httptools
    shim = types.SimpleNamespace(**{k: getattr(real, k) for k in dir(real) if not k.startswith("__")})
    shim.HttpResponseParser = H11Parser
    fast_module.httptools = shim  # type: ignore[assignment]
    try:
        yield
    finally:
        fast_module.httptools = real


class FastLlhttp(OllamaAsync):
    name = "fast (llhttp)"


class FastH11(OllamaAsync):
    """The fast path framed by h11 while this client is measured (clients take turns, never overlap)."""

    name = "fast (h11)"
    _swap: contextlib.ExitStack | None = None

    async def start(self) -> None:
        self._swap = contextlib.ExitStack()
        self._swap.enter_context(h11_framing())
        await super().start()

    async def close(self) -> None:
        await super().close()
        if self._swap is not None:
            self._swap.close()


class HttpxPath(OllamaAsyncHttpx):
    name = "httpx path"


class HttpxAiohttp(RawHttpx):
    """Raw ``httpx.AsyncClient`` on the ``httpx-aiohttp`` transport (aiohttp underneath)."""

    name = "httpx-aiohttp"

    async def start(self) -> None:
        import aiohttp
        import httpx
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport(client=lambda: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)))
        self.client = httpx.AsyncClient(base_url=self.url, transport=transport, timeout=None, headers=GEN_HEADERS)

    async def generate(self, model: str, prompt: str) -> Any:
        body = orjson.dumps({"model": model, "prompt": prompt, "stream": False})
        response = await self.client.post("/api/generate", content=body)
        response.raise_for_status()
        return orjson.loads(response.content)


class Aiohttp(RawAiohttp):
    name = "raw aiohttp"


class OfficialClient(Official):
    name = "official"


CLASSES: list[type[Adapter]] = [FastLlhttp, FastH11, HttpxPath, HttpxAiohttp, Aiohttp, OfficialClient]


async def run(url: str, server: psutil.Process, rounds: int, seconds: float, warmup: float) -> dict[str, Any]:
    results: dict[str, list[dict[str, float]]] = {c.name: [] for c in CLASSES}
    for r in range(rounds):
        shift = r % len(CLASSES)
        for cls in CLASSES[shift:] + CLASSES[:shift]:
            adapter = cls(url, CONCURRENCY)
            await adapter.start()
            try:
                async def op(a: Adapter = adapter) -> int:
                    await a.generate("instant", "why is the sky blue?")
                    return 1

                await measure(op, CONCURRENCY, warmup, server)
                result = await measure(op, CONCURRENCY, seconds, server)
            finally:
                await adapter.close()
            results[cls.name].append(result)
            print(f"round {r + 1} {cls.name:16s} {result['rate']:8.0f} req/s {result['cpu_us_per_item']:7.0f} µs/req "
                  f"server {result['server_cores']:.2f} cores", file=sys.stderr, flush=True)
    table = {
        name: {
            "rate": statistics.median(x["rate"] for x in rs),
            "cpu_us_per_item": statistics.median(x["cpu_us_per_item"] for x in rs),
            "server_cores": statistics.median(x["server_cores"] for x in rs),
            "rounds": [{k: round(v, 3) for k, v in x.items()} for x in rs],
        }
        for name, rs in results.items()
    }
    fast = table["fast (llhttp)"]["rate"]
    goals = {
        "fast / official (goal >= 15)": fast / table["official"]["rate"],
        "fast / httpx-aiohttp (goal >= 3)": fast / table["httpx-aiohttp"]["rate"],
        "fast llhttp / fast h11": fast / table["fast (h11)"]["rate"],
    }
    return {"concurrency": CONCURRENCY, "clients": table, "ratios": goals}


def markdown(result: dict[str, Any]) -> str:
    lines = ["| transport | req/s @64 | client CPU µs/req | x official |", "|---|---|---|---|"]
    official = result["clients"]["official"]["rate"]
    for name, row in result["clients"].items():
        lines.append(f"| {name} | {row['rate']:,.0f} | {row['cpu_us_per_item']:,.0f} | {row['rate'] / official:.2f}x |")
    lines.append("")
    lines += [f"- {k}: **{v:.2f}**" for k, v in result["ratios"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one short round (smoke test), into results/tmp/")
    p.add_argument("--rounds", type=int, default=0, help="rounds (default 5, quick 1)")
    p.add_argument("--seconds", type=float, default=0.0, help="seconds per measurement (default 2, quick 0.3)")
    args = p.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 5)
    seconds = args.seconds or (0.3 if args.quick else 2.0)
    proc, url = start_simulator()
    try:
        server = psutil.Process(proc.pid)
        result = asyncio.run(run(url, server, rounds, seconds, warmup=min(0.5, seconds)))
    finally:
        proc.terminate()
        proc.wait(10)
    result["machine"] = machine()
    out = RESULTS / "tmp" if args.quick else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    (out / "transport.json").write_text(json.dumps(result, indent=1))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
