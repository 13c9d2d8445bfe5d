"""The in-process Simulator under both asyncio and trio callers (it runs its own loop thread)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from ollama_async.testing import Fault, ModelSpec, Simulator

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture
async def sim(anyio_backend: str) -> AsyncIterator[Simulator]:
    async with Simulator([ModelSpec("m", slots=2, token_ms=2, tokens=6)]) as s:
        yield s


async def test_stream_and_concurrency(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.url, timeout=10) as c:
        async with c.stream("POST", "/api/generate", json={"model": "m", "prompt": "hi"}) as r:
            lines = [json.loads(x) async for x in r.aiter_lines()]
        assert len(lines) == 7 and lines[-1]["done"] is True
        codes: list[int] = []

        async def one() -> None:
            codes.append(
                (
                    await c.post("/api/generate", json={"model": "m", "prompt": "x", "stream": False})
                ).status_code
            )

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(one)
        assert codes == [200] * 6
        st = sim.stats("m")
        assert st.max_in_flight == 2 and st.requests == 7


async def test_faults_and_stop(sim: Simulator) -> None:
    sim.inject(Fault.error_line(after=1, error="bad"))
    async with httpx.AsyncClient(base_url=sim.url, timeout=10) as c:
        async with c.stream("POST", "/api/generate", json={"model": "m", "prompt": "hi"}) as r:
            lines = [json.loads(x) async for x in r.aiter_lines()]
        assert lines[-1] == {"error": "bad"} and len(lines) == 2
    url = sim.url
    await sim.__aexit__(None, None, None)
    assert not sim.running
    async with httpx.AsyncClient(base_url=url, timeout=2) as c:
        with pytest.raises(httpx.ConnectError):
            await c.get("/")
    await sim.__aenter__()  # restartable; the fixture stops it again
    async with httpx.AsyncClient(base_url=sim.url, timeout=10) as c:
        assert (await c.get("/")).text == "Ollama is running"
