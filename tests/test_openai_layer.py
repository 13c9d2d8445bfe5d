"""``client.openai``: every ``/v1`` call against the simulator over loopback, the shared slots,
typed errors before sending, and openai-python's own client against the simulator's routes."""

from __future__ import annotations

import base64
import json
from typing import Any

import anyio
import numpy as np
import openai
import pytest

import ollama_async
from ollama_async import AsyncClient, IncompleteStreamError, ModelNotFoundError, RequestError, ResponseError
from ollama_async.openai import ChatCompletion, ChatCompletionChunk, CreateEmbeddingResponse, Response
from ollama_async.testing import Fault, ModelSpec, Simulator

from .conftest import EMB, GEN, active_connections

pytestmark = pytest.mark.anyio

USER = [{"role": "user", "content": "hello there"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_chat_completion_matches_native_chat(sim: Simulator) -> None:
    async with AsyncClient(sim.url) as client:
        reply = await client.openai.chat.completions.create(model=GEN, messages=USER, seed=3, max_tokens=4)
        native = await client.chat(GEN, USER, options={"seed": 3, "num_predict": 4, "temperature": 1.0, "top_p": 1.0})
    assert isinstance(reply, ChatCompletion)
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.choices[0].message.content == native.message.content
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 4
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 4


async def test_chat_stream_with_usage_ends_with_done(sim: Simulator) -> None:
    async with AsyncClient(sim.url) as client:
        stream = await client.openai.chat.completions.create(
            model=GEN, messages=USER, stream=True, stream_options={"include_usage": True})
        chunks = [c async for c in stream]
        whole = await client.openai.chat.completions.create(model=GEN, messages=USER)
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finish] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


async def test_chat_tools_and_reasoning(sim: Simulator) -> None:
    async with AsyncClient(sim.url) as client:
        reply = await client.openai.chat.completions.create(
            model=GEN, messages=[{"role": "user", "content": "what is get_weather in Paris"}], tools=[WEATHER])
        stream = await client.openai.chat.completions.create(
            model=GEN, messages=[{"role": "user", "content": "call get_weather"}], tools=[WEATHER], stream=True)
        chunks = [c async for c in stream]
        thought = await client.openai.chat.completions.create(model=GEN, messages=USER, reasoning_effort="high")
    call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.type == "function" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    deltas = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or ()]
    assert [d.function.name for d in deltas if d.function] == ["get_weather"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert thought.choices[0].message.reasoning


async def test_chat_response_format_and_logprobs(sim: Simulator) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    async with AsyncClient(sim.url) as client:
        reply = await client.openai.chat.completions.create(
            model=GEN, messages=USER, logprobs=True, top_logprobs=2,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert isinstance(json.loads(reply.choices[0].message.content or "")["n"], int)
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.content and len(logprobs.content[0].top_logprobs) == 2


async def test_completions_whole_and_streamed(sim: Simulator) -> None:
    async with AsyncClient(sim.url) as client:
        whole = await client.openai.completions.create(model=GEN, prompt="once upon", seed=1)
        native = await client.generate(GEN, "once upon", options={"seed": 1})
        stream = await client.openai.completions.create(model=GEN, prompt="once upon", seed=1, stream=True,
                                                        stream_options={"include_usage": True})
        parts = [p async for p in stream]
    assert whole.object == "text_completion" and whole.choices[0].text == native.response
    assert "".join(p.choices[0].text for p in parts if p.choices) == native.response
    assert parts[-1].usage is not None and parts[-1].usage.completion_tokens == 6


async def test_embeddings_same_vectors_on_both_routes_and_formats(sim: Simulator) -> None:
    texts = ["alpha beta", "gamma", ""]
    async with AsyncClient(sim.url) as client:
        native = np.asarray((await client.embed(EMB, texts)).embeddings, dtype=np.float32)
        as_b64 = await client.openai.embeddings.create(model=EMB, input=texts, encoding_format="base64")
        as_float = await client.openai.embeddings.create(model=EMB, input=texts, encoding_format="float")
        default = await client.openai.embeddings.create(model=EMB, input="gamma")
    assert isinstance(as_b64, CreateEmbeddingResponse) and as_b64.model == EMB
    assert as_b64.vectors().dtype == np.float32 and as_b64.vectors().tobytes() == native.tobytes()
    assert isinstance(as_b64.data[1].embedding, np.ndarray)
    assert np.asarray([d.embedding for d in as_float.data], dtype=np.float32).tobytes() == native.tobytes()
    assert isinstance(default.data[0].embedding, list)
    assert np.asarray(default.data[0].embedding, dtype=np.float32).tobytes() == native[1].tobytes()
    assert as_b64.usage is not None and as_b64.usage.prompt_tokens == 3


async def test_models_list_and_retrieve(sim: Simulator) -> None:
    async with AsyncClient(sim.url) as client:
        page = await client.openai.models.list()
        ids = [m.id async for m in client.openai.models.list()]
        one = await client.openai.models.retrieve(GEN)
        with pytest.raises(ModelNotFoundError) as info:
            await client.openai.models.retrieve("missing-model")
    assert sorted(m.id for m in page.data) == sorted(ids) == sorted([f"{GEN}:latest", f"{EMB}:latest"])
    assert one.id == GEN and one.object == "model" and one.owned_by == "library"
    assert info.value.status_code == 404 and info.value.type == "not_found_error"


async def test_responses_whole_and_streamed(sim: Simulator) -> None:
    async with AsyncClient(sim.url) as client:
        whole = await client.openai.responses.create(model=GEN, input="hello there", instructions="be brief")
        chat = await client.openai.chat.completions.create(
            model=GEN, messages=[{"role": "system", "content": "be brief"}, *USER])
        stream = await client.openai.responses.create(model=GEN, input="hello there", stream=True)
        events = [e async for e in stream]
        tools = await client.openai.responses.create(
            model=GEN, input="use get_weather", tools=[{"type": "function", "name": "get_weather",
                                                        "parameters": WEATHER["function"]["parameters"]}])  # type: ignore[index]
    assert isinstance(whole, Response) and whole.status == "completed"
    assert whole.output_text == chat.choices[0].message.content
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "".join(e.delta or "" for e in events if e.type == "response.output_text.delta") == whole.output_text
    assert events[-1].response is not None and events[-1].response.output_text == whole.output_text
    assert [o.type for o in tools.output] == ["function_call"] and tools.output[0].name == "get_weather"


async def test_errors_are_typed_with_openai_fields(sim: Simulator) -> None:
    async with AsyncClient(sim.url, max_retries=0) as client:
        with pytest.raises(ModelNotFoundError) as missing:
            await client.openai.chat.completions.create(model="nope", messages=USER)
        with pytest.raises(ResponseError) as bad:
            await client.openai.chat.completions.create(model=EMB, messages=USER)
        sim.inject(Fault.status(503), path="/v1/chat/completions")
        with pytest.raises(ollama_async.ServerBusyError):
            await client.openai.chat.completions.create(model=GEN, messages=USER)
    assert missing.value.error == "model 'nope' not found" and missing.value.type == "not_found_error"
    assert bad.value.status_code == 400 and bad.value.type == "invalid_request_error"
    assert "does not support chat" in bad.value.error


async def test_stream_error_event_and_missing_done_are_not_a_finished_reply(sim: Simulator) -> None:
    async with AsyncClient(sim.url, max_retries=0) as client:
        sim.inject(Fault.error_line(after=2), path="/v1/chat/completions")
        stream = await client.openai.chat.completions.create(model=GEN, messages=USER, stream=True)
        with pytest.raises(IncompleteStreamError):
            async for _ in stream:
                pass


async def test_retried_before_first_event(sim: Simulator) -> None:
    async with AsyncClient(sim.url, max_retries=2) as client:
        sim.inject(Fault.status(502), path="/v1/chat/completions")
        stream = await client.openai.chat.completions.create(model=GEN, messages=USER, stream=True)
        chunks = [c async for c in stream]
    assert chunks and chunks[-1].choices[0].finish_reason == "stop"


async def test_break_gives_the_slot_and_connection_back(sim: Simulator) -> None:
    slow = Simulator([ModelSpec(GEN, slots=1, tokens=200, token_ms=5)])
    with slow:
        async with AsyncClient(slow.url, concurrency=1) as client:
            stream = await client.openai.chat.completions.create(model=GEN, messages=USER, stream=True)
            async for _ in stream:
                break
            for _ in range(50):  # the dropped iterator is finalised by the event loop's asyncgen hook
                if active_connections(client) == 0 and slow.stats(GEN).in_flight == 0:
                    break
                await anyio.sleep(0.02)
            assert active_connections(client) == 0  # though `stream` is still referenced here
            assert slow.stats(GEN).disconnects == 1
            with anyio.fail_after(5):  # would wait for the only slot if the stream still held it
                reply = await client.chat(GEN, USER, options={"num_predict": 1})
            assert reply.done
            assert client.limits.stats()[f"{GEN}:latest"].in_flight == 0


async def test_native_and_v1_share_the_model_bound() -> None:
    with Simulator([ModelSpec(GEN, slots=8, token_ms=2, tokens=5), ModelSpec(EMB, kind="embed", dim=16, embed_ms=2)]) as sim:
        async with AsyncClient(sim.url, concurrency={GEN: 3}) as client:
            async def native() -> None:
                await client.chat(GEN, USER)

            async def v1() -> None:
                await client.openai.chat.completions.create(model=GEN, messages=USER)

            async def v1_stream() -> None:
                async for _ in await client.openai.chat.completions.create(model=GEN, messages=USER, stream=True):
                    pass

            async def embeds() -> None:
                await client.openai.embeddings.create(model=EMB, input=["a", "b"])
                await client.embed(EMB, "c")

            async with anyio.create_task_group() as tg:
                for i in range(30):
                    tg.start_soon((native, v1, v1_stream)[i % 3])
                for _ in range(6):
                    tg.start_soon(embeds)
        assert sim.stats(GEN).requests == 30
        assert sim.stats(GEN).max_in_flight == 3  # the bound held across both routes, and was reached
        assert sim.stats(EMB).max_in_flight == 1  # embed-only: one slot, whichever route
        assert client.limits.stats()[f"{GEN}:latest"].max_in_flight == 3


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.chat.completions.create(model=GEN, messages=[]), "messages"),
        (lambda c: c.chat.completions.create(model=GEN, messages=[{"content": "x"}]), "messages[0].role"),
        (lambda c: c.chat.completions.create(model=GEN, messages=USER, temperature=3), "temperature"),
        (lambda c: c.chat.completions.create(model=GEN, messages=USER, n=2), "n"),
        (lambda c: c.chat.completions.create(model=GEN, messages=USER, tool_choice="required", tools=[WEATHER]),
         "tool_choice"),
        (lambda c: c.chat.completions.create(model=GEN, messages=USER, reasoning_effort="huge"), "reasoning_effort"),
        (lambda c: c.chat.completions.create(model=GEN, messages=USER, stream_options={"include_usage": True}),
         "stream_options"),
        (lambda c: c.chat.completions.create(model=GEN, messages=USER, top_logprobs=21), "top_logprobs"),
        (lambda c: c.chat.completions.create(
            model=GEN, messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}]),
         "messages[0].content[0].image_url"),
        (lambda c: c.chat.completions.create(model=GEN, messages=USER, response_format={"type": "xml"}),
         "response_format.type"),
        (lambda c: c.completions.create(model=GEN, prompt=["a", "b"]), "prompt"),
        (lambda c: c.embeddings.create(model=EMB, input=[]), "input"),
        (lambda c: c.embeddings.create(model=EMB, input=["a", 3]), "input[1]"),
        (lambda c: c.embeddings.create(model=EMB, input="a", encoding_format="hex"), "encoding_format"),
        (lambda c: c.responses.create(model=GEN, input="x", previous_response_id="resp_1"), "previous_response_id"),
        (lambda c: c.responses.create(model=GEN, input="x", background=True), "background"),
        (lambda c: c.models.retrieve(""), "model"),
    ],
)
async def test_bad_input_is_refused_before_sending(call: Any, field: str) -> None:
    async with AsyncClient("http://127.0.0.1:9", max_retries=0) as client:  # nothing listens there
        with pytest.raises(RequestError) as info:
            await call(client.openai)
    assert info.value.field == field


