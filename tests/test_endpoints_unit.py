"""Exact paths, methods and bodies of the endpoints the parity test cannot compare, with respx."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest
import respx

import ollama_async as oa

pytestmark = pytest.mark.anyio


async def test_create_blob_heads_then_streams_the_upload(tmp_path: Path) -> None:
    data = b"x" * (3 * 1024 * 1024 + 17)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    client = oa.AsyncClient("http://h:1")
    with respx.mock() as mock:
        head = mock.head(f"http://h:1/api/blobs/{digest}").mock(return_value=httpx.Response(404))
        post = mock.post(f"http://h:1/api/blobs/{digest}").mock(return_value=httpx.Response(201))
        assert await client.create_blob(path) == digest
    assert head.call_count == 1 and post.call_count == 1
    request = post.calls.last.request
    assert request.headers.get("transfer-encoding") == "chunked"  # streamed from disk, not one buffer
    assert request.content == data


async def test_create_blob_mismatch_is_a_response_error(tmp_path: Path) -> None:
    path = tmp_path / "b"
    path.write_bytes(b"abc")
    client = oa.AsyncClient("http://h:1")
    with respx.mock() as mock:
        mock.head(url__regex=r".*/api/blobs/.*").mock(return_value=httpx.Response(404))
        mock.post(url__regex=r".*/api/blobs/.*").mock(
            return_value=httpx.Response(400, json={"error": "digest mismatch"})
        )
        with pytest.raises(oa.ResponseError) as info:
            await client.create_blob(path)
    assert info.value.status_code == 400 and info.value.error == "digest mismatch"


async def test_version_show_verbose_and_stream_flags() -> None:
    client = oa.AsyncClient("http://h:1")
    with respx.mock() as mock:
        version = mock.get("http://h:1/api/version").mock(return_value=httpx.Response(200, json={"version": "0.32.1"}))
        show = mock.post("http://h:1/api/show").mock(return_value=httpx.Response(200, json={"capabilities": []}))
        assert (await client.version()).version == "0.32.1"
        await client.show("llama3.2", verbose=True)
    assert version.called
    assert json.loads(show.calls.last.request.content) == {"model": "llama3.2", "verbose": True}


async def test_stream_request_is_sent_only_when_iterated() -> None:
    client = oa.AsyncClient("http://h:1")
    lines = b'{"model":"m","created_at":"t","response":"a","done":false}\n{"model":"m","created_at":"t","response":"","done":true}\n'
    with respx.mock() as mock:
        route = mock.post("http://h:1/api/generate").mock(return_value=httpx.Response(200, content=lines))
        stream = await client.generate("m", "x", stream=True)
        assert not route.called
        parts = [p async for p in stream]
    assert [p.done for p in parts] == [False, True]
    assert json.loads(route.calls.last.request.content)["stream"] is True
    with pytest.raises(RuntimeError):
        async for _ in stream:
            pass


async def test_thinking_logprobs_and_tool_calls_decode() -> None:
    client = oa.AsyncClient("http://h:1")
    reply = {
        "model": "m", "created_at": "t", "done": True, "done_reason": "stop",
        "message": {"role": "assistant", "content": "", "thinking": "hmm",
                    "tool_calls": [{"id": "call_1", "function": {"index": 0, "name": "f", "arguments": {"a": 1}}}]},
        "logprobs": [{"token": "a", "logprob": -0.1, "top_logprobs": [{"token": "b", "logprob": -2.0}]}],
        "total_duration": 10, "load_duration": 1, "prompt_eval_duration": 2, "eval_duration": 3, "eval_count": 3,
    }
    with respx.mock() as mock:
        mock.post("http://h:1/api/chat").mock(return_value=httpx.Response(200, json=reply))
        r = await client.chat("m", [{"role": "user", "content": "x"}], think=True, logprobs=True, top_logprobs=1)
    assert r.message.thinking == "hmm"
    call = r.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "f" and call.function.arguments == {"a": 1} and call["id"] == "call_1"
    assert r.logprobs is not None and r.logprobs[0].top_logprobs[0].token == "b"  # type: ignore[index]
    assert r.queue_duration == 4 and r.tokens_per_second == pytest.approx(1e9)


async def test_tool_call_id_is_kept_when_sent_back() -> None:
    client = oa.AsyncClient("http://h:1")
    ok = {"model": "m", "created_at": "t", "done": True, "message": {"role": "assistant", "content": "ok"}}
    history = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "function": {"name": "f", "arguments": '{"a": 1}'}}]},
        {"role": "tool", "content": "1", "tool_name": "f"},
    ]
    with respx.mock() as mock:
        route = mock.post("http://h:1/api/chat").mock(return_value=httpx.Response(200, json=ok))
        await client.chat("m", history)
    sent = json.loads(route.calls.last.request.content)["messages"][1]["tool_calls"][0]
    assert sent == {"function": {"name": "f", "arguments": {"a": 1}}, "id": "call_1"}


async def test_web_tools_need_a_key_and_send_it_to_ollama_com(monkeypatch: pytest.MonkeyPatch) -> None:
    client = oa.AsyncClient("http://h:1")
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    with pytest.raises(oa.RequestError):
        await client.web_search("x")
    monkeypatch.setenv("OLLAMA_API_KEY", "k")
    with respx.mock() as mock:
        route = mock.post("https://ollama.com/api/web_search").mock(
            return_value=httpx.Response(200, json={"results": [{"title": "t", "url": "u", "content": "c"}]})
        )
        r = await client.web_search("ollama", max_results=1)
        mock.post("https://ollama.com/api/web_fetch").mock(side_effect=httpx.ConnectError("down"))
        with pytest.raises(oa.OllamaConnectionError):
            await client.web_fetch("https://example.org")
    assert r.results[0].title == "t"
    assert route.calls.last.request.headers["authorization"] == "Bearer k"
    assert json.loads(route.calls.last.request.content) == {"query": "ollama", "max_results": 1}
