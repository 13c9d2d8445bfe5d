"""A raw loopback HTTP server whose replies are scripted byte by byte (for transport tests).

``Scripted(reply)`` reads each request (head and Content-Length body) and lets ``reply`` write
whatever bytes it likes, split however it likes; ``reply`` returns whether to keep the
connection. It records every request, the connections made and the most open at once.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Awaitable, Callable

Reply = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]  # returns: keep the connection

OK = {"model": "m", "created_at": "t", "response": "ok", "done": True}
OK_BYTES = json.dumps(OK).encode()


def head(status: int = 200, headers: dict[str, str] | None = None, reason: str = "X") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def ok_reply(text: str = "ok", extra: dict[str, str] | None = None) -> bytes:
    """A complete 200 generate reply whose ``response`` is ``text``."""
    body = json.dumps({**OK, "response": text}).encode()
    return head(headers={"Content-Length": str(len(body)), **(extra or {})}) + body


def prompt_of(request: bytes) -> str:
    """The ``prompt`` of a generate request (``""`` for anything else)."""
    _, _, body = request.partition(b"\r\n\r\n")
    try:
        return str(json.loads(body).get("prompt", ""))
    except ValueError:
        return ""


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Scripted:
    """A loopback server whose every reply is written by ``reply`` (raw bytes, any split)."""

    def __init__(self, reply: Reply, refuse: int = 0) -> None:
        self.reply = reply
        self.refuse = refuse  # this many connections are closed as soon as they are accepted
        self.requests: list[bytes] = []
        self.connections = 0
        self.open = 0
        self.peak = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.refuse > 0:
            self.refuse -= 1
            writer.transport.abort() if self.refuse % 2 else writer.close()  # alternate RST and FIN
            return
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            while True:
                request_head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in request_head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = request_head + (await reader.readexactly(length) if length else b"")
                self.requests.append(request)
                if not await self.reply(request, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:  # the server closes at the end of a test
            pass
        finally:
            self.open -= 1
            writer.close()


async def trickle(writer: asyncio.StreamWriter, data: bytes, step: int = 1, pause: float = 0.0) -> None:
    for i in range(0, len(data), step):
        writer.write(data[i:i + step])
        await writer.drain()
        await asyncio.sleep(pause)
