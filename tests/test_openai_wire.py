"""What the ``/v1`` layer puts on the wire, byte for byte, against what openai-python sends.

Both clients talk to a respx mock that records the request; the same call must give the same
method, path and JSON bytes (key order included), so servers, proxies and recorded fixtures see
no difference after moving code over. Where this layer deliberately differs (``max_completion_tokens``
is sent as ``max_tokens``, the only one Ollama reads), the test says so.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import respx

from ollama_async import AsyncClient

HOST = "http://h:1"
VEC = np.arange(4, dtype="<f4")
REPLY: dict[str, Any] = {
    "id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [],
    "data": [{"object": "embedding", "embedding": base64.b64encode(VEC.tobytes()).decode(), "index": 0}],
    "output": [],
}
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "héllo"}]
TOOL = {"type": "function", "function": {"name": "f", "description": "d",
                                         "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}
Call = Callable[[Any], Awaitable[Any]]


async def _capture(call: Call, ours: bool) -> tuple[str, str, bytes]:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.route(host="h").mock(return_value=httpx.Response(200, json=REPLY))
        if ours:
            async with AsyncClient(HOST) as client:
                await call(client.openai)
        else:
            async with openai.AsyncOpenAI(base_url=HOST + "/v1", api_key="k", max_retries=0, http_client=httpx.AsyncClient()) as client:
                await call(client)
        request = route.calls.last.request
        return request.method, request.url.raw_path.decode(), request.content


CASES: dict[str, Call] = {
    "chat-min": lambda c: c.chat.completions.create(model="m", messages=MESSAGES),
    "chat-all": lambda c: c.chat.completions.create(
        model="m", messages=MESSAGES, frequency_penalty=0.5, logprobs=True, max_tokens=9, presence_penalty=-1,
        reasoning_effort="low", response_format={"type": "json_object"}, seed=4, stop=["\n", "END"],
        temperature=0.2, tool_choice="auto", tools=[TOOL], top_logprobs=3, top_p=0.9, user="u"),
    "chat-tool-history": lambda c: c.chat.completions.create(model="m", messages=[
        {"role": "user", "content": "add"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "2"}]),
    "chat-parts": lambda c: c.chat.completions.create(model="m", messages=[{"role": "user", "content": [
        {"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]),
    "chat-schema": lambda c: c.chat.completions.create(model="m", messages=MESSAGES, response_format={
        "type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}, "strict": True}}),
    "completion": lambda c: c.completions.create(model="m", prompt="once", max_tokens=3, seed=1, stop="x",
                                                 suffix="end", temperature=0.0, top_p=0.5),
    "embed-default": lambda c: c.embeddings.create(model="e", input=["a", "b"]),
    "embed-float": lambda c: c.embeddings.create(model="e", input="a", encoding_format="float", dimensions=8),
    "embed-base64": lambda c: c.embeddings.create(model="e", input="a", encoding_format="base64", user="u"),
    "embed-query": lambda c: c.embeddings.create(model="e", input="a", extra_query={"api-version": "1"}),
    "models": lambda c: c.models.list(),
    "model": lambda c: c.models.retrieve("llama3.2:1b"),
    "responses": lambda c: c.responses.create(
        model="m", input="hi", instructions="sys", max_output_tokens=5, reasoning={"effort": "low"},
        temperature=0.5, text={"format": {"type": "text"}}, top_p=0.5, truncation="disabled"),
    "responses-items": lambda c: c.responses.create(model="m", input=[{"role": "user", "content": "hi"}],
                                                    tools=[{"type": "function", "name": "f", "parameters": {}}]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_bytes_as_openai_python(name: str) -> None:
    async def both() -> tuple[Any, Any]:
        return await _capture(CASES[name], ours=True), await _capture(CASES[name], ours=False)

    ours, theirs = asyncio.run(both())
    assert ours == theirs


def test_streams_send_stream_true_as_openai_python_does() -> None:
    def call(c: Any) -> Awaitable[Any]:
        return c.chat.completions.create(model="m", messages=MESSAGES, stream=True,
                                         stream_options={"include_usage": True})

    async def ours() -> bytes:
        with respx.mock(assert_all_called=False) as mock:
            route = mock.route(host="h").mock(return_value=httpx.Response(
                200, content=b"data: [DONE]\n\n", headers={"content-type": "text/event-stream"}))
            async with AsyncClient(HOST) as client:
                async for _ in await call(client.openai):
                    pass
            return bytes(route.calls.last.request.content)

    async def theirs() -> bytes:
        with respx.mock(assert_all_called=False) as mock:
            route = mock.route(host="h").mock(return_value=httpx.Response(
                200, content=b"data: [DONE]\n\n", headers={"content-type": "text/event-stream"}))
            async with openai.AsyncOpenAI(base_url=HOST + "/v1", api_key="k", max_retries=0, http_client=httpx.AsyncClient()) as client:
                async for _ in await call(client):
                    pass
            return bytes(route.calls.last.request.content)

    assert asyncio.run(ours()) == asyncio.run(theirs())


def test_max_completion_tokens_goes_out_as_max_tokens() -> None:
    """Ollama reads only max_tokens: sending max_completion_tokens would be silently ignored."""
    _, _, body = asyncio.run(_capture(
        lambda c: c.chat.completions.create(model="m", messages=MESSAGES, max_completion_tokens=7), ours=True))
    assert b'"max_tokens":7' in body and b"max_completion_tokens" not in body


def test_callable_tools_and_pydantic_formats_are_converted() -> None:
    import pydantic

    def add(a: int, b: int) -> int:
        """Add.

        Args:
          a: first
          b: second
        """
        return a + b

    class Answer(pydantic.BaseModel):
        n: int

    _, _, body = asyncio.run(_capture(lambda c: c.chat.completions.create(
        model="m", messages=MESSAGES, tools=[add], response_format=Answer), ours=True))
    sent = __import__("json").loads(body)
    assert sent["tools"][0]["function"]["name"] == "add"
    assert sent["tools"][0]["function"]["parameters"]["required"] == ["a", "b"]
    assert sent["response_format"]["json_schema"]["schema"]["properties"]["n"]["type"] == "integer"


def test_extra_headers_and_body_reach_the_wire() -> None:
    async def run() -> httpx.Request:
        with respx.mock(assert_all_called=False) as mock:
            route = mock.route(host="h").mock(return_value=httpx.Response(200, json=REPLY))
            async with AsyncClient(HOST) as client:
                await client.openai.chat.completions.create(model="m", messages=MESSAGES,
                                                            extra_headers={"X-Trace": "1"}, extra_body={"keep": 1})
            return route.calls.last.request

    request = asyncio.run(run())
    assert request.headers["x-trace"] == "1" and request.content.endswith(b',"keep":1}')


def _sse_reply(body: bytes) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


def _stream_of(body: bytes, make: Callable[[Any], Awaitable[Any]]) -> list[Any]:
    async def run() -> list[Any]:
        with respx.mock(assert_all_called=False) as mock:
            mock.route(host="h").mock(return_value=_sse_reply(body))
            async with AsyncClient(HOST, max_retries=0) as client:
                return [part async for part in await make(client.openai)]

    return asyncio.run(run())


def chat_stream(c: Any) -> Awaitable[Any]:
    return c.chat.completions.create(model="m", messages=MESSAGES, stream=True)


def test_sse_fields_comments_and_spacing_are_handled() -> None:
    chunk = b'{"id":"a","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"x"}}]}'
    body = b": keep-alive\n\nid: 1\nevent: message\ndata: " + chunk + b"\r\n\r\ndata:" + chunk + b"\n\ndata: [DONE]\n\n"
    parts = _stream_of(body, chat_stream)
    assert [p.choices[0].delta.content for p in parts] == ["x", "x"]


def test_sse_error_event_raises_stream_error_with_openai_fields() -> None:
    from ollama_async import StreamError

    chunk = b'{"id":"a","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"x"}}]}'
    body = b"data: " + chunk + b'\n\ndata: {"error":{"message":"boom","type":"api_error","code":"c1"}}\n\n'
    with pytest.raises(StreamError) as info:
        _stream_of(body, chat_stream)
    assert info.value.error == "boom" and info.value.type == "api_error" and info.value.code == "c1"
    assert info.value.chunks_received == 1


def test_responses_error_event_raises_and_completed_ends_the_stream() -> None:
    from ollama_async import IncompleteStreamError, StreamError

    def responses(c: Any) -> Awaitable[Any]:
        return c.responses.create(model="m", input="x", stream=True)

    ok = (b'event: response.created\ndata: {"type":"response.created","sequence_number":0}\n\n'
          b'event: response.completed\ndata: {"type":"response.completed","sequence_number":1,'
          b'"response":{"id":"r","output":[]}}\n\n')
    assert [e.type for e in _stream_of(ok, responses)] == ["response.created", "response.completed"]
    with pytest.raises(IncompleteStreamError):
        _stream_of(ok.split(b"event: response.completed")[0], responses)
    with pytest.raises(StreamError) as info:
        _stream_of(b'event: error\ndata: {"type":"error","message":"rate limited","code":"429"}\n\n', responses)
    assert info.value.error == "rate limited" and info.value.code == "429"
