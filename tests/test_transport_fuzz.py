"""Fuzzing the receive side of both transports with hypothesis, over a loopback socket.

Two kinds of replies: valid replies (Content-Length, chunked with extensions and trailers,
close-delimited, 1xx first, extra headers) cut into random TCP writes, which must be read
exactly; and random byte soup built from HTTP fragments, which may fail but only with an
:class:`~ollama_async.OllamaError`. Never a hang, never another exception, never a reply handed
to the wrong request: every reply carries its request's id, and a normal request on the same
client after each example must get its own reply.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import Callable, Iterator

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ollama_async as oa

from ._scripted import Scripted, ok_reply, prompt_of

_ids = itertools.count()

FUZZ = settings(
    max_examples=int(os.environ.get("OLLAMA_ASYNC_FUZZ_EXAMPLES", "150")),
    deadline=None,  # loopback timings vary on a shared machine; the hang guard is fail_after
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)


MARK = "@" * 9  # replaced by the request's id, which has the same length: framing stays valid


def _new_id() -> str:
    return f"r{next(_ids) % 10**8:08d}"


def _part(text: str, done: bool) -> bytes:
    return json.dumps({"model": "m", "created_at": "t", "response": text, "done": done}).encode()


@st.composite
def valid_reply(draw: st.DrawFn) -> tuple[Callable[[bytes], bytes], bool, bool, list[int], str]:
    """(reply for an id, stream?, keep the connection?, cut points, the text it carries)."""
    stream = draw(st.booleans())
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    if stream:
        pieces = [MARK, *draw(st.lists(st.text("abcxyz", min_size=1, max_size=5), max_size=4))]
        template = b"".join(_part(p, False) + b"\n" for p in pieces) + _part("", True) + b"\n"
        text = "".join(pieces)
    else:
        template = _part(MARK, True)
        text = MARK
    headers = [b"HTTP/1.1 200 OK"]
    for i in range(draw(st.integers(0, 3))):
        headers.append(b"X-Extra-%d: %s" % (i, draw(st.sampled_from([b"", b"v", b"a b", b"\xe9"]))))
    keep = framing != "close"
    sizes = draw(st.lists(st.integers(1, 40), max_size=8))
    exts = draw(st.lists(st.sampled_from([b"", b";a=b", b";x"]), min_size=len(sizes) + 1, max_size=len(sizes) + 1))
    trailer = draw(st.sampled_from([b"", b"X-T: 1\r\n"]))
    informational = b"HTTP/1.1 100 Continue\r\n\r\n" if draw(st.booleans()) else b""
    if framing == "length":
        headers.append(b"Content-Length: %d" % len(template))
    elif framing == "chunked":
        headers.append(b"Transfer-Encoding: chunked")
    else:
        headers.append(b"Connection: close")
    head = informational + b"\r\n".join(headers) + b"\r\n\r\n"

    def build(rid: bytes) -> bytes:
        body = template.replace(MARK.encode(), rid)
        if framing != "chunked":
            return head + body
        out, pos = [], 0
        for size, ext in zip([*sizes, len(body)], exts, strict=True):
            piece = body[pos:pos + size]
            pos += len(piece)
            if piece:
                out.append(b"%x%s\r\n%s\r\n" % (len(piece), ext, piece))
        return head + b"".join(out) + b"0\r\n" + trailer + b"\r\n"

    size = len(build(MARK.encode()))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, size - 1)), max_size=12))))
    return build, stream, keep, cuts, text


FRAGMENTS = [
    b"HTTP/1.1 ", b"HTTP/1.0 ", b"HTTP/2 ", b"200", b"204", b"101", b"100", b"500", b" OK", b"\r\n", b"\n",
    b"\r\n\r\n", b"Content-Length: ", b"Content-Length:", b"Transfer-Encoding: chunked", b"Connection: close",
    b"0", b"5", b"1a", b"-1", b"+3", b"ffffffffffffffffffff", b":", b" ", b"\t", b";", b"x", b"{}", b"\x00",
    b'{"response":"' + MARK.encode() + b'","done":true}',
]
soup = st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=6), max_size=24).map(b"".join)


class Harness:
    """One event loop, one scripted server and one client for all examples of a test.

    Reusing the client across examples makes every example also a check that the previous ones
    left its pool in step. (A client per example would cost ~35 ms of TLS set-up in httpx.)
    """

    def __init__(self, transport_path: str) -> None:
        self.path = transport_path
        self.loop = asyncio.new_event_loop()
        self.reply: Callable[[bytes], bytes] = lambda rid: b""
        self.keep = True
        self.cuts: list[int] = []
        self.srv = Scripted(self._serve)
        self.loop.run_until_complete(self.srv.__aenter__())
        timeout = httpx.Timeout(5.0, read=2.0)  # random replies are followed by a close: no wait
        self.client = oa.AsyncClient(self.srv.url, timeout=timeout, max_retries=0)
        assert (self.client._transport._fast is not None) == (transport_path == "fast")

    async def _serve(self, request: bytes, w: asyncio.StreamWriter) -> bool:
        prompt = prompt_of(request)
        if prompt.startswith("normal-"):
            w.write(ok_reply(prompt))
            return True
        data = self.reply(prompt.encode())
        for a, b in itertools.pairwise([0, *[c for c in self.cuts if c < len(data)], len(data)]):
            w.write(data[a:b])
            await w.drain()
            await asyncio.sleep(0)
        return self.keep

    def run(self, reply: Callable[[bytes], bytes], stream: bool, keep: bool, cuts: list[int], text: str | None) -> None:
        """One hostile request and one normal one; ``text``: what a valid reply carries (None: random)."""
        self.reply, self.keep, self.cuts = reply, keep, cuts
        self.loop.run_until_complete(self._exchange(stream, text))

    async def _exchange(self, stream: bool, text: str | None) -> None:
        rid = _new_id()
        client = self.client
        with anyio.fail_after(10):
            try:
                if stream:
                    got = "".join([p.response async for p in await client.generate("m", rid, stream=True)])
                else:
                    got = (await client.generate("m", rid)).response
            except oa.OllamaError:
                assert text is None, "a valid reply must be read"
            else:
                if text is not None:
                    assert got == text.replace(MARK, rid)
                else:  # the only texts a random reply can carry: never another request's reply
                    assert got in ("", rid), got
            normal = await client.generate("m", f"normal-{rid}")
            assert normal.response == f"normal-{rid}"

    def close(self) -> None:
        async def stop() -> None:
            await self.client.aclose()
            await self.srv.__aexit__()
            await asyncio.sleep(0.01)

        async def cancel_rest() -> None:
            rest = asyncio.all_tasks() - {asyncio.current_task()}
            for task in rest:  # server handlers still reading from connections the client closed
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        self.loop.run_until_complete(stop())
        self.loop.run_until_complete(cancel_rest())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


@pytest.fixture
def harness(transport_path: str) -> Iterator[Harness]:
    h = Harness(transport_path)
    yield h
    h.close()


def test_valid_replies_split_anywhere_are_read_exactly(harness: Harness) -> None:
    @FUZZ
    @given(valid_reply())
    def run(case: tuple[Callable[[bytes], bytes], bool, bool, list[int], str]) -> None:
        reply, stream, keep, cuts, text = case
        harness.run(reply, stream, keep, cuts, text)

    run()


def test_random_replies_fail_typed_and_never_desynchronise(harness: Harness) -> None:
    @FUZZ
    @given(soup, st.booleans(), st.lists(st.integers(1, 200), max_size=6))
    def run(reply: bytes, stream: bool, cuts: list[int]) -> None:
        def build(rid: bytes) -> bytes:
            return reply.replace(MARK.encode(), rid)

        # the server closes after its reply: an incomplete one ends there, not at a timeout
        harness.run(build, stream, False, sorted(set(cuts)), None)

    run()