async def test_unknown_keyword_is_a_type_error() -> None:
    async with AsyncClient("http://127.0.0.1:9") as client:
        with pytest.raises(TypeError, match="temprature"):
            await client.openai.chat.completions.create(model=GEN, messages=USER, temprature=1)  # type: ignore[call-overload]


async def test_official_openai_client_against_the_simulator(sim: Simulator) -> None:
    """The simulator's /v1 routes are what openai-python expects (shapes, SSE, base64, errors)."""
    oai = openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key="ollama", max_retries=0)
    async with oai, AsyncClient(sim.url) as client:
        ours = await client.openai.chat.completions.create(model=GEN, messages=USER)
        theirs = await oai.chat.completions.create(model=GEN, messages=USER)  # type: ignore[arg-type]
        stream = await oai.chat.completions.create(model=GEN, messages=USER, stream=True)  # type: ignore[arg-type]
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        emb = await oai.embeddings.create(model=EMB, input=["alpha beta"])
        native = await client.embed(EMB, "alpha beta")
        with pytest.raises(openai.NotFoundError):
            await oai.chat.completions.create(model="nope", messages=USER)  # type: ignore[arg-type]
    assert theirs.choices[0].message.content == ours.choices[0].message.content == text
    assert np.asarray(emb.data[0].embedding, dtype=np.float32).tobytes() == \
        np.asarray(native.embeddings[0], dtype=np.float32).tobytes()


