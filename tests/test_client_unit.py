"""Unit tests of the client's neighbours mocked with respx: host parsing, auth, retries, errors."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import ollama
import pytest
import respx

import ollama_async as oa
from ollama_async._host import parse_host

pytestmark = pytest.mark.anyio

OK = {"model": "m", "created_at": "t", "response": "ok", "done": True}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "http://127.0.0.1:11434"),
        ("", "http://127.0.0.1:11434"),
        ("1.2.3.4", "http://1.2.3.4:11434"),
        (":56789", "http://127.0.0.1:56789"),
        ("http://example.com", "http://example.com:80"),
        ("https://example.com", "https://example.com:443"),
        ("https://example.com:56789/path/", "https://example.com:56789/path"),
        ("example.com/api-proxy", "http://example.com:11434/api-proxy"),
        ("[0001:002:003:0004::1]:56789/path", "http://[0001:002:003:0004::1]:56789/path"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("[::]:8080", "http://[::1]:8080"),
    ],
)
def test_parse_host(given: str | None, expected: str) -> None:
    assert parse_host(given) == expected


@pytest.mark.parametrize("given", ["1.2.3.4", "https://example.com:56789/path/", "example.com/x", ":1"])
def test_parse_host_agrees_with_official_where_official_is_right(given: str) -> None:
    from ollama._client import _parse_host

    assert parse_host(given) == _parse_host(given)


def test_parse_host_rejects_garbage() -> None:
    with pytest.raises(oa.RequestError) as info:
        parse_host("ftp://x")
    assert info.value.field == "host"
    with pytest.raises(oa.RequestError):
        parse_host("host:notaport")


async def test_ollama_host_env_and_base_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "example.com:1234/proxy")
    client = oa.AsyncClient()
    assert client.base_url == "http://example.com:1234/proxy"
    with respx.mock() as mock:
        route = mock.post("http://example.com:1234/proxy/api/generate").mock(return_value=httpx.Response(200, json=OK))
        await client.generate("m", "x")
    assert route.called


async def test_api_key_goes_only_to_the_configured_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", "secret")
    client = oa.AsyncClient("http://h:1")
    with respx.mock() as mock:
        own = mock.post("http://h:1/api/generate").mock(
            return_value=httpx.Response(307, headers={"location": "http://elsewhere:2/api/generate"})
        )
        other = mock.post("http://elsewhere:2/api/generate").mock(return_value=httpx.Response(200, json=OK))
        await client.generate("m", "x")
    assert own.calls.last.request.headers["authorization"] == "Bearer secret"
    assert "authorization" not in other.calls.last.request.headers


async def test_explicit_authorization_header_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", "secret")
    client = oa.AsyncClient("http://h:1", headers={"Authorization": "Bearer mine"})
    with respx.mock() as mock:
        route = mock.post("http://h:1/api/generate").mock(return_value=httpx.Response(200, json=OK))
        await client.generate("m", "x")
    assert route.calls.last.request.headers["authorization"] == "Bearer mine"


async def test_injected_http_client_is_used_and_not_closed() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=OK)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with oa.AsyncClient("http://h:1", http_client=http) as client:
        assert client.http_client is http
        await client.generate("m", "x")
    assert not http.is_closed
    assert seen[0].headers["content-type"] == "application/json"
    await http.aclose()


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_retryable_statuses_are_retried(status: int) -> None:
    client = oa.AsyncClient("http://h:1", max_retries=2)
    client._transport.retry = oa.RetryPolicy(max_retries=2, backoff_base=0.001)
    with respx.mock() as mock:
        route = mock.post("http://h:1/api/generate").mock(
            side_effect=[httpx.Response(status, json={"error": "later"}), httpx.Response(200, json=OK)]
        )
        r = await client.generate("m", "x")
    assert r.done and route.call_count == 2


@pytest.mark.parametrize("status", [400, 404, 500])
async def test_other_statuses_are_not_retried(status: int) -> None:
    client = oa.AsyncClient("http://h:1", max_retries=3)
    with respx.mock() as mock:
        route = mock.post("http://h:1/api/generate").mock(
            return_value=httpx.Response(status, json={"error": "model 'm' not found" if status == 404 else "no"})
        )
        with pytest.raises(oa.ResponseError) as info:
            await client.generate("m", "x")
    assert route.call_count == 1 and info.value.status_code == status
    assert isinstance(info.value, oa.ModelNotFoundError) == (status == 404)


async def test_retry_after_is_honoured() -> None:
    client = oa.AsyncClient("http://h:1")
    with respx.mock() as mock:
        mock.post("http://h:1/api/generate").mock(
            side_effect=[httpx.Response(429, headers={"retry-after": "0.3"}), httpx.Response(200, json=OK)]
        )
        start = time.monotonic()
        await client.generate("m", "x")
    assert time.monotonic() - start >= 0.29


async def test_max_retries_zero_means_one_attempt() -> None:
    client = oa.AsyncClient("http://h:1", max_retries=0)
    with respx.mock() as mock:
        route = mock.post("http://h:1/api/generate").mock(return_value=httpx.Response(503, text="busy"))
        with pytest.raises(oa.ServerBusyError):
            await client.generate("m", "x")
    assert route.call_count == 1


async def test_connect_error_retried_then_builtin_connection_error() -> None:
    client = oa.AsyncClient("http://h:1")
    client._transport.retry = oa.RetryPolicy(max_retries=2, backoff_base=0.001)
    with respx.mock() as mock:
        route = mock.get("http://h:1/api/tags").mock(side_effect=httpx.ConnectError("refused"))
        with pytest.raises(ConnectionError):
            await client.list()
    assert route.call_count == 3


async def test_plain_text_error_body_and_official_exception_contract() -> None:
    client = oa.AsyncClient("http://h:1")
    with respx.mock() as mock:
        mock.post("http://h:1/api/chat").mock(return_value=httpx.Response(400, json={"error": "invalid"}))
        with pytest.raises(oa.ResponseError) as info:
            await client.chat("m", [{"role": "user", "content": "x"}])
    err = info.value
    assert err.error == "invalid" and err.status_code == 400
    assert str(err).startswith("invalid (status code: 400)")
    # same attribute contract as the official exception
    official = ollama.ResponseError(json.dumps({"error": "invalid"}), 400)
    assert (official.error, official.status_code) == (err.error, err.status_code)


async def test_invalid_json_response_is_a_response_error() -> None:
    client = oa.AsyncClient("http://h:1")
    with respx.mock() as mock:
        mock.get("http://h:1/api/tags").mock(return_value=httpx.Response(200, text="<html>proxy</html>"))
        with pytest.raises(oa.ResponseError) as info:
            await client.list()
    assert "invalid response body" in info.value.error


async def test_unknown_fields_are_tolerated_and_kept() -> None:
    client = oa.AsyncClient("http://h:1")
    with respx.mock() as mock:
        mock.post("http://h:1/api/generate").mock(
            return_value=httpx.Response(200, json={**OK, "future_field": {"x": 1}})
        )
        r = await client.generate("m", "x")
    assert r["future_field"] == {"x": 1} and "future_field" in r


def test_client_used_in_a_second_event_loop_fails_clearly() -> None:
    client = oa.AsyncClient("http://h:1")
    with respx.mock() as mock:
        mock.post("http://h:1/api/generate").mock(return_value=httpx.Response(200, json=OK))
        asyncio.run(client.generate("m", "x"))
        with pytest.raises(oa.EventLoopError):
            asyncio.run(client.generate("m", "x"))


@pytest.mark.asyncio
async def test_pytest_asyncio_works_too() -> None:
    client = oa.AsyncClient("http://h:1")
    with respx.mock() as mock:
        mock.get("http://h:1/api/version").mock(return_value=httpx.Response(200, json={"version": "0.32.0"}))
        assert (await client.version()).version == "0.32.0"
