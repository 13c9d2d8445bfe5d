"""The simulator the observability tests share (logs, metrics, OpenTelemetry), one per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import ollama_async as oa
from ollama_async.testing import Fault, ModelSpec, Simulator

GEN = "gen"
SLOW = "slow"  # one server slot, measurable load / prompt / token times
EMB = "emb"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(
        [
            ModelSpec(GEN, tokens=6, slots=4),
            ModelSpec(SLOW, tokens=5, slots=1, load_ms=30, prompt_ms=5, token_ms=4),
            ModelSpec(EMB, kind="embed", dim=8),
        ],
        seed=0,
    ) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(sim: Simulator) -> Iterator[None]:
    """No scripted fault outlives its test."""
    sim.clear_faults()
    yield
    sim.clear_faults()


async def stop_early_then_break(client: oa.AsyncClient, sim: Simulator) -> oa.Stream[oa.GenerateResponse]:
    """Leave one stream after its first part, then read one that breaks after 2 parts with an
    ``{"error": "boom"}`` line; returns the first."""
    stream = await client.generate(GEN, "x", stream=True)
    async with stream:
        async for _ in stream:
            break
    sim.inject(Fault.error_line(after=2, error="boom"))
    with pytest.raises(oa.StreamError):
        async for _ in await client.generate(GEN, "x", stream=True):
            pass
    return stream
