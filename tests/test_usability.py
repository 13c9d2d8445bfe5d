"""Library-side fixes from trying the project as a new user, over loopback against the simulator."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import ollama_async as oa
from ollama_async import AsyncClient, OllamaTimeoutError, RequestError
from ollama_async._host import parse_host
from ollama_async.testing import Fault, Simulator

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class NoHeadProxy(httpx.AsyncBaseTransport):
    """A proxy on the way that does not support HEAD (answers ``status``); the rest reaches the server."""

    def __init__(self, status: int | None) -> None:  # None: HEAD goes through
        self.status = status
        self.inner = httpx.AsyncHTTPTransport()
        self.methods: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.methods.append(request.method)
        if request.method == "HEAD" and self.status is not None:
            return httpx.Response(self.status, text=f"{self.status} not supported here")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("status", [405, 501, 400])
async def test_create_blob_uploads_when_head_is_not_supported(tmp_path: Path, status: int) -> None:
    blob = tmp_path / "model.gguf"
    blob.write_bytes(b"GGUF" + bytes(3000))
    proxy = NoHeadProxy(status)
    async with Simulator() as sim, httpx.AsyncClient(base_url=sim.url, transport=proxy) as http, \
            AsyncClient(http_client=http, max_retries=0) as client:
        digest = await client.create_blob(blob)
        assert proxy.methods == ["HEAD", "POST"]
        async with httpx.AsyncClient(base_url=sim.url) as raw:  # the server has it now
            assert (await raw.head(f"/api/blobs/{digest}")).status_code == 200


async def test_create_blob_skips_the_upload_when_the_server_has_it(tmp_path: Path) -> None:
    blob = tmp_path / "model.gguf"
    blob.write_bytes(b"GGUF" + bytes(10))
    proxy = NoHeadProxy(None)
    async with Simulator() as sim, httpx.AsyncClient(base_url=sim.url, transport=proxy) as http, \
            AsyncClient(http_client=http) as client:
        digest = await client.create_blob(blob)
        assert await client.create_blob(blob) == digest
    assert proxy.methods == ["HEAD", "POST", "HEAD"]  # 404 then upload; then 200: no second upload


async def test_read_timeout_names_the_limit() -> None:
    async with Simulator() as sim:
        for timeout, expected in ((0.2, "0.2s"), (httpx.Timeout(5, read=0.3), "0.3s")):
            async with AsyncClient(sim.url, timeout=timeout, max_retries=0) as client:
                sim.inject(Fault.slow_first_byte(2))
                with pytest.raises(OllamaTimeoutError, match=f"read timeout after {re.escape(expected)}"):
                    await client.generate("llama3.2", "x")
                sim.inject(Fault.slow_first_byte(2))
                with pytest.raises(OllamaTimeoutError, match=r"read timeout after 0\.1s"):
                    await client.generate("llama3.2", "x", timeout=0.1)


@pytest.mark.parametrize("host", ["not a url", "ex ample.com", "host/", "-bad-"])
def test_invalid_host_is_a_request_error(host: str) -> None:
    if host == "host/":
        assert parse_host(host) == "http://host:11434"  # a trailing slash is an empty base path
        return
    with pytest.raises(RequestError, match="invalid host") as info:
        AsyncClient(host)
    assert info.value.field == "host"


def test_batch_jobs_example_runs_without_numpy(tmp_path: Path) -> None:
    blocker = tmp_path / "numpy"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('numpy is blocked for this test')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "batch_jobs.py"], cwd=ROOT / "examples", env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "5000 vectors as lists" in proc.stdout


async def _serve_once(reply: bytes) -> tuple[int, asyncio.Server]:
    """A TCP server that answers any request with ``reply`` and closes (what a non-Ollama port does)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server.sockets[0].getsockname()[1], server


@pytest.mark.parametrize(("reply", "plain"), [
    # a plain-HTTP server's answer to a ClientHello (Go's server, and the simulator, send a 400)
    (b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n", True),
    (b"\x15\x03\x01\x00\x02\x02\x46", False),  # a TLS alert: TLS is spoken there, it failed otherwise
])
async def test_https_against_a_non_tls_reply_says_the_tls_handshake_failed(reply: bytes, plain: bool) -> None:
    port, server = await _serve_once(reply)
    try:
        async with oa.AsyncClient(f"https://127.0.0.1:{port}", max_retries=0, timeout=30) as client:
            with pytest.raises(oa.OllamaConnectionError) as info:  # at once: not a connect timeout
                await client.version()
    finally:
        server.close()
    assert f"the TLS handshake with https://127.0.0.1:{port} failed" in str(info.value)
    assert info.value.plain_http is plain
    assert (f"use http://127.0.0.1:{port}" in str(info.value)) is plain


async def test_https_against_the_simulator_is_a_plain_http_error(sim: Simulator) -> None:
    https = sim.url.replace("http://", "https://")
    async with oa.AsyncClient(https, max_retries=0, timeout=30) as client:
        with pytest.raises(oa.OllamaConnectionError) as info:
            await client.generate("llama3.2", "x")
    assert info.value.plain_http and f"use {sim.url}" in str(info.value)


async def test_a_port_closed_at_once_is_no_tls_diagnosis() -> None:
    port, server = await _serve_once(b"")
    try:
        async with oa.AsyncClient(f"http://127.0.0.1:{port}", max_retries=0, timeout=30) as client:
            with pytest.raises(oa.OllamaConnectionError) as info:
                await client.version()
    finally:
        server.close()
    assert not info.value.plain_http and "TLS" not in str(info.value)
