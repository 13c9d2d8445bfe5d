"""ollama_async.langchain beyond the standard suites: shared clients, bounds, bad inputs, sync calls.

Everything runs against the simulator over loopback.
"""

from __future__ import annotations

import asyncio
import base64
import math
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from pydantic import ValidationError

from ollama_async import AsyncClient, EventLoopError, ModelNotFoundError, RequestError, ResponseError
from ollama_async.batch import BatchError
from ollama_async.langchain import ChatOllamaAsync, OllamaAsyncEmbeddings
from ollama_async.langchain._messages import to_ollama_messages
from ollama_async.testing import ModelSpec, Simulator
from ollama_async.testing._vision import IMAGE_TOKENS

pytestmark = pytest.mark.anyio

GEN = "llama3.2"
EMB = "nomic-embed-text"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"


@pytest.fixture
def lsim() -> Iterator[Simulator]:
    """8 server slots (more than the clients allow), a few ms per token so calls overlap."""
    specs = [
        ModelSpec(GEN, slots=8, tokens=6, token_ms=2),
        ModelSpec(EMB, kind="embed", dim=16, context_length=40),
    ]
    with Simulator(specs) as sim:
        yield sim


@tool
def get_weather(location: str) -> str:
    """The weather at a place."""
    return "sunny"


@tool
def get_time(zone: str) -> str:
    """The time in a time zone."""
    return "noon"


# -- one client, many chains; bounds ------------------------------------------------------------


async def test_chains_share_one_client_and_its_bound(lsim: Simulator) -> None:
    async with AsyncClient(lsim.url, concurrency=3) as client:
        llm = ChatOllamaAsync(model=GEN, client=client)
        other = ChatOllamaAsync(model=GEN, client=client, temperature=0.5)
        chain_a = ChatPromptTemplate.from_template("Tell me about {topic}") | llm | StrOutputParser()
        chain_b = ChatPromptTemplate.from_template("Summarise {topic}") | other | StrOutputParser()
        outs = await asyncio.gather(*(chain.ainvoke({"topic": f"t{i}"}) for i in range(6)
                                      for chain in (chain_a, chain_b)))
        assert len(outs) == 12 and all(isinstance(o, str) and o for o in outs)
        stats = client.limits.stats()[f"{GEN}:latest"]
        assert stats.acquired == 12  # every call of both chains went through this client's limiter
        assert stats.max_in_flight == 3
    assert lsim.stats(GEN).max_in_flight == 3  # the server never saw more than the client's bound


async def test_abatch_is_bounded_by_the_client_limiter(lsim: Simulator) -> None:
    async with AsyncClient(lsim.url, concurrency=2) as client:
        llm = ChatOllamaAsync(model=GEN, client=client)
        results = await llm.abatch([f"question {i}" for i in range(10)])
    assert len(results) == 10 and all(isinstance(r, AIMessage) and r.content for r in results)
    stats = lsim.stats(GEN)
    assert stats.requests == 10
    assert stats.max_in_flight == 2  # LangChain starts all 10 at once; the limiter lets 2 through


def test_sync_batch_without_client_is_bounded_too(lsim: Simulator) -> None:
    llm = ChatOllamaAsync(model=GEN, base_url=lsim.url, concurrency=2)
    results = llm.batch([f"q{i}" for i in range(8)], config={"max_concurrency": 8})
    assert len(results) == 8 and all(r.content for r in results)
    assert lsim.stats(GEN).max_in_flight == 2  # 8 threads, one loop thread, one client, one bound


