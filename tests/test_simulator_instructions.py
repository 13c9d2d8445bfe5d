"""The simulator's instruction rules (tool choice and arguments, JSON-mode keys) and image checks.

Over real loopback sockets with raw httpx, as the other simulator wire tests.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ollama_async.testing import ModelSpec, Simulator
from ollama_async.testing._instructions import calls_tool, tool_arguments
from ollama_async.testing._text import Rng
from ollama_async.testing._vision import IMAGE_TOKENS

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"


def _tool(name: str, **props: str) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "parameters": {"type": "object", "properties": {k: {"type": t} for k, t in props.items()},
                                     "required": list(props)}}}


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with Simulator([ModelSpec("llama3.2", tokens=8)]) as sim, httpx.Client(base_url=sim.url) as http:
        yield http


def _chat(client: httpx.Client, text: str, **body: Any) -> dict[str, Any]:
    reply = client.post("/api/chat", json={"model": "llama3.2", "stream": False,
                                           "messages": [{"role": "user", "content": text}], **body})
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def _calls(reply: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(c["function"]["name"], c["function"]["arguments"]) for c in reply["message"].get("tool_calls", [])]


def test_a_written_call_gives_its_arguments(client: httpx.Client) -> None:
    tools = [_tool("magic_function", input="integer", label="string")]
    reply = _chat(client, "What is magic_function(3, label='x')? Use the tool.", tools=tools)
    assert _calls(reply) == [("magic_function", {"input": 3, "label": "x"})]
    assert _calls(_chat(client, "run magic_function()", tools=[_tool("magic_function")])) == [("magic_function", {})]


def test_a_telling_word_of_the_name_calls_the_tool_and_quotes_fill_strings(client: httpx.Client) -> None:
    tools = [_tool("get_weather", location="string"), _tool("unicode_customer", customer_name="string")]
    assert _calls(_chat(client, "What is the weather in 'San Francisco'?", tools=tools)) == [
        ("get_weather", {"location": "San Francisco"})]
    assert _calls(_chat(client, "Create a customer named '你好啊集团'", tools=tools)) == [
        ("unicode_customer", {"customer_name": "你好啊集团"})]
    # "get" alone says nothing: no call, a text answer
    plain = _chat(client, "get me a poem", tools=tools)
    assert "tool_calls" not in plain["message"] and plain["message"]["content"]


def test_rules_are_pure_functions() -> None:
    assert calls_tool("getWeather", "the weather today") and not calls_tool("get_weather", "get it")
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}
    assert tool_arguments("add", schema, "add(1, 2)", Rng(1)) == {"a": 1, "b": 2}
    assert tool_arguments("add", schema, "x", Rng(1)) == tool_arguments("add", schema, "x", Rng(1))


def test_json_mode_uses_the_quoted_keys(client: httpx.Client) -> None:
    reply = _chat(client, "Return JSON with 'setup' and 'punchline' keys.", format="json")
    import json

    assert set(json.loads(reply["message"]["content"])) == {"setup", "punchline"}
    assert set(json.loads(_chat(client, "any JSON", format="json")["message"]["content"])) == {"response"}


def test_images_are_checked_and_counted(client: httpx.Client) -> None:
    plain = _chat(client, "describe")
    b64 = base64.b64encode(PNG).decode()
    reply = client.post("/api/chat", json={"model": "llama3.2", "stream": False, "messages": [
        {"role": "user", "content": "describe", "images": [b64]}]}).json()
    assert reply["prompt_eval_count"] == plain["prompt_eval_count"] + IMAGE_TOKENS
    gen = client.post("/api/generate", json={"model": "llama3.2", "stream": False, "prompt": "x",
                                             "images": [b64, b64]}).json()
    gen_plain = client.post("/api/generate", json={"model": "llama3.2", "stream": False, "prompt": "x"}).json()
    assert gen["prompt_eval_count"] == gen_plain["prompt_eval_count"] + 2 * IMAGE_TOKENS
    bad = client.post("/api/chat", json={"model": "llama3.2", "stream": False, "messages": [
        {"role": "user", "content": "d", "images": ["data:image/png;base64," + b64]}]})
    assert bad.status_code == 400 and bad.json() == {"error": "illegal base64 data at input byte 4"}
