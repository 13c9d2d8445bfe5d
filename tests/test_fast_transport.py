"""The client's own HTTP/1.1 pool (``ollama_async/_fast.py``): when it is used, and the wire cases.

The loopback suite already runs every endpoint and the simulator's faults through it (under
asyncio); here are the HTTP edge cases a real server or proxy may produce, served byte by byte
from a scripted socket server, and the cases where the client must go through httpx instead.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

import ollama_async as oa
from ollama_async.testing import ModelSpec, Simulator

from ._scripted import OK, OK_BYTES, Scripted
from ._scripted import chunked as _chunked
from ._scripted import head as _head
from ._scripted import trickle as _trickle

pytestmark = pytest.mark.anyio

def _used_fast(client: oa.AsyncClient) -> int:
    fast = client._transport._fast
    pool = fast._pool if fast is not None else None
    return pool.created if pool is not None else 0


async def test_fast_path_is_the_default_under_asyncio_and_keeps_connections() -> None:
    async def reply(request: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(_head(headers={"Content-Length": str(len(OK_BYTES))}) + OK_BYTES)
        return True

    async with Scripted(reply) as srv, oa.AsyncClient(srv.url) as client:
        for _ in range(5):
            assert (await client.generate("m", "x")).response == "ok"
    assert _used_fast(client) == 1 and srv.connections == 1
    first = srv.requests[0]
    assert first.startswith(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nContent-Type: application/json\r\n" in first
    assert b"\r\nUser-Agent: ollama-async/" in first


@pytest.mark.parametrize("step", [1, 7, 4096])
async def test_responses_split_anywhere_are_parsed(step: int) -> None:
    lines = [json.dumps({**OK, "response": f"t{i}", "done": False}).encode() + b"\n" for i in range(20)]
    lines.append(OK_BYTES + b"\n")

    async def reply(request: bytes, w: asyncio.StreamWriter) -> bool:
        if b'"stream":false' in request:
            body = OK_BYTES
            await _trickle(w, _head(headers={"Content-Length": str(len(body))}) + body, step)
        else:
            # chunk boundaries that cut lines in two, an extension, a trailer, a blank line
            body = b"".join(lines)
            pieces = [body[i:i + 50] for i in range(0, len(body), 50)] + [b"\r\n\n"]
            payload = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\nX-Trailer: 1\r\n\r\n"
            await _trickle(w, _head(headers={"Transfer-Encoding": "chunked"}) + payload, step)
        return True

    async with Scripted(reply) as srv, oa.AsyncClient(srv.url) as client:
        assert (await client.generate("m", "x")).response == "ok"
        parts = [p async for p in await client.generate("m", "x", stream=True)]
        again = [p async for p in await client.generate("m", "x", stream=True)]
    assert [p.response for p in parts] == [f"t{i}" for i in range(20)] + ["ok"]
    assert len(again) == 21 and srv.connections == 1


async def test_informational_eof_delimited_and_gzip_bodies() -> None:
    async def reply(request: bytes, w: asyncio.StreamWriter) -> bool:
        if b"/api/generate" in request:  # 100 Continue first, then a body that ends with the connection
            w.write(b"HTTP/1.1 100 Continue\r\n\r\n" + _head(headers={"Connection": "close"}) + OK_BYTES)
            return False
        body = gzip.compress(json.dumps({"version": "0.32.0"}).encode())
        w.write(_head(headers={"Content-Length": str(len(body)), "Content-Encoding": "gzip"}) + body)
        return True

    async with Scripted(reply) as srv, oa.AsyncClient(srv.url) as client:
        assert (await client.generate("m", "x")).response == "ok"
        assert (await client.generate("m", "x")).response == "ok"
        assert (await client.version()).version == "0.32.0"
    assert srv.connections == 3  # closed after each EOF-delimited reply, kept after the gzip one


async def test_stale_keep_alive_connection_is_replaced_without_error() -> None:
    async def reply(request: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(_head(headers={"Content-Length": str(len(OK_BYTES))}) + OK_BYTES)
        await w.drain()
        return False  # close right after, without saying so

    async with Scripted(reply) as srv, oa.AsyncClient(srv.url, max_retries=0) as client:
        for _ in range(3):
            assert (await client.generate("m", "x")).done
    assert srv.connections == 3


async def test_disconnect_before_reply_is_retried_then_a_connection_error() -> None:
    async def reply(request: bytes, w: asyncio.StreamWriter) -> bool:
        return False

    async with Scripted(reply) as srv, oa.AsyncClient(srv.url, max_retries=1) as client:
        client._transport.retry = oa.RetryPolicy(max_retries=1, backoff_base=0.001)
        with pytest.raises(oa.OllamaConnectionError):
            await client.generate("m", "x")
    assert len(srv.requests) == 2


async def test_body_cut_short_is_an_error_not_a_short_reply() -> None:
    async def reply(request: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(_head(headers={"Content-Length": "500"}) + OK_BYTES)
        return False

    async with Scripted(reply) as srv, oa.AsyncClient(srv.url, max_retries=0) as client:
        with pytest.raises(oa.OllamaConnectionError):
            await client.generate("m", "x")


async def test_garbage_reply_is_a_connection_error() -> None:
    async def reply(request: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        return True

    async with Scripted(reply) as srv, oa.AsyncClient(srv.url, max_retries=0) as client:
        with pytest.raises(oa.OllamaConnectionError):
            await client.generate("m", "x")


async def test_read_timeout_between_bytes() -> None:
    async def reply(request: bytes, w: asyncio.StreamWriter) -> bool:
        if b'"stream":false' in request:
            await asyncio.sleep(1.0)
            return False
        w.write(_head(headers={"Transfer-Encoding": "chunked"}) + b"%x\r\n%s\n\r\n" % (len(OK_BYTES) + 1, OK_BYTES))
        await w.drain()
        await asyncio.sleep(1.0)
        return False

    async with Scripted(reply) as srv, oa.AsyncClient(srv.url, timeout=0.2, max_retries=0) as client:
        with pytest.raises(oa.OllamaTimeoutError) as info:
            await client.generate("m", "x")
        assert info.value.phase == "read"
        with pytest.raises(oa.OllamaTimeoutError):
            async for _ in await client.generate("m", "x", stream=True):
                pass


async def test_connection_refused_is_the_builtin_connection_error() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    async with oa.AsyncClient(f"http://127.0.0.1:{port}", max_retries=0) as client:
        with pytest.raises(ConnectionError):
            await client.version()


async def test_pool_never_opens_more_than_max_connections() -> None:
    async def reply(request: bytes, w: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.01)
        w.write(_head(headers={"Content-Length": str(len(OK_BYTES))}) + OK_BYTES)
        return True

    async with Scripted(reply) as srv, oa.AsyncClient(
        srv.url, concurrency=50, limits=httpx.Limits(max_connections=3, max_keepalive_connections=3)
    ) as client:
        results = await asyncio.gather(*(client.generate("m", "x") for _ in range(30)))
    assert all(r.done for r in results) and srv.connections == 3


async def test_redirect_is_followed_on_the_pool_and_cookies_switch_to_httpx() -> None:
    async def reply(request: bytes, w: asyncio.StreamWriter) -> bool:
        if request.startswith(b"POST /old"):
            w.write(_head(307, {"Location": "/api/generate", "Content-Length": "0"}))
        elif b"/api/version" in request:
            body = b'{"version":"1"}'
            w.write(_head(headers={"Content-Length": str(len(body)), "Set-Cookie": "route=a; Path=/"}) + body)
        else:
            w.write(_head(headers={"Content-Length": str(len(OK_BYTES))}) + OK_BYTES)
        return True

    async with Scripted(reply) as srv, oa.AsyncClient(srv.url) as client:
        call = client._call("POST", "/old", {"model": "m"}, model="m")
        assert (await client._request(call, oa.GenerateResponse)).response == "ok"
        assert [r.split(b" ", 2)[:2] for r in srv.requests] == [[b"POST", b"/old"], [b"POST", b"/api/generate"]]
        assert _used_fast(client) == 1  # both hops over the pool, each sent once
        await client.version()
        assert client.http_client.cookies.get("route") == "a"
        await client.generate("m", "x")
    assert b"Cookie: route=a" in srv.requests[-1] or b"cookie: route=a" in srv.requests[-1]


async def test_api_key_header_on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", "secret")

    async def reply(request: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(_head(headers={"Content-Length": str(len(OK_BYTES))}) + OK_BYTES)
        return True

    async with Scripted(reply) as srv, oa.AsyncClient(srv.url) as client:
        await client.generate("m", "x")
    assert _used_fast(client) == 1
    assert b"\r\nAuthorization: Bearer secret\r\n" in srv.requests[0]


async def test_slow_reader_pauses_the_socket_and_gets_every_byte() -> None:
    line = json.dumps({**OK, "response": "x" * 2000, "done": False}).encode() + b"\n"

    async def reply(request: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(_head(headers={"Transfer-Encoding": "chunked"}))
        for _ in range(2000):  # ~4 MB, far beyond the pause threshold
            w.write(b"%x\r\n%s\r\n" % (len(line), line))
        w.write(_chunked(OK_BYTES + b"\n")[0:])
        await w.drain()
        return True

    async with Scripted(reply) as srv, oa.AsyncClient(srv.url) as client:
        count = 0
        async for part in await client.generate("m", "x", stream=True):
            count += 1
            if count % 200 == 0:
                await asyncio.sleep(0.01)
            assert part.response
        assert count == 2001
        assert (await client.generate("m", "x", stream=True)) is not None
    assert srv.connections == 1


async def test_break_closes_the_connection_and_frees_the_server_slot() -> None:
    with Simulator(models=[ModelSpec(name="slow", slots=1, tokens=200, token_ms=10)]) as sim:
        async with oa.AsyncClient(sim.url) as client:
            stream = await client.generate("slow", "x", stream=True)
            async for _ in stream:
                break
            for _ in range(50):  # asyncio finalises the dropped generator in a task of its own
                if sim.stats("slow").disconnects:
                    break
                await asyncio.sleep(0.02)
            assert sim.stats("slow").disconnects == 1
            assert client._transport.active_connections() == 0
            assert (await client.generate("slow", "again", options={"num_predict": 1})).done
            assert _used_fast(client) == 2


# -- where httpx must see the request --------------------------------------------------------


async def test_respx_still_intercepts() -> None:
    client = oa.AsyncClient("http://h:1")
    with respx.mock() as mock:
        route = mock.post("http://h:1/api/generate").mock(return_value=httpx.Response(200, json=OK))
        await client.generate("m", "x")
    assert route.called and _used_fast(client) == 0


async def test_injected_client_env_switch_and_hooks_use_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    async def reply(request: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(_head(headers={"Content-Length": str(len(OK_BYTES))}) + OK_BYTES)
        return True

    async with Scripted(reply) as srv:
        async with httpx.AsyncClient() as http, oa.AsyncClient(srv.url, http_client=http) as client:
            await client.generate("m", "x")
            assert client._transport._fast is None
        monkeypatch.setenv("OLLAMA_ASYNC_TRANSPORT", "httpx")
        async with oa.AsyncClient(srv.url) as client:
            await client.generate("m", "x")
            assert client._transport._fast is None
        monkeypatch.delenv("OLLAMA_ASYNC_TRANSPORT")
        seen: list[str] = []

        async def hook(request: httpx.Request) -> None:
            seen.append(request.url.path)

        async with oa.AsyncClient(srv.url) as client:
            client.http_client.event_hooks["request"].append(hook)
            await client.generate("m", "x")
        assert seen == ["/api/generate"] and _used_fast(client) == 0
        async with oa.AsyncClient(srv.url, verify=False) as client:
            assert client._transport._fast is None


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_goes_through_httpx() -> None:
    with Simulator(models=[ModelSpec(name="m", tokens=3)]) as sim:
        async with oa.AsyncClient(sim.url) as client:
            assert (await client.generate("m", "x")).done
            parts = [p async for p in await client.generate("m", "x", stream=True)]
            assert parts[-1].done
            assert _used_fast(client) == 0


async def _collect(stream: AsyncIterator[oa.GenerateResponse]) -> int:
    return len([p async for p in stream])


async def test_many_concurrent_streams_and_requests_share_the_pool() -> None:
    with Simulator(models=[ModelSpec(name="m", slots=16, tokens=50)]) as sim:
        async with oa.AsyncClient(sim.url, concurrency=16) as client:
            streams = [_collect(await client.generate("m", f"s{i}", stream=True)) for i in range(8)]
            singles = [client.generate("m", f"g{i}") for i in range(40)]
            counts = await asyncio.gather(*streams)
            results = await asyncio.gather(*singles)
            assert counts == [51] * 8 and all(r.done for r in results)
            assert client._transport.active_connections() == 0