def test_sync_calls_run_on_the_shared_clients_loop(lsim: Simulator) -> None:
    """A sync invoke from a worker thread uses the given client on the loop it lives on."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        async def make() -> AsyncClient:
            client = AsyncClient(lsim.url, concurrency=1)
            await client.version()  # bind it to this loop
            return client

        client = asyncio.run_coroutine_threadsafe(make(), loop).result()
        llm = ChatOllamaAsync(model=GEN, client=client)
        assert llm.invoke("hello").content
        assert "".join(str(c.content) for c in llm.stream("hello"))
        assert client.limits.stats()[f"{GEN}:latest"].acquired == 2
        asyncio.run_coroutine_threadsafe(client.aclose(), loop).result()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def test_sync_call_inside_the_clients_loop_is_a_clear_error(lsim: Simulator) -> None:
    async with AsyncClient(lsim.url) as client:
        await client.version()
        llm = ChatOllamaAsync(model=GEN, client=client)
        with pytest.raises(EventLoopError, match="ainvoke"):
            llm.invoke("hello")


def test_stopping_a_sync_stream_early_frees_the_server_slot(lsim: Simulator) -> None:
    llm = ChatOllamaAsync(model=GEN, base_url=lsim.url, num_predict=200)
    stream = llm.stream("a long answer please")
    first = next(stream)
    assert isinstance(first.content, str)
    stream.close()
    for _ in range(1000):  # poll (up to 10 s on a loaded machine) for the server to see it
        if lsim.stats(GEN).in_flight == 0:
            break
        threading.Event().wait(0.01)
    assert lsim.stats(GEN).in_flight == 0 and lsim.stats(GEN).disconnects == 1


async def test_aclose_and_close_release_the_clients_a_model_made(lsim: Simulator) -> None:
    llm = ChatOllamaAsync(model=GEN, base_url=lsim.url)
    assert (await llm.ainvoke("hi")).content
    made = llm.clients.current()
    await llm.aclose()
    assert made._transport.closed and llm.clients.current() is not made  # a fresh one on next use
    await llm.aclose()

    def sync_side() -> None:
        assert llm.invoke("hi").content
        llm.close()
        assert llm.invoke("hi").content  # a new client for the loop thread

    await asyncio.get_running_loop().run_in_executor(None, sync_side)
    async with AsyncClient(lsim.url) as client:
        shared = ChatOllamaAsync(model=GEN, client=client)
        assert (await shared.ainvoke("hi")).content
        await shared.aclose()
        shared.close()
        assert not client._transport.closed  # a given client is the caller's


def test_sync_stream_errors_arrive_as_the_clients_typed_errors(lsim: Simulator) -> None:
    llm = ChatOllamaAsync(model="missing-model", base_url=lsim.url)
    with pytest.raises(ModelNotFoundError):
        list(llm.stream("hi"))
    with pytest.raises(ModelNotFoundError):
        llm.invoke("hi")


async def test_settings_for_a_client_it_would_make_clash_with_a_given_client(lsim: Simulator) -> None:
    async with AsyncClient(lsim.url) as client:
        with pytest.raises(ValidationError, match="base_url"):
            ChatOllamaAsync(model=GEN, client=client, base_url="http://elsewhere:1")
        with pytest.raises(ValidationError, match="concurrency"):
            OllamaAsyncEmbeddings(model=EMB, client=client, concurrency=2)
        ChatOllamaAsync(model=GEN, client=client, timeout=5, max_retries=0)  # per call: honoured


# -- tools, images, messages ---------------------------------------------------------------------


async def test_tool_choice_by_name_offers_only_that_tool(lsim: Simulator) -> None:
    llm = ChatOllamaAsync(model=GEN, base_url=lsim.url)
    both = await llm.bind_tools([get_weather, get_time]).ainvoke("the weather and the time in Oslo")
    assert [c["name"] for c in both.tool_calls] == ["get_weather", "get_time"]
    one = await llm.bind_tools([get_weather, get_time], tool_choice="get_time").ainvoke(
        "the weather and the time in Oslo")
    assert [c["name"] for c in one.tool_calls] == ["get_time"]
    none = await llm.bind_tools([get_weather, get_time], tool_choice="none").ainvoke("the weather in Oslo")
    assert none.tool_calls == [] and none.content
    with pytest.raises(RequestError, match="get_weather") as err:
        llm.bind_tools([get_weather], tool_choice="get_date")
    assert err.value.field == "tool_choice"


async def test_a_forced_tool_choice_is_sent_as_a_format_and_read_back(lsim: Simulator) -> None:
    llm = ChatOllamaAsync(model=GEN, base_url=lsim.url)
    plain = await llm.bind_tools([get_weather, get_time]).ainvoke("Hello!")
    assert plain.tool_calls == [] and plain.content  # nothing asked for: the model answers
    for choice in ("any", "required", True, "get_time"):
        forced = llm.bind_tools([get_weather, get_time], tool_choice=choice)
        reply = await forced.ainvoke("Hello!")
        want = "get_time" if choice == "get_time" else "get_weather"  # the simulator picks the first
        assert [c["name"] for c in reply.tool_calls] == [want] and reply.content == ""
        assert isinstance(reply.tool_calls[0]["args"], dict) and reply.tool_calls[0]["id"]
        chunks = [c async for c in forced.astream("Hello!")]
        assert all(c.content == "" for c in chunks)  # the JSON is the call, not text
        total = chunks[0]
        for c in chunks[1:]:
            total = total + c
        assert [c["name"] for c in total.tool_calls] == [want]
    with pytest.raises(RequestError, match="format") as err:
        await llm.bind_tools([get_weather], tool_choice="any").ainvoke("x", format="json")
    assert err.value.field == "format"


def test_a_forced_reply_that_is_not_a_call_is_an_invalid_tool_call() -> None:
    from ollama_async import ChatResponse
    from ollama_async.langchain._messages import ai_message

    reply = ChatResponse.model_validate({"model": GEN, "done": True,
                                         "message": {"role": "assistant", "content": '{"x": 1}'}})
    message = ai_message(reply, GEN, forced=True)
    assert message.tool_calls == [] and len(message.invalid_tool_calls) == 1
    assert message.invalid_tool_calls[0]["args"] == '{"x": 1}'


async def test_tool_round_trip_streams_tool_call_chunks(lsim: Simulator) -> None:
    llm = ChatOllamaAsync(model=GEN, base_url=lsim.url).bind_tools([get_weather])
    chunks = [c async for c in llm.astream("What is the weather in 'Paris'?")]
    with_calls = [c for c in chunks if c.tool_call_chunks]
    assert with_calls and with_calls[0].tool_call_chunks[0]["name"] == "get_weather"
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    call = full.tool_calls[0]
    assert call["args"] == {"location": "Paris"} and call["id"]
    assert full.usage_metadata is not None and full.usage_metadata["output_tokens"] > 0
    answer = await llm.ainvoke([HumanMessage("What is the weather in 'Paris'?"), full,
                                get_weather.invoke(call)])
    assert isinstance(answer, AIMessage) and answer.content and not answer.tool_calls


async def test_images_reach_the_model(lsim: Simulator) -> None:
    llm = ChatOllamaAsync(model=GEN, base_url=lsim.url)
    b64 = base64.b64encode(PNG).decode()
    plain = await llm.ainvoke([HumanMessage("describe")])
    with_images = await llm.ainvoke([HumanMessage([
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}"}},
        {"type": "image", "base64": b64, "mime_type": "image/png"},
    ])])
    assert plain.usage_metadata and with_images.usage_metadata
    assert with_images.usage_metadata["input_tokens"] == plain.usage_metadata["input_tokens"] + 2 * IMAGE_TOKENS


def test_unsupported_content_is_a_typed_error_before_sending() -> None:
    with pytest.raises(RequestError, match="inline images only") as err:
        to_ollama_messages([HumanMessage([{"type": "image_url", "image_url": {"url": "https://x/y.png"}}])])
    assert err.value.field == "messages[0].content[0]"
    with pytest.raises(RequestError, match="'file'") as err:
        to_ollama_messages([HumanMessage("a"), HumanMessage([{"type": "file", "base64": "AAAA"}])])
    assert err.value.field == "messages[1].content[0]"


def test_messages_keep_tool_calls_names_and_thinking() -> None:
    msgs = to_ollama_messages([
        HumanMessage("add 1 and 2"),
        AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c1", "type": "tool_call"}],
                  additional_kwargs={"reasoning_content": "use the tool"}),
        ToolMessage("3", tool_call_id="c1"),
    ])
    assert msgs[1] == {"role": "assistant", "content": "", "thinking": "use the tool",
                       "tool_calls": [{"function": {"name": "add", "arguments": {"a": 1, "b": 2}}, "id": "c1"}]}
    assert msgs[2] == {"role": "tool", "content": "3", "tool_name": "add"}  # name found from the call id


async def test_structured_output_json_schema_and_include_raw(lsim: Simulator) -> None:
    from pydantic import BaseModel

    class City(BaseModel):
        name: str
        population: int

    llm = ChatOllamaAsync(model=GEN, base_url=lsim.url)
    city = await llm.with_structured_output(City).ainvoke("a city")
    assert isinstance(city, City)
    raw = await llm.with_structured_output(City, include_raw=True).ainvoke("a city")
    assert isinstance(raw["parsed"], City) and raw["parsing_error"] is None
    assert isinstance(raw["raw"], AIMessage)
    with pytest.raises(RequestError):
        llm.with_structured_output(City, method="xml")  # type: ignore[arg-type]


# -- embeddings ------------------------------------------------------------------------------------


async def test_aembed_documents_isolates_bad_texts_and_keeps_the_rest(lsim: Simulator) -> None:
    async with AsyncClient(lsim.url) as client:
        emb = OllamaAsyncEmbeddings(model=EMB, client=client, batch_size=4, truncate=False)
        texts = [f"text {i}" for i in range(10)]
        texts[6] = "word " * 50  # longer than the context (40): a 400 for its whole request
        with pytest.raises(BatchError) as err:
            await emb.aembed_documents(texts)
        assert set(err.value.errors) == {6}
        vectors = err.value.results.vectors
        expected = await emb.aembed_query("text 7")
        assert [round(x, 6) for x in vectors[7]] == [round(x, 6) for x in expected]
        assert all(math.isnan(x) for x in vectors[6])
        with pytest.raises(ResponseError) as one:
            await emb.aembed_query(texts[6])  # one text: its own error, not a BatchError
        assert one.value.status_code == 400
        good = await emb.aembed_documents([t for i, t in enumerate(texts) if i != 6])
        assert len(good) == 9 and all(len(v) == 16 and isinstance(v[0], float) for v in good)
    assert lsim.stats(EMB).max_in_flight == 1


def test_embed_documents_sync_batches_requests(lsim: Simulator) -> None:
    emb = OllamaAsyncEmbeddings(model=EMB, base_url=lsim.url, batch_size=3)
    vectors = emb.embed_documents([f"t{i}" for i in range(7)])
    assert len(vectors) == 7 and emb.embed_query("t3") == vectors[3]
    assert lsim.stats(EMB).requests == 3 + 1  # 7 texts in 3 requests, then the query
    with pytest.raises(RequestError):
        emb.embed_documents("one string")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="batch_size"):
        OllamaAsyncEmbeddings(model=EMB, batch_size=0)


# -- packaging -------------------------------------------------------------------------------------


def test_ollama_async_does_not_import_langchain() -> None:
    code = "import sys, ollama_async; assert 'langchain_core' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_langchain_core_the_import_error_names_the_extra() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'langchain_core': raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "try:\n"
        "    import ollama_async.langchain\n"
        "except ImportError as e:\n"
        "    assert 'ollama-async[langchain]' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('imported')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- what goes on the wire (respx) ------------------------------------------------------------------


async def test_request_body_carries_options_tools_images_and_the_forced_format() -> None:
    import json

    from tests._official import HOST, capture

    b64 = base64.b64encode(PNG).decode()
    llm = ChatOllamaAsync(model="m", base_url=HOST, temperature=0.2, max_tokens=50, seed=7, num_ctx=2048,
                          stop=["END"], keep_alive="5m", reasoning=True, options={"top_k": 3, "seed": 1})
    bound = llm.bind_tools([get_weather], tool_choice="get_weather")
    messages = [HumanMessage([{"type": "text", "text": "look"},
                              {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}"}}])]
    async with AsyncClient(HOST) as client:
        llm_on_client = llm.model_copy(update={"client": client})
        _, path, raw = await capture(client, lambda c: bound.ainvoke(messages))
        _, _, plain = await capture(client, lambda c: llm_on_client.ainvoke("hi", stop=["x"], model="other"))
    body = json.loads(raw)
    assert path == "/api/chat"
    assert body["options"] == {"top_k": 3, "seed": 7, "temperature": 0.2, "num_predict": 50, "num_ctx": 2048,
                               "stop": ["END"]}
    assert body["think"] is True and body["keep_alive"] == "5m" and body["stream"] is False
    assert body["messages"] == [{"role": "user", "content": "look", "images": [b64]}]  # data: prefix gone
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather"]
    assert body["format"]["properties"]["name"] == {"const": "get_weather"}
    assert body["format"]["properties"]["arguments"]["properties"]["location"]["type"] == "string"
    other = json.loads(plain)
    assert other["model"] == "other" and other["options"]["stop"] == ["x"] and "format" not in other
