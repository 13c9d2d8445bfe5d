"""One table of hostile or broken server replies, each run against both transports.

Every case runs on the fast path (the default under asyncio) and on the httpx path
(``OLLAMA_ASYNC_TRANSPORT=httpx``), over a real loopback socket to a scripted raw server, and is
followed by normal requests on the same client whose replies must be their own: proof that the
pool did not keep a connection in a confused state. Each case reproduces a defect of the
transport before it was framed by llhttp (see the issue "A transport you can trust").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import ollama_async as oa

from ._scripted import Scripted, chunked, head, ok_reply, prompt_of, reset, trickle

pytestmark = pytest.mark.anyio

Writer = asyncio.StreamWriter
Expect = type[BaseException] | None  # None: the call succeeds


def raw(data: bytes, keep: bool = True) -> Callable[[bytes, Writer], Awaitable[bool]]:
    async def reply(request: bytes, w: Writer) -> bool:
        w.write(data)
        await w.drain()
        return keep

    return reply


def _json_body(text: str) -> bytes:
    return json.dumps({"model": "m", "created_at": "t", "response": text, "done": True}).encode()


HOSTILE = _json_body("hostile")


async def _endless_500(request: bytes, w: Writer) -> bool:
    w.write(head(500, {"Transfer-Encoding": "chunked"}))
    while True:  # never ends; the client must be able to stop waiting for it
        w.write(b"5\r\nerror\r\n")
        await w.drain()
        await asyncio.sleep(0.01)


async def _normal(request: bytes, w: Writer) -> bool:
    w.write(ok_reply(prompt_of(request)))
    return True


async def _rst_in_close_delimited(request: bytes, w: Writer) -> bool:
    w.write(head(headers={"Connection": "close"}) + HOSTILE[:20])
    await w.drain()
    await asyncio.sleep(0.05)
    reset(w)
    return False


async def _trickled_status_line(request: bytes, w: Writer) -> bool:
    status = b"HTTP/1.1 200 OK\r\n"
    await trickle(w, status, pause=0.1)
    w.write(b"Content-Length: %d\r\n\r\n%s" % (len(HOSTILE), HOSTILE))
    return True


def _redirect(status: int, location: str) -> Callable[[bytes, Writer], Awaitable[bool]]:
    async def reply(request: bytes, w: Writer) -> bool:
        if b" /final " in request.split(b"\r\n", 1)[0]:
            w.write(ok_reply("final"))
        else:
            w.write(head(status, {"Location": location.format(port=_port_of(request)), "Content-Length": "0"}))
        return True

    return reply


def _port_of(request: bytes) -> int:
    for line in request.split(b"\r\n"):
        if line.lower().startswith(b"host:"):
            return int(line.rsplit(b":", 1)[1])
    raise AssertionError("no Host header")


def _first_lines(srv: Scripted) -> list[bytes]:
    return [r.split(b"\r\n", 1)[0] for r in srv.requests if b"normal-" not in r]


def _posts_seen_once(srv: Scripted) -> None:
    posts = [r for r in srv.requests if r.startswith(b"POST /api/generate") and prompt_of(r) == "hostile"]
    assert len(posts) == 1, _first_lines(srv)
    final = [r for r in srv.requests if b" /final " in r.split(b"\r\n", 1)[0]]
    assert len(final) == 1


def _get_after_303(srv: Scripted) -> None:
    _posts_seen_once(srv)
    final = next(r for r in srv.requests if b" /final " in r.split(b"\r\n", 1)[0])
    assert final.startswith(b"GET /final ") and b"content-length" not in final.lower()


def _authorization_dropped(srv: Scripted) -> None:
    _posts_seen_once(srv)
    first = next(r for r in srv.requests if prompt_of(r) == "hostile")
    final = next(r for r in srv.requests if b" /final " in r.split(b"\r\n", 1)[0])
    assert b"authorization: bearer k" in first.lower()
    assert b"authorization" not in final.lower() and b"host: localhost:" in final.lower()


def _sent_once(srv: Scripted) -> None:
    assert len([r for r in srv.requests if prompt_of(r) == "hostile"]) == 1


def _redirects_bounded(srv: Scripted) -> None:
    assert len([r for r in srv.requests if prompt_of(r) == "hostile"]) == 21  # 1 + max_redirects (20)


@dataclass
class Case:
    name: str
    reply: Callable[[bytes, Writer], Awaitable[bool]]
    expect: Expect = None
    httpx_expect: Any = "same"  # where h11 (the httpx path) legitimately answers otherwise
    text: str = "hostile"  # the response text expected on success
    stream: bool = False
    wire: oa.WireLimits | None = None
    retries: int = 0
    env: dict[str, str] = field(default_factory=dict)
    check: Callable[[Scripted], None] | None = None
    cancel_after: float | None = None  # wrap the call in anyio.move_on_after: it must return
    refuse: int = 0  # connections the server closes as soon as it accepts them

    def expected(self, transport_path: str) -> Expect:
        return self.expect if transport_path == "fast" or self.httpx_expect == "same" else self.httpx_expect


CONN = oa.OllamaConnectionError
BIG = oa.ResponseTooLargeError
CHUNKED = {"Transfer-Encoding": "chunked"}

CASES = [
    # lax parsing: each of these was accepted (or waited on) by the hand-written parser
    Case("chunk-size-0x", raw(head(headers=CHUNKED) + b"0x%x\r\n%s\r\n0\r\n\r\n" % (len(HOSTILE), HOSTILE)), CONN),
    Case("content-length-plus", raw(b"HTTP/1.1 200 OK\r\nContent-Length: +%d\r\n\r\n%s" % (len(HOSTILE), HOSTILE)),
         CONN),
    Case("content-length-conflict", raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Length: 9999\r\n\r\n%s"
                                        % (len(HOSTILE), HOSTILE)), CONN),
    Case("transfer-encoding-xchunked", raw(head(headers={"Transfer-Encoding": "xchunked"}) + chunked(HOSTILE)), CONN),
    Case("status-2_00", raw(b"HTTP/1.1 2_00 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(HOSTILE), HOSTILE)), CONN),
    Case("space-before-colon", raw(b"HTTP/1.1 200 OK\r\nContent-Length : %d\r\n\r\n%s" % (len(HOSTILE), HOSTILE)),
         CONN),
    # bare LF: h11 accepts it; llhttp refuses it at once (it used to wait for the read timeout)
    Case("bare-lf-head", raw(b"HTTP/1.1 200 OK\nContent-Length: %d\n\n%s" % (len(HOSTILE), HOSTILE)), CONN,
         httpx_expect=None),
    # obs-fold: unfolded, as RFC 9112 asks of a user agent (h11 does it too; llhttp alone refuses)
    Case("obs-fold", raw(b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nX-B: c\r\n\td\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(HOSTILE), HOSTILE))),
    Case("unrequested-101", raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"),
         CONN),
    Case("trailer-beyond-max-head", raw(head(headers=CHUNKED) + b"%x\r\n%s\r\n0\r\nX-T: %s\r\n\r\n"
                                        % (len(HOSTILE), HOSTILE, b"t" * 200_000)),
         BIG, httpx_expect=CONN, wire=oa.WireLimits(max_head=65536)),
    Case("head-beyond-max-head", raw(head(headers={"X-Big": "b" * 8000, "Content-Length": str(len(HOSTILE))}) + HOSTILE),
         BIG, httpx_expect=None, wire=oa.WireLimits(max_head=4096)),
    Case("head-trickled", _trickled_status_line, oa.OllamaTimeoutError, httpx_expect=None,
         wire=oa.WireLimits(head_timeout=0.5)),
    # framing and connection failures
    Case("close-after-reading-the-request", raw(b"", keep=False), CONN),
    Case("accept-and-close", _normal, None, refuse=1, retries=1, check=_sent_once),
    Case("accept-and-close-twice", _normal, None, refuse=2, retries=2, check=_sent_once),
    Case("reset-in-close-delimited-body", _rst_in_close_delimited, CONN),
    Case("reset-in-close-delimited-body-retried", _rst_in_close_delimited, CONN, retries=1,
         check=lambda srv: None if len([r for r in srv.requests if prompt_of(r) == "hostile"]) == 2 else
         pytest.fail("a connection error must be retried within max_retries")),
    Case("second-reply-after-content-length", raw(ok_reply("hostile") + ok_reply("WRONG"))),
    Case("bad-gzip", raw(head(headers={"Content-Encoding": "gzip", "Content-Length": "7"}) + b"notgzip"),
         oa.ResponseError),
    Case("bad-gzip-stream", raw(head(headers={"Content-Encoding": "gzip", **CHUNKED}) + chunked(b"notgzip")),
         oa.IncompleteStreamError, stream=True),
    # limits
    Case("body-beyond-max-body", raw(ok_reply("x" * 5000)), BIG, wire=oa.WireLimits(max_body=1000)),
    Case("line-beyond-max-line", raw(head(headers=CHUNKED) + chunked(_json_body("x" * 5000) + b"\n")), BIG,
         stream=True, wire=oa.WireLimits(max_line=1000)),
    # redirects: followed as httpx follows them, each request reaching the origin once
    Case("redirect-307-same-origin", _redirect(307, "/final"), text="final", check=_posts_seen_once),
    Case("redirect-303-becomes-get", _redirect(303, "/final"), text="final", check=_get_after_303),
    Case("redirect-307-other-origin-drops-authorization", _redirect(307, "http://localhost:{port}/final"),
         text="final", env={"OLLAMA_API_KEY": "k"}, check=_authorization_dropped),
    Case("redirect-loop", _redirect(307, "/api/generate"), oa.ResponseError, check=_redirects_bounded),
    # an endless error body must not hold the caller past its own cancel scope
    Case("endless-500-body", _endless_500, None, cancel_after=1.0),
    Case("endless-500-body-stream", _endless_500, None, stream=True, cancel_after=1.0),
]


def _serve(case: Case) -> Callable[[bytes, Writer], Awaitable[bool]]:
    async def reply(request: bytes, w: Writer) -> bool:
        if prompt_of(request).startswith("normal-"):
            return await _normal(request, w)
        return await case.reply(request, w)

    return reply


async def _call(client: oa.AsyncClient, stream: bool) -> str:
    if stream:
        parts = [p async for p in await client.generate("m", "hostile", stream=True)]
        return "".join(p.response for p in parts)
    return (await client.generate("m", "hostile")).response


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_hostile_reply(case: Case, transport_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    async with Scripted(_serve(case), refuse=case.refuse) as srv, oa.AsyncClient(
        srv.url, timeout=2.0, max_retries=case.retries, wire_limits=case.wire
    ) as client:
        client._transport.retry = oa.RetryPolicy(max_retries=case.retries, backoff_base=0.001)
        assert (client._transport._fast is not None) == (transport_path == "fast")
        expect = case.expected(transport_path)
        with anyio.fail_after(15):  # a hang is a failure, not a slow pass
            if case.cancel_after is not None:
                with anyio.move_on_after(case.cancel_after) as scope:
                    await _call(client, case.stream)
                assert scope.cancelled_caught
            elif expect is None:
                assert await _call(client, case.stream) == case.text
            else:
                with pytest.raises(expect):
                    await _call(client, case.stream)
            for i in range(3):  # the same client, the same pool: every reply is its own
                assert (await client.generate("m", f"normal-{i}")).response == f"normal-{i}"
        if case.check is not None:
            case.check(srv)


# -- the send side: nothing that could inject a header or a request leaves the client ---------------


BAD_HEADERS = [
    ({"X-Evil": "a\r\nX-Injected: 1"}, "X-Evil"),
    ({"X-Evil": "a\r\n\r\nDELETE /api/delete HTTP/1.1\r\nHost: x\r\n\r\n"}, "X-Evil"),
    ({"X-Evil": "a\nb"}, "X-Evil"),
    ({"X-Evil": "a\x00b"}, "X-Evil"),
    ({"X Evil": "a"}, "X Evil"),
    ({"X-Evil:": "a"}, "X-Evil:"),
    ({"X-Evil": "ä"}, "X-Evil"),
]


async def _nothing_reaches(srv: Scripted) -> None:
    await asyncio.sleep(0.05)
    assert srv.requests == []


@pytest.mark.parametrize(("headers", "name"), BAD_HEADERS)
async def test_bad_client_headers_are_refused_before_sending(transport_path: str, headers: dict[str, str], name: str) -> None:
    async with Scripted(_normal) as srv:
        with pytest.raises(oa.RequestError) as info:
            oa.AsyncClient(srv.url, headers=headers)
        assert name in str(info.value) and info.value.field == f"headers[{name!r}]"
        await _nothing_reaches(srv)


@pytest.mark.parametrize(("headers", "name"), BAD_HEADERS[:4])
async def test_bad_per_request_headers_are_refused_before_sending(transport_path: str, headers: dict[str, str], name: str) -> None:
    async with Scripted(_normal) as srv, oa.AsyncClient(srv.url, max_retries=0) as client:
        call = client._call("POST", "/api/generate", {"model": "m", "prompt": "normal-0"})
        call.headers = headers
        with pytest.raises(oa.RequestError, match=name):
            await client._request(call, oa.GenerateResponse)
        await _nothing_reaches(srv)
        # headers changed on the http_client after construction are checked too, on both paths
        client.http_client.headers["X-Later"] = "a\rb"
        with pytest.raises(oa.RequestError, match="X-Later"):
            await client.generate("m", "normal-1")
        await _nothing_reaches(srv)


async def test_api_key_from_the_environment_is_checked(transport_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", "k\r\nX-Injected: 1")
    async with Scripted(_normal) as srv:
        with pytest.raises(oa.RequestError, match="Authorization"):
            oa.AsyncClient(srv.url)
        await _nothing_reaches(srv)


def test_hosts_are_idna_2008_and_bad_labels_a_typed_error() -> None:
    client = oa.AsyncClient("http://faß.example:8080")
    fast = client._transport._fast
    assert fast is not None
    assert fast._host == "xn--fa-hia.example"  # the name resolved: as the Host header says, not fass.example
    assert fast._host_header == b"Host: xn--fa-hia.example:8080\r\n"
    with pytest.raises(oa.RequestError) as info:
        oa.AsyncClient("http://" + "a" * 64 + ".example")
    assert info.value.field == "host"


# -- the pool under cancellation, timeouts and close ------------------------------------------------


async def test_cancelling_during_connect_keeps_the_pool_count_exact() -> None:
    async def slow(request: bytes, w: Writer) -> bool:
        await asyncio.sleep(0.02)
        return await _normal(request, w)

    async with Scripted(slow) as srv, oa.AsyncClient(
        srv.url, concurrency=64, max_retries=0,
        limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
    ) as client:
        for spins in range(12):  # cancel after 0..11 loop iterations: before, during, after connect
            tasks = [asyncio.ensure_future(client.generate("m", f"normal-{i}")) for i in range(16)]
            for _ in range(spins):
                await asyncio.sleep(0)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.1)
        fast = client._transport._fast
        assert fast is not None and fast._pool is not None
        pool = fast._pool
        assert pool.total == len(pool.conns) >= 0 and pool.in_use() == 0
        srv.peak = srv.open  # from here on: what the pool holds at once
        results = await asyncio.gather(*(client.generate("m", f"normal-{i}") for i in range(40)))
        assert [r.response for r in results] == [f"normal-{i}" for i in range(40)]
        assert srv.peak <= 8


async def test_pool_and_connect_timeouts_are_typed_and_pool_timeouts_retried(transport_path: str) -> None:
    async def slow(request: bytes, w: Writer) -> bool:
        await asyncio.sleep(0.5)
        return await _normal(request, w)

    async with Scripted(slow) as srv, oa.AsyncClient(
        srv.url, concurrency=8, max_retries=1, timeout=httpx.Timeout(5.0, pool=0.05),
        limits=httpx.Limits(max_connections=1),
    ) as client:
        client._transport.retry = oa.RetryPolicy(max_retries=1, backoff_base=0.001)
        first = asyncio.ensure_future(client.generate("m", "normal-0"))
        await asyncio.sleep(0.1)
        with pytest.raises(oa.OllamaTimeoutError) as info:
            await client.generate("m", "normal-1")
        assert info.value.phase == "pool"
        assert (await first).response == "normal-0"
    # a listening socket whose backlog is full: the SYN is dropped, connect times out
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            fillers.append(s)
        try:
            async with oa.AsyncClient(f"http://127.0.0.1:{port}", max_retries=0,
                                      timeout=httpx.Timeout(5.0, connect=0.2)) as client:
                with anyio.fail_after(10):
                    with pytest.raises(oa.OllamaTimeoutError) as info2:
                        await client.version()
                assert info2.value.phase == "connect"
        finally:
            for s in fillers:
                s.close()


async def test_connection_closed_while_handed_to_a_waiting_request(transport_path: str) -> None:
    async def reply(request: bytes, w: Writer) -> bool:
        w.write(ok_reply(prompt_of(request)))
        return False  # close right after every reply, without saying so

    async with Scripted(reply) as srv, oa.AsyncClient(
        srv.url, concurrency=8, max_retries=0, limits=httpx.Limits(max_connections=1)
    ) as client:
        with anyio.fail_after(10):
            results = await asyncio.gather(*(client.generate("m", f"normal-{i}") for i in range(6)))
        assert [r.response for r in results] == [f"normal-{i}" for i in range(6)]
        assert sorted(prompt_of(r) for r in srv.requests) == sorted(f"normal-{i}" for i in range(6))


async def test_a_server_closing_every_connection_at_once_is_a_connection_error(transport_path: str) -> None:
    async with Scripted(_normal, refuse=10**6) as srv, oa.AsyncClient(srv.url, max_retries=0) as client:
        with anyio.fail_after(10), pytest.raises(oa.OllamaConnectionError):
            await client.generate("m", "x")
        assert srv.requests == [] and srv.connections <= 4


async def test_stale_keep_alive_connection_is_not_resent_without_retries(transport_path: str) -> None:
    async def reply(request: bytes, w: Writer) -> bool:
        if prompt_of(request) == "second":
            return False  # read it, then close without a reply: it may have been processed
        return await _normal(request, w)

    async with Scripted(reply) as srv, oa.AsyncClient(srv.url, max_retries=0) as client:
        assert (await client.generate("m", "normal-0")).response == "normal-0"
        with pytest.raises(oa.OllamaConnectionError):
            await client.generate("m", "second")
        assert len([r for r in srv.requests if prompt_of(r) == "second"]) == 1
        assert (await client.generate("m", "normal-1")).response == "normal-1"


async def test_aclose_closes_a_stream_still_open(transport_path: str) -> None:
    closed = asyncio.Event()

    async def reply(request: bytes, w: Writer) -> bool:
        w.write(head(headers=CHUNKED))
        line = json.dumps({"model": "m", "created_at": "t", "response": "p", "done": False}).encode() + b"\n"
        try:
            while True:
                w.write(b"%x\r\n%s\r\n" % (len(line), line))
                await w.drain()
                await asyncio.sleep(0.01)
        except ConnectionError:
            closed.set()
            raise

    async with Scripted(reply) as srv:
        client = oa.AsyncClient(srv.url)
        stream = await client.generate("m", "x", stream=True)
        iterator = stream.__aiter__()
        assert (await iterator.__anext__()).response == "p"
        await client.aclose()
        with anyio.fail_after(5):
            await closed.wait()
        with pytest.raises(oa.OllamaError):
            await iterator.__anext__()
        assert srv.open == 0 or closed.is_set()


async def test_head_reply_with_content_length_has_no_body(transport_path: str, tmp_path: Path) -> None:
    async def reply(request: bytes, w: Writer) -> bool:
        if request.startswith(b"HEAD "):
            w.write(head(headers={"Content-Length": "12345"}))  # the size of the blob, no body follows
            return True
        return await _normal(request, w)

    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"data")
    async with Scripted(reply) as srv, oa.AsyncClient(srv.url, timeout=2.0, max_retries=0) as client:
        with anyio.fail_after(10):
            assert (await client.create_blob(blob)).startswith("sha256:")
            assert (await client.generate("m", "normal-0")).response == "normal-0"
