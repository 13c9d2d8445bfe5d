"""Every endpoint of AsyncClient over a real loopback socket against the simulator.

Runs under asyncio and trio.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import anyio
import pytest
from pydantic import BaseModel

import ollama_async as oa
from ollama_async.testing import Fault, Simulator

from .conftest import EMB, GEN, active_connections

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_version_list_show_ps(sim: Simulator) -> None:
    async with oa.AsyncClient(sim.url) as client:
        version = await client.version()
        assert version.version
        tags = await client.list()
        names = {m.model for m in tags.models}
        assert f"{GEN}:latest" in names or GEN in names
        assert tags["models"][0]["details"] is not None
        show = await client.show(GEN)
        assert show.details is not None and show.details.family
        assert "completion" in (show.capabilities or [])
        await client.generate(GEN, "load it")
        ps = await client.ps()
        assert any((m.model or "").startswith(GEN) for m in ps.models)


async def test_generate_non_stream_is_typed_and_subscriptable(sim: Simulator) -> None:
    async with oa.AsyncClient(sim.url) as client:
        r = await client.generate(GEN, "why is the sky blue?")
    assert isinstance(r, oa.GenerateResponse)
    assert r.done is True and r.done_reason == "stop"
    assert r.response and r["response"] == r.response
    assert r.eval_count == 6 and r.total_duration and r.total_duration > 0
    assert r.queue_duration is not None and r.queue_duration >= 0


async def test_generate_is_deterministic(sim: Simulator) -> None:
    async with oa.AsyncClient(sim.url) as client:
        a = await client.generate(GEN, "same prompt", options={"seed": 1})
        b = await client.generate(GEN, "same prompt", options={"seed": 1})
    assert a.response == b.response


async def test_generate_stream_yields_chunks_and_final_metrics(sim: Simulator) -> None:
    async with oa.AsyncClient(sim.url) as client:
        full = await client.generate(GEN, "stream me")
        parts = [p async for p in await client.generate(GEN, "stream me", stream=True)]
    assert len(parts) == 7  # 6 tokens + the final chunk
    assert all(p.done is False for p in parts[:-1]) and parts[-1].done is True
    assert all(p.total_duration is None for p in parts[:-1]) and parts[-1].total_duration
    assert "".join(p.response or "" for p in parts) == full.response
    assert active_connections(client) == 0


async def test_chat_stream_and_non_stream(sim: Simulator) -> None:
    messages = [{"role": "user", "content": "hello there"}]
    async with oa.AsyncClient(sim.url) as client:
        r = await client.chat(GEN, messages)
        assert r.message.role == "assistant" and r["message"]["content"]
        chunks = [c async for c in await client.chat(GEN, messages, stream=True)]
    assert "".join(c.message.content or "" for c in chunks) == r.message.content
    assert chunks[-1].done is True


def get_weather(city: str, unit: str = "celsius") -> str:
    """Get the current weather.

    Args:
      city: The city to look up
      unit: celsius or fahrenheit
    """
    return f"sunny in {city}"


async def test_chat_with_callable_tool_gets_a_tool_call(sim: Simulator) -> None:
    async with oa.AsyncClient(sim.url) as client:
        r = await client.chat(GEN, [{"role": "user", "content": "call get_weather for Paris"}], tools=[get_weather])
    calls = r.message.tool_calls or []
    assert calls and calls[0].function.name == "get_weather"
    assert "city" in calls[0].function.arguments


class Answer(BaseModel):
    name: str
    count: int


async def test_structured_output_parses_back(sim: Simulator) -> None:
    async with oa.AsyncClient(sim.url) as client:
        r = await client.chat(GEN, [{"role": "user", "content": "give json"}], format=Answer)
        g = await client.generate(GEN, "json please", format="json")
    parsed = r.parse()
    assert isinstance(parsed, Answer) and isinstance(parsed.count, int)
    assert isinstance(g.parse(), (dict, list))


async def test_embed_and_embeddings(sim: Simulator) -> None:
    async with oa.AsyncClient(sim.url) as client:
        e = await client.embed(EMB, ["a", "b", "a"])
        single = await client.embeddings(EMB, "a")
        short = await client.embed(EMB, "a", dimensions=8)
    assert len(e.embeddings) == 3 and len(e.embeddings[0]) == 32
    assert e.embeddings[0] == e.embeddings[2] != e.embeddings[1]
    assert sum(x * x for x in e["embeddings"][0]) == pytest.approx(1.0, rel=1e-5)
    assert single.embedding == pytest.approx(e.embeddings[0], rel=1e-5)
    assert len(short.embeddings[0]) == 8


async def test_model_management_pull_push_create_copy_delete(sim: Simulator, tmp_path: Path) -> None:
    async with oa.AsyncClient(sim.url) as client:
        done = await client.pull("tinyllama")
        assert done.status == "success"
        statuses = [p.status async for p in await client.pull("phi3", stream=True)]
        assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
        created = await client.create("mine", from_=GEN, system="be brief")
        assert created.status == "success"
        assert (await client.copy("mine", "mine2")).status == "success"
        names = {m.model for m in (await client.list()).models}
        assert {"mine:latest", "mine2:latest"} <= {n if ":" in n else f"{n}:latest" for n in names if n}
        assert (await client.delete("mine2")).status == "success"
        with pytest.raises(oa.ResponseError) as info:
            await client.delete("mine2")
        assert info.value.status_code == 404
        pushed = [p.status async for p in await client.push("mine", stream=True)]
        assert pushed[-1] == "success"


async def test_pull_of_missing_model_fails_in_band(sim: Simulator) -> None:
    async with oa.AsyncClient(sim.url) as client:
        with pytest.raises(oa.StreamError) as info:
            async for _ in await client.pull("missing-model", stream=True):
                pass
        assert "pull model manifest" in info.value.error
        assert info.value.status_code == 500
        with pytest.raises(oa.ResponseError) as info2:
            await client.pull("missing-model")
        assert info2.value.status_code == 500


async def test_create_blob_streams_a_file_and_skips_existing(sim: Simulator, tmp_path: Path) -> None:
    blob = tmp_path / "weights.bin"
    blob.write_bytes(bytes(range(256)) * 20_000)  # 5 MB
    expected = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    async with oa.AsyncClient(sim.url) as client:
        assert await client.create_blob(blob) == expected
        assert await client.create_blob(blob) == expected  # HEAD says it exists: no second upload
        with pytest.raises(oa.RequestError) as info:
            await client.create_blob(tmp_path / "nope.bin")
        assert info.value.field == "path"


async def test_unknown_model_is_model_not_found(sim: Simulator) -> None:
    async with oa.AsyncClient(sim.url) as client:
        with pytest.raises(oa.ModelNotFoundError) as info:
            await client.generate("nope", "x")
    err = info.value
    assert err.status_code == 404 and "not found" in err.error
    assert err.model == "nope" and "/api/generate" in str(err)


async def test_break_releases_connection_and_server_slot(sim: Simulator) -> None:
    sim.add_model(oa_spec_slow())
    async with oa.AsyncClient(sim.url) as client:
        stream = await client.generate("slow", "long answer", stream=True)
        async for _part in stream:
            break  # the caller keeps `stream` alive in a variable
        for _ in range(50):
            if sim.stats("slow").disconnects:
                break
            await anyio.sleep(0.02)
        assert active_connections(client) == 0
        assert sim.stats("slow").disconnects == 1
        assert sim.stats("slow").in_flight == 0
        # the slot is free again: another request goes through at once
        r = await client.generate("slow", "again", options={"num_predict": 1})
        assert r.done


def oa_spec_slow() -> object:
    from ollama_async.testing import ModelSpec

    return ModelSpec(name="slow", slots=1, tokens=200, token_ms=10)


async def test_cancellation_mid_stream_releases_everything(sim: Simulator) -> None:
    sim.add_model(oa_spec_slow())
    async with oa.AsyncClient(sim.url) as client:
        got = 0
        with anyio.move_on_after(0.3):
            async for _part in await client.generate("slow", "long answer", stream=True):
                got += 1
        assert got >= 1
        for _ in range(50):
            if sim.stats("slow").disconnects:
                break
            await anyio.sleep(0.02)
        assert active_connections(client) == 0
        assert sim.stats("slow").disconnects == 1


async def test_aclose_on_stream_releases(sim: Simulator) -> None:
    sim.add_model(oa_spec_slow())
    async with oa.AsyncClient(sim.url) as client:
        stream = await client.generate("slow", "x", stream=True)
        first = await stream.__anext__()
        assert first.response is not None
        await stream.aclose()
        assert active_connections(client) == 0


async def test_error_line_mid_stream_raises_typed_error(sim: Simulator) -> None:
    sim.inject(Fault.error_line(after=2, error="runner crashed"), model=GEN)
    async with oa.AsyncClient(sim.url) as client:
        got = []
        with pytest.raises(oa.StreamError) as info:
            async for part in await client.generate(GEN, "x", stream=True):
                got.append(part)
    assert len(got) == 2
    assert info.value.error == "runner crashed" and info.value.model == GEN
    assert info.value.status_code == 500 and info.value.chunks_received == 2


async def test_eof_without_done_is_incomplete(sim: Simulator) -> None:
    sim.inject(Fault.eof(after=3), model=GEN)
    async with oa.AsyncClient(sim.url) as client:
        with pytest.raises(oa.IncompleteStreamError) as info:
            async for _ in await client.chat(GEN, [{"role": "user", "content": "x"}], stream=True):
                pass
    assert info.value.chunks_received == 3


async def test_reset_mid_stream_is_incomplete_not_retried(sim: Simulator) -> None:
    sim.inject(Fault.reset(after=2), model=GEN)
    async with oa.AsyncClient(sim.url) as client:
        with pytest.raises(oa.IncompleteStreamError):
            async for _ in await client.generate(GEN, "x", stream=True):
                pass
    assert sim.stats(GEN).requests <= 1


async def test_reset_before_first_chunk_is_retried(sim: Simulator) -> None:
    sim.inject(Fault.reset(after=0), model=GEN)
    async with oa.AsyncClient(sim.url) as client:
        parts = [p async for p in await client.generate(GEN, "x", stream=True)]
    assert parts[-1].done is True


async def test_blank_and_long_lines(sim: Simulator) -> None:
    sim.inject(Fault.blank_lines(after=1, count=3), model=GEN)
    sim.inject(Fault.long_line(size_bytes=3_000_000), model=GEN)
    async with oa.AsyncClient(sim.url) as client:
        parts = [p async for p in await client.generate(GEN, "x", stream=True)]
        assert parts[-1].done is True and len(parts) == 7
        long_parts = [p async for p in await client.generate(GEN, "x", stream=True)]
    longest = max(len(p.model_dump_json()) for p in long_parts)
    assert longest > 2_000_000


async def test_malformed_line_is_a_stream_error(sim: Simulator) -> None:
    sim.inject(Fault.malformed_line(after=1), model=GEN)
    async with oa.AsyncClient(sim.url) as client:
        with pytest.raises(oa.StreamError) as info:
            async for _ in await client.generate(GEN, "x", stream=True):
                pass
    assert "invalid line" in info.value.error


async def test_503_burst_is_retried_then_succeeds(sim: Simulator) -> None:
    sim.inject(Fault.busy(2), model=GEN)
    async with oa.AsyncClient(sim.url, max_retries=3) as client:
        client._transport.retry = oa.RetryPolicy(max_retries=3, backoff_base=0.01)
        r = await client.generate(GEN, "x")
    assert r.done is True


async def test_503_beyond_retries_is_server_busy(sim: Simulator) -> None:
    sim.inject(Fault.busy(5), model=GEN)
    async with oa.AsyncClient(sim.url) as client:
        client._transport.retry = oa.RetryPolicy(max_retries=1, backoff_base=0.01)
        with pytest.raises(oa.ServerBusyError) as info:
            await client.generate(GEN, "x")
    assert info.value.status_code == 503 and "server busy" in info.value.error


async def test_400_is_not_retried(sim: Simulator) -> None:
    sim.inject(Fault.status(400, error="bad"), model=GEN)
    async with oa.AsyncClient(sim.url) as client:
        client._transport.retry = oa.RetryPolicy(max_retries=3, backoff_base=0.01)
        with pytest.raises(oa.ResponseError) as info:
            await client.generate(GEN, "x")
        assert info.value.status_code == 400
        ok = await client.generate(GEN, "x")  # the fault applied once: this is the next request
    assert ok.done


async def test_read_timeout_is_typed(sim: Simulator) -> None:
    sim.inject(Fault.slow_first_byte(1.5), model=GEN)
    async with oa.AsyncClient(sim.url, timeout=0.2) as client:
        with pytest.raises(oa.OllamaTimeoutError) as info:
            await client.generate(GEN, "x")
    assert info.value.phase == "read"
    assert isinstance(info.value, TimeoutError)


async def test_per_call_timeout_override(sim: Simulator) -> None:
    sim.inject(Fault.slow_first_byte(1.0), model=GEN)
    async with oa.AsyncClient(sim.url) as client:
        with pytest.raises(oa.OllamaTimeoutError):
            await client.generate(GEN, "x", timeout=0.2)
        fast = client.with_options(timeout=5.0)
        assert (await fast.generate(GEN, "y")).done


async def test_refused_connection_is_retried_then_connection_error() -> None:
    with Simulator(models=[]) as s:
        url = s.url  # a port that was just free and is closed again below
    async with oa.AsyncClient(url) as client:
        client._transport.retry = oa.RetryPolicy(max_retries=2, backoff_base=0.01)
        with pytest.raises(ConnectionError) as info:
            await client.list()
    assert isinstance(info.value, oa.OllamaConnectionError)
    assert "Failed to connect to Ollama" in str(info.value)


async def test_bad_input_fails_before_sending(sim: Simulator) -> None:
    async with oa.AsyncClient(sim.url) as client:
        with pytest.raises(oa.RequestError) as info:
            await client.generate(GEN, "x", images=[b"not an image"])
        assert info.value.field == "images[0]"
        with pytest.raises(oa.RequestError) as info:
            await client.generate(GEN, "x", keep_alive="300")
        assert info.value.field == "keep_alive"
        with pytest.raises(oa.RequestError) as info:
            await client.chat(GEN, [{"role": "user", "content": "x"}], options={"temperature": "hot"})
        assert info.value.field == "options.temperature"
        with pytest.raises(oa.RequestError):
            await client.generate("", "x")
        with pytest.raises(oa.RequestError) as info:
            await client.generate(GEN, "x", think="extreme")
        assert info.value.field == "think"
    assert sim.stats(GEN).requests == 0


async def test_closed_client_raises(sim: Simulator) -> None:
    client = oa.AsyncClient(sim.url)
    await client.aclose()
    with pytest.raises(oa.ClientClosedError):
        await client.list()
