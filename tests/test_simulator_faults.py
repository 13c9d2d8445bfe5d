"""Every Fault kind, streamed and not, scripted and random, as a client sees it on the wire."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ollama_async.testing import Fault, ModelSpec, Simulator

BUSY = "server busy, please try again.  maximum pending requests exceeded"
GEN = {"model": "m", "prompt": "hello world"}


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(
        [ModelSpec("m", tokens=6), ModelSpec("other", tokens=4), ModelSpec("e", kind="embed", dim=8)]
    ) as s:
        yield s


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    sim.clear_faults()
    with httpx.Client(base_url=sim.url, timeout=10) as c:
        yield c
    sim.clear_faults()


def raw_lines(
    client: httpx.Client, body: dict[str, Any], path: str = "/api/generate"
) -> tuple[int, list[str]]:
    with client.stream("POST", path, json=body) as r:
        return r.status_code, list(r.iter_lines())


def test_status_fault_any_code(sim: Simulator, client: httpx.Client) -> None:
    sim.inject(Fault.status(500))
    r = client.post("/api/generate", json=GEN)
    assert r.status_code == 500 and r.json() == {
        "error": "llama runner process has terminated: exit status 2"
    }
    sim.inject(Fault.status(429, error="slow down"))
    r = client.post("/api/generate", json={**GEN, "stream": False})
    assert (r.status_code, r.json()) == (429, {"error": "slow down"})
    sim.inject(Fault.status(503))
    r = client.post("/api/chat", json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert (r.status_code, r.json()) == (503, {"error": BUSY})
    assert client.post("/api/generate", json={**GEN, "stream": False}).status_code == 200  # used up


def test_busy_burst_with_retry_after(sim: Simulator, client: httpx.Client) -> None:
    before = sim.stats("m").rejected_503
    sim.inject(Fault.busy(3, retry_after=2))
    codes = []
    for _ in range(4):
        r = client.post("/api/generate", json={**GEN, "stream": False})
        codes.append(r.status_code)
        if r.status_code == 503:
            assert r.json() == {"error": BUSY} and r.headers["retry-after"] == "2"
    assert codes == [503, 503, 503, 200]
    assert sim.stats("m").rejected_503 == before + 3


def test_error_line_in_stream(sim: Simulator, client: httpx.Client) -> None:
    sim.inject(Fault.error_line(after=2, error="boom"))
    status, lines = raw_lines(client, GEN)
    assert status == 200
    assert len(lines) == 3
    assert [json.loads(x)["done"] for x in lines[:2]] == [False, False]
    assert json.loads(lines[2]) == {"error": "boom"}
    sim.inject(Fault.error_line(error="boom"))
    r = client.post("/api/generate", json={**GEN, "stream": False})
    assert (r.status_code, r.json()) == (500, {"error": "boom"})


def test_eof_without_done(sim: Simulator, client: httpx.Client) -> None:
    sim.inject(Fault.eof(after=3))
    status, lines = raw_lines(client, GEN)
    objs = [json.loads(x) for x in lines]
    assert status == 200 and len(objs) == 3 and not any(o["done"] for o in objs)
    sim.inject(Fault.eof(after=100))  # longer than the stream: still no done line
    status, lines = raw_lines(client, GEN)
    assert len(lines) == 6 and not any(json.loads(x)["done"] for x in lines)
    sim.inject(Fault.eof())
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/api/generate", json={**GEN, "stream": False})


def test_reset_after_n_chunks(sim: Simulator, client: httpx.Client) -> None:
    sim.inject(Fault.reset(after=2))
    got: list[str] = []
    with pytest.raises(httpx.ReadError), client.stream("POST", "/api/generate", json=GEN) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            got.append(line)
    assert len(got) == 2 and all(not json.loads(x)["done"] for x in got)
    sim.inject(Fault.reset())
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        client.post("/api/generate", json={**GEN, "stream": False})
    assert client.post("/api/generate", json={**GEN, "stream": False}).status_code == 200


def test_slow_first_byte(sim: Simulator, client: httpx.Client) -> None:
    sim.inject(Fault.slow_first_byte(0.3))
    t0 = time.perf_counter()
    with client.stream("POST", "/api/generate", json=GEN) as r:
        first = time.perf_counter() - t0
        lines = list(r.iter_lines())
    assert first >= 0.29 and json.loads(lines[-1])["done"] is True
    with pytest.raises(httpx.ReadTimeout):
        sim.inject(Fault.slow_first_byte(1.0))
        client.post("/api/generate", json={**GEN, "stream": False}, timeout=httpx.Timeout(10, read=0.2))


def test_malformed_line(sim: Simulator, client: httpx.Client) -> None:
    sim.inject(Fault.malformed_line(after=1))
    status, lines = raw_lines(client, GEN)
    bad = [x for x in lines if not _is_json(x)]
    assert status == 200 and len(bad) == 1 and lines.index(bad[0]) == 1
    assert json.loads(lines[-1])["done"] is True  # the stream goes on
    sim.inject(Fault.malformed_line())
    r = client.post("/api/generate", json={**GEN, "stream": False})
    assert r.status_code == 200 and not _is_json(r.text)


def test_blank_lines(sim: Simulator, client: httpx.Client) -> None:
    sim.inject(Fault.blank_lines(after=2, count=3))
    with client.stream("POST", "/api/generate", json=GEN) as r:
        text = r.read().decode()
    lines = text.split("\n")
    assert lines[2:5] == ["", "", ""]
    assert json.loads([x for x in lines if x][-1])["done"] is True
    sim.inject(Fault.blank_lines(count=2))
    r = client.post("/api/generate", json={**GEN, "stream": False})
    assert r.text.endswith("\n\n") and r.json()["done"] is True


def test_long_line(sim: Simulator, client: httpx.Client) -> None:
    size = 3 * 1024 * 1024
    sim.inject(Fault.long_line(size, after=1))
    status, lines = raw_lines(client, GEN)
    assert status == 200
    long = [x for x in lines if len(x) > size]
    assert len(long) == 1 and lines.index(long[0]) == 1
    assert len(json.loads(long[0])["response"]) == size
    assert json.loads(lines[-1])["done"] is True
    sim.inject(Fault.long_line(size))
    _status, lines = raw_lines(
        client, {"model": "m", "messages": [{"role": "user", "content": "x"}]}, "/api/chat"
    )
    assert len(json.loads(lines[0])["message"]["content"]) == size


def test_match_by_model_and_path(sim: Simulator, client: httpx.Client) -> None:
    sim.inject(Fault.status(500), times=2, model="other", path="/api/chat")
    assert (
        client.post("/api/generate", json={"model": "other", "prompt": "x", "stream": False}).status_code
        == 200
    )
    assert client.post("/api/chat", json={"model": "m", "messages": [], "stream": False}).status_code == 200
    chat = {"model": "other:latest", "messages": [{"role": "user", "content": "x"}], "stream": False}
    assert [client.post("/api/chat", json=chat).status_code for _ in range(3)] == [500, 500, 200]
    sim.inject(Fault.status(502), path="/api/tags")
    assert client.get("/api/tags").status_code == 502
    assert client.get("/api/tags").status_code == 200
    sim.inject(Fault.status(500), model="e")
    assert client.post("/api/embed", json={"model": "e", "input": "x"}).status_code == 500


def test_pull_stream_faults(sim: Simulator, client: httpx.Client) -> None:
    sim.inject(Fault.error_line(after=1, error="network down"), path="/api/pull")
    status, lines = raw_lines(client, {"model": "somemodel"}, "/api/pull")
    assert status == 200 and json.loads(lines[-1]) == {"error": "network down"} and len(lines) == 2
    assert "somemodel:latest" not in [m["name"] for m in client.get("/api/tags").json()["models"]]


def _random_outcomes(sim: Simulator, client: httpx.Client, n: int) -> list[str]:
    out = []
    for _ in range(n):
        try:
            r = client.post("/api/generate", json={**GEN, "stream": False})
            out.append(str(r.status_code))
        except httpx.HTTPError as exc:
            out.append(type(exc).__name__)
    return out


def test_random_faults_deterministic(sim: Simulator, client: httpx.Client) -> None:
    sim.random_faults(rate=0.5, kinds=["status_500", "busy", "eof", "reset"], seed=42)
    first = _random_outcomes(sim, client, 30)
    sim.random_faults(rate=0.5, kinds=["status_500", "busy", "eof", "reset"], seed=42)
    second = _random_outcomes(sim, client, 30)
    assert first == second
    assert "200" in first and len(set(first)) >= 3
    assert client.get("/api/tags").status_code == 200  # random faults hit inference only
    sim.random_faults(rate=0.0)
    assert _random_outcomes(sim, client, 10) == ["200"] * 10
    with pytest.raises(ValueError, match="unknown random fault kind"):
        sim.random_faults(rate=0.1, kinds=["explode"])


def test_random_faults_model_filter(sim: Simulator, client: httpx.Client) -> None:
    sim.random_faults(rate=1.0, kinds=["status_500"], seed=1, model="other")
    assert client.post("/api/generate", json={**GEN, "stream": False}).status_code == 200
    assert client.post("/api/generate", json={"model": "other", "prompt": "x"}).status_code == 500


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("explode")
    with pytest.raises(ValueError, match="status code"):
        Fault.status(700)
    with pytest.raises(ValueError, match=">= 0"):
        Fault.eof(after=-1)
    f = Fault.busy(3)
    assert f.status_code == 503 and f.count == 3
    with pytest.raises(AttributeError):
        f.count = 2  # type: ignore[misc]


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