async def test_simulator_base64_is_little_endian_float32(sim: Simulator) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=sim.url) as http:
        reply = (await http.post("/v1/embeddings", json={"model": EMB, "input": "x", "encoding_format": "base64"})).json()
        native = (await http.post("/api/embed", json={"model": EMB, "input": "x"})).json()
        bad = await http.post("/v1/embeddings", json={"model": EMB, "input": "x", "encoding_format": "hex"})
    raw = base64.b64decode(reply["data"][0]["embedding"])
    assert np.frombuffer(raw, dtype="<f4").tolist() == np.asarray(native["embeddings"][0], dtype=np.float32).tolist()
    assert reply["object"] == "list" and reply["usage"] == {"prompt_tokens": 1, "total_tokens": 1}
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


async def test_adaptive_bound_learns_from_v1_traffic_alone() -> None:
    """/v1 replies carry no timings, yet each finished request is a sample for the adaptive limiter."""
    with Simulator([ModelSpec(GEN, slots=8, token_ms=2, tokens=3)]) as sim:
        async with AsyncClient(sim.url, concurrency="auto") as client:
            async def caller() -> None:
                for _ in range(8):
                    await client.openai.chat.completions.create(model=GEN, messages=USER)

            async with anyio.create_task_group() as tg:
                for _ in range(24):
                    tg.start_soon(caller)
            stats = client.limits.stats()[f"{GEN}:latest"]
    assert stats.mode == "adaptive" and stats.adjustments > 0 and stats.max_in_flight > 2
