"""The simulator's ``/v1`` routes on the wire: the real server's shapes, SSE framing, content
types and OpenAI-style errors (from the server's ``openai``/``middleware`` packages), checked
with raw httpx over loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ollama_async.testing import ModelSpec, Simulator

USER = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    models = [ModelSpec("llama3.2", tokens=5), ModelSpec("plain", tokens=4, capabilities=("completion",)),
              ModelSpec("nomic-embed-text", kind="embed", dim=8)]
    with Simulator(models) as sim, httpx.Client(base_url=sim.url, timeout=30) as client:
        yield client


def events(body: str) -> list[Any]:
    assert body.endswith("\n\n")
    out = []
    for block in body.split("\n\n")[:-1]:
        data = [line[6:] for line in block.split("\n") if line.startswith("data: ")]
        assert len(data) == 1, block
        out.append(data[0] if data[0] == "[DONE]" else json.loads(data[0]))
    return out


def test_chat_stream_is_sse_with_role_first_finish_usage_and_done(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json={"model": "llama3.2", "messages": USER, "stream": True,
                                                 "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
    evs = events(r.text)
    assert evs[-1] == "[DONE]"
    chunks = evs[:-1]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]} and chunks[0]["id"].startswith("chatcmpl-")
    assert {c["created"] for c in chunks} == {chunks[0]["created"]}  # one created value per stream
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": chunks[0]["choices"][0]["delta"]["content"]}
    assert "role" not in chunks[1]["choices"][0]["delta"]
    finish, usage = chunks[-2], chunks[-1]
    assert finish["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 5
    assert all(c["object"] == "chat.completion.chunk" and c["system_fingerprint"] == "fp_ollama" for c in chunks)


def test_chat_tool_call_shape(http: httpx.Client) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}
    r = http.post("/v1/chat/completions", json={"model": "llama3.2", "tools": [tool],
                                                 "messages": [{"role": "user", "content": "please lookup it"}]})
    choice = r.json()["choices"][0]
    call = choice["message"]["tool_calls"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert set(call) == {"id", "index", "type", "function"} and call["type"] == "function"
    assert isinstance(json.loads(call["function"]["arguments"])["q"], str)  # arguments are JSON text


def test_tool_history_and_content_parts_are_accepted(http: httpx.Client) -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "hi"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    assert http.post("/v1/chat/completions", json={"model": "llama3.2", "messages": messages}).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "status", "kind", "message"),
    [
        ("/v1/chat/completions", {"model": "llama3.2", "messages": []}, 400, "invalid_request_error",
         "[] is too short - 'messages'"),
        ("/v1/chat/completions", {"model": "nope", "messages": USER}, 404, "not_found_error", "model 'nope' not found"),
        ("/v1/chat/completions", {"model": "llama3.2", "messages": USER, "reasoning_effort": "huge"}, 400,
         "invalid_request_error", 'invalid reasoning value: "huge"'),
        ("/v1/chat/completions", {"model": "llama3.2", "messages": [{"role": "user", "content": 3}]}, 400,
         "invalid_request_error", "invalid message content type: float64"),
        ("/v1/chat/completions", {"model": "llama3.2", "messages": USER, "tools": [{"type": "function", "function": {
            "name": "f"}}], "stream": "yes"}, 400, "invalid_request_error", "ChatCompletionRequest.stream of type bool"),
        ("/v1/chat/completions", {"model": "plain", "messages": USER, "tools": [{"type": "function", "function": {
            "name": "f"}}]}, 400, "invalid_request_error", "does not support tools"),
        ("/v1/chat/completions", {"model": "llama3.2", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}, 400, "invalid_request_error",
         "image URLs are not currently supported"),
        ("/v1/completions", {"model": "llama3.2", "prompt": ["a"]}, 400, "invalid_request_error",
         "CompletionRequest.prompt of type string"),
        ("/v1/completions", {"model": "llama3.2", "prompt": "a", "stop": ["x", 1]}, 400, "invalid_request_error",
         "invalid type for 'stop' field: float64"),
        ("/v1/embeddings", {"model": "nomic-embed-text", "input": []}, 400, "invalid_request_error", "invalid input"),
        ("/v1/embeddings", {"model": "llama3.2", "input": "x"}, 501, "api_error", "does not support embeddings"),
        ("/v1/responses", {"model": "llama3.2", "input": [{"content": "x"}]}, 400, "invalid_request_error",
         "input item missing required 'type' field"),
    ],
)
def test_errors_are_openai_shaped(http: httpx.Client, path: str, body: dict[str, Any], status: int, kind: str,
                                  message: str) -> None:
    r = http.post(path, json=body)
    assert r.status_code == status and r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == kind
    assert message in error["message"]


def test_unknown_v1_route_is_a_plain_404(http: httpx.Client) -> None:
    r = http.post("/v1/nothing", json={})
    assert r.status_code == 404 and r.text == "404 page not found"


def test_models_routes(http: httpx.Client) -> None:
    listing = http.get("/v1/models").json()
    assert listing["object"] == "list"
    assert {m["id"] for m in listing["data"]} == {"llama3.2:latest", "plain:latest", "nomic-embed-text:latest"}
    assert all(m["object"] == "model" and m["owned_by"] == "library" and m["created"] > 0 for m in listing["data"])
    one = http.get("/v1/models/llama3.2")
    assert one.json() == {"id": "llama3.2", "object": "model", "created": one.json()["created"], "owned_by": "library"}
    missing = http.get("/v1/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


def test_completions_stream_with_usage(http: httpx.Client) -> None:
    r = http.post("/v1/completions", json={"model": "llama3.2", "prompt": "x", "stream": True,
                                            "stream_options": {"include_usage": True}})
    evs = events(r.text)
    assert evs[-1] == "[DONE]"
    assert all(e["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0} for e in evs[:-2])
    assert evs[-2]["choices"] == [] and evs[-2]["usage"]["completion_tokens"] == 5
    assert evs[-3]["choices"][0]["finish_reason"] == "stop"


def test_responses_stream_event_sequence(http: httpx.Client) -> None:
    r = http.post("/v1/responses", json={"model": "llama3.2", "input": "hi", "stream": True})
    blocks = r.text.split("\n\n")[:-1]
    names = [b.split("\n")[0].removeprefix("event: ") for b in blocks]
    datas = [json.loads(b.split("\n")[1].removeprefix("data: ")) for b in blocks]
    assert names[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert names[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [d["sequence_number"] for d in datas] == list(range(len(datas)))
    assert [d["type"] for d in datas] == names
    final = datas[-1]["response"]
    assert final["status"] == "completed" and final["usage"]["output_tokens"] == 5
    assert final["output"][0]["content"][0]["text"] == "".join(
        d["delta"] for d in datas if d["type"] == "response.output_text.delta")


def test_embeddings_float_shape(http: httpx.Client) -> None:
    r = http.post("/v1/embeddings", json={"model": "nomic-embed-text", "input": ["a", "b"], "dimensions": 4})
    body = r.json()
    native = http.post("/api/embed", json={"model": "nomic-embed-text", "input": ["a", "b"], "dimensions": 4}).json()
    assert body["object"] == "list" and body["model"] == "nomic-embed-text"
    assert [d["index"] for d in body["data"]] == [0, 1] and {d["object"] for d in body["data"]} == {"embedding"}
    assert [d["embedding"] for d in body["data"]] == native["embeddings"]
