"""``--host https://...`` pointed at a plain-HTTP server: say so, instead of a 10 s timeout.

A TLS client that talks to a plain-HTTP port sends a ClientHello the server waits on as the
start of a request line: neither side speaks again until the connect timeout. So while the
first request of a command goes out over ``https``, a plain ``GET /api/version`` goes to the
same port; a ``200`` to it means the port speaks plain HTTP (a TLS server never answers
plaintext with a 200), and the command stops at once with that diagnosis. Nothing of this runs
for ``http://`` hosts, and the probe is dropped as soon as the real request succeeds.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import anyio
import httpx

__all__ = ["plain_http_instead_of_tls", "speaks_plain_http"]

_STATUS_200 = re.compile(rb"HTTP/1\.[01] 200 ")
PROBE_TIMEOUT = 5.0


async def speaks_plain_http(base_url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """True when ``GET <base path>/api/version`` in plaintext to ``base_url``'s port answers 200."""
    url = httpx.URL(base_url)
    host = url.host
    port = url.port or 443
    target = url.path.rstrip("/") + "/api/version"
    request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode("ascii")
    received = b""
    try:
        with anyio.fail_after(timeout):
            async with await anyio.connect_tcp(host, port) as stream:
                await stream.send(request)
                while b"\r\n" not in received and len(received) < 4096:
                    received += await stream.receive()
    except (OSError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError, UnicodeError):
        return False
    return _STATUS_200.match(received) is not None


async def plain_http_instead_of_tls(base_url: str, request: Callable[[], Awaitable[object]]) -> bool:
    """Run ``request()``; for ``https://`` probe the port meanwhile. True: it speaks plain HTTP.

    When the probe finds plain HTTP, ``request()`` is cancelled and True returned. Otherwise
    ``request()``'s own outcome stands (its exception is raised), and False is returned.
    """
    if not base_url.startswith("https://"):
        await request()
        return False
    plain = False
    error: Exception | None = None
    async with anyio.create_task_group() as tg:

        async def probe() -> None:
            nonlocal plain
            plain = await speaks_plain_http(base_url)
            if plain:
                tg.cancel_scope.cancel()

        tg.start_soon(probe)
        try:
            await request()
        except Exception as exc:  # decided once the probe is in: the probe explains it better
            error = exc
        else:
            tg.cancel_scope.cancel()
    if plain:
        return True
    if error is not None:
        raise error
    return False
