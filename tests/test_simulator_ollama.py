"""The official ``ollama`` package's AsyncClient works against the simulator unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator

import ollama
import pytest

from ollama_async.testing import ModelSpec, Simulator

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sim(anyio_backend: str) -> AsyncIterator[Simulator]:
    models = [ModelSpec("llama3.2", tokens=5), ModelSpec("nomic-embed-text", kind="embed", dim=32)]
    async with Simulator(models) as s:
        yield s


async def test_generate_and_chat(sim: Simulator) -> None:
    client = ollama.AsyncClient(host=sim.url)
    g = await client.generate(model="llama3.2", prompt="why is the sky blue?")
    assert g.done and g.done_reason == "stop" and len((g.response or "").split()) == 5
    assert g.eval_count == 5 and g.total_duration and g.total_duration > 0 and g.context
    c = await client.chat(model="llama3.2", messages=[{"role": "user", "content": "hello"}])
    assert c.message.role == "assistant" and c.message.content and c.done


async def test_streaming(sim: Simulator) -> None:
    client = ollama.AsyncClient(host=sim.url)
    parts = [p async for p in await client.generate(model="llama3.2", prompt="count", stream=True)]
    assert len(parts) == 6 and parts[-1].done and not any(p.done for p in parts[:-1])
    whole = await client.generate(model="llama3.2", prompt="count")
    assert "".join(p.response or "" for p in parts) == whole.response
    chunks = [
        c
        async for c in await client.chat(
            model="llama3.2", messages=[{"role": "user", "content": "x"}], stream=True
        )
    ]
    assert chunks[-1].done and chunks[-1].eval_count == 5
    assert "".join(c.message.content or "" for c in chunks).count(" ") == 4


async def test_tools_and_think(sim: Simulator) -> None:
    client = ollama.AsyncClient(host=sim.url)

    def add_numbers(a: int, b: int) -> int:
        """Add two numbers.

        Args:
            a: first number
            b: second number
        """
        return a + b

    r = await client.chat(
        model="llama3.2",
        messages=[{"role": "user", "content": "please add_numbers 2 and 3"}],
        tools=[add_numbers],
    )
    calls = r.message.tool_calls or []
    assert [c.function.name for c in calls] == ["add_numbers"]
    assert set(calls[0].function.arguments) == {"a", "b"}
    t = await client.generate(model="llama3.2", prompt="hmm", think=True)
    assert t.thinking and t.response


async def test_embed_list_show_ps(sim: Simulator) -> None:
    client = ollama.AsyncClient(host=sim.url)
    e = await client.embed(model="nomic-embed-text", input=["a", "b"])
    assert len(e.embeddings) == 2 and len(e.embeddings[0]) == 32
    legacy = await client.embeddings(model="nomic-embed-text", prompt="a")
    assert list(legacy.embedding) == pytest.approx(list(e.embeddings[0]))
    names = {m.model for m in (await client.list()).models}
    assert names == {"llama3.2:latest", "nomic-embed-text:latest"}
    show = await client.show("llama3.2")
    assert (
        show.details
        and show.details.family == "llama"
        and show.capabilities
        and "completion" in show.capabilities
    )
    ps = await client.ps()
    assert {m.model for m in ps.models} == {"nomic-embed-text:latest"}  # only what was used
    assert all(m.expires_at is not None and m.context_length for m in ps.models)


async def test_errors_and_management(sim: Simulator) -> None:
    client = ollama.AsyncClient(host=sim.url)
    with pytest.raises(ollama.ResponseError) as exc:
        await client.generate(model="nope", prompt="x")
    assert exc.value.status_code == 404 and "not found" in exc.value.error
    assert (await client.pull("smollm2:135m")).status == "success"
    assert (await client.copy("smollm2:135m", "mine")).status == "success"
    assert (await client.delete("mine")).status == "success"
    with pytest.raises(ollama.ResponseError) as pull_exc:
        await client.pull("missing-thing")
    assert pull_exc.value.status_code == 500
