"""The simulator's wire format: every endpoint's shape, status codes, content types and errors.

Checked against the API doc (/work/shared/ollama-api.md, "Observed on a real server") over
real loopback sockets with raw httpx.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ollama_async.testing import ModelSpec, Simulator

JSON_CT = "application/json; charset=utf-8"
NDJSON_CT = "application/x-ndjson"
METRICS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)
RFC3339_NS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    models = [
        ModelSpec("llama3.2", tokens=8),
        ModelSpec("plain", tokens=6, capabilities=("completion",)),
        ModelSpec("nomic-embed-text", kind="embed", dim=64, context_length=16),
    ]
    with Simulator(models, seed=7) as s:
        yield s


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=10) as c:
        yield c


def stream_lines(
    client: httpx.Client, path: str, body: dict[str, Any]
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    with client.stream("POST", path, json=body) as r:
        raw = [line for line in r.iter_lines()]
    return r, [json.loads(line) for line in raw]


# --- basics -------------------------------------------------------------------------------------


def test_root_version_and_routing(client: httpx.Client) -> None:
    r = client.get("/")
    assert (r.status_code, r.text) == (200, "Ollama is running")
    assert r.headers["content-type"].startswith("text/plain")
    h = client.head("/")
    assert h.status_code == 200 and h.content == b""
    v = client.get("/api/version")
    assert v.status_code == 200 and v.headers["content-type"] == JSON_CT
    assert isinstance(v.json()["version"], str)
    nf = client.get("/api/nope")
    assert (nf.status_code, nf.text) == (404, "404 page not found")
    assert nf.headers["content-type"].startswith("text/plain")
    na = client.get("/api/generate")
    assert (na.status_code, na.text) == (405, "405 method not allowed")
    assert client.post("/api/tags").status_code == 405


def test_generate_stream_shape(client: httpx.Client) -> None:
    r, chunks = stream_lines(client, "/api/generate", {"model": "llama3.2", "prompt": "why is the sky blue"})
    assert r.status_code == 200
    assert r.headers["content-type"] == NDJSON_CT
    assert r.headers["transfer-encoding"] == "chunked"
    *body, final = chunks
    assert len(body) == 8
    for c in body:
        assert set(c) == {"model", "created_at", "response", "done"}
        assert c["done"] is False and c["model"] == "llama3.2"
        assert RFC3339_NS.match(c["created_at"])
        assert c["response"]
    assert final["done"] is True and final["response"] == "" and final["done_reason"] == "stop"
    for m in METRICS:
        assert isinstance(final[m], int) and final[m] > 0, m
    assert final["eval_count"] == 8
    assert all(isinstance(t, int) for t in final["context"]) and len(final["context"]) > 8
    assert (
        final["total_duration"]
        >= final["load_duration"] + final["prompt_eval_duration"] + final["eval_duration"]
    )
    full = "".join(c["response"] for c in body)
    one = client.post(
        "/api/generate", json={"model": "llama3.2", "prompt": "why is the sky blue", "stream": False}
    )
    assert one.status_code == 200 and one.headers["content-type"] == JSON_CT
    obj = one.json()
    assert obj["response"] == full
    assert obj["context"] == final["context"]
    assert "thinking" not in obj and "logprobs" not in obj
    assert all(m in obj for m in METRICS)


def test_generate_omits_and_caps(client: httpx.Client) -> None:
    raw = client.post(
        "/api/generate", json={"model": "llama3.2", "prompt": "hi", "raw": True, "stream": False}
    ).json()
    assert "context" not in raw
    capped = client.post(
        "/api/generate",
        json={"model": "llama3.2", "prompt": "hi", "options": {"num_predict": 3}, "stream": False},
    ).json()
    assert capped["done_reason"] == "length" and capped["eval_count"] == 3
    assert len(capped["response"].split()) == 3
    suffix = client.post(
        "/api/generate", json={"model": "llama3.2", "prompt": "def f(", "suffix": "return 1", "stream": False}
    )
    assert suffix.status_code == 200 and suffix.json()["response"]
    nosuffix = client.post("/api/generate", json={"model": "plain", "prompt": "def f(", "suffix": "x"})
    assert (nosuffix.status_code, nosuffix.json()["error"]) == (
        400,
        "registry.ollama.ai/library/plain:latest does not support insert",
    )
    conflict = client.post(
        "/api/generate", json={"model": "llama3.2", "prompt": "hi", "raw": True, "system": "x"}
    )
    assert conflict.status_code == 400 and "raw mode" in conflict.json()["error"]


def test_empty_prompt_loads_and_keep_alive_zero_unloads(client: httpx.Client) -> None:
    r = client.post("/api/generate", json={"model": "plain"})
    assert r.status_code == 200 and r.headers["content-type"] == JSON_CT
    assert r.json() == {
        "model": "plain",
        "created_at": r.json()["created_at"],
        "response": "",
        "done": True,
        "done_reason": "load",
    }
    names = [m["name"] for m in client.get("/api/ps").json()["models"]]
    assert "plain:latest" in names
    u = client.post("/api/generate", json={"model": "plain", "keep_alive": 0}).json()
    assert u["done_reason"] == "unload"
    assert "plain:latest" not in [m["name"] for m in client.get("/api/ps").json()["models"]]
    c = client.post("/api/chat", json={"model": "llama3.2", "messages": []}).json()
    assert c["done_reason"] == "load" and c["message"] == {"role": "assistant", "content": ""}


def test_chat_stream_and_non_stream(client: httpx.Client) -> None:
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hello there"}]}
    r, chunks = stream_lines(client, "/api/chat", body)
    assert r.headers["content-type"] == NDJSON_CT
    *parts, final = chunks
    for c in parts:
        assert set(c) == {"model", "created_at", "message", "done"}
        assert c["message"]["role"] == "assistant" and c["message"]["content"]
    assert final["message"] == {"role": "assistant", "content": ""}
    assert final["done"] and final["done_reason"] == "stop" and "context" not in final
    assert all(m in final for m in METRICS)
    one = client.post("/api/chat", json={**body, "stream": False}).json()
    assert one["message"]["content"] == "".join(c["message"]["content"] for c in parts)


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city", "days", "unit"],
        },
    },
}


def test_chat_tool_calls(client: httpx.Client) -> None:
    msgs = [{"role": "user", "content": "Call get_weather for Paris please"}]
    _r, chunks = stream_lines(
        client, "/api/chat", {"model": "llama3.2", "messages": msgs, "tools": [WEATHER_TOOL]}
    )
    calls = [tc for c in chunks for tc in c["message"].get("tool_calls", [])]
    assert len(calls) == 1 and "tool_calls" in chunks[-1]["message"]
    fn = calls[0]["function"]
    assert fn["name"] == "get_weather" and fn["index"] == 0
    assert isinstance(fn["arguments"]["city"], str)
    assert isinstance(fn["arguments"]["days"], int) and 1 <= fn["arguments"]["days"] <= 7
    assert fn["arguments"]["unit"] in ("c", "f")
    assert calls[0]["id"].startswith("call_")
    one = client.post(
        "/api/chat", json={"model": "llama3.2", "messages": msgs, "tools": [WEATHER_TOOL], "stream": False}
    ).json()
    assert one["message"]["tool_calls"] == calls and one["message"]["content"] == ""
    plain = client.post(
        "/api/chat",
        json={
            "model": "llama3.2",
            "messages": [{"role": "user", "content": "no tools here"}],
            "tools": [WEATHER_TOOL],
            "stream": False,
        },
    ).json()
    assert "tool_calls" not in plain["message"] and plain["message"]["content"]
    nosupport = client.post("/api/chat", json={"model": "plain", "messages": msgs, "tools": [WEATHER_TOOL]})
    assert nosupport.status_code == 400
    assert nosupport.json()["error"] == "registry.ollama.ai/library/plain:latest does not support tools"


def test_think_and_logprobs(client: httpx.Client) -> None:
    _r, chunks = stream_lines(
        client,
        "/api/generate",
        {"model": "llama3.2", "prompt": "think", "think": True, "logprobs": True, "top_logprobs": 3},
    )
    *parts, _final = chunks
    kinds = ["thinking" if "thinking" in c else "response" for c in parts]
    assert (
        kinds == sorted(kinds, key=lambda k: k != "thinking") and "thinking" in kinds and "response" in kinds
    )
    for c in parts:
        assert len(c["logprobs"]) == 1 and len(c["logprobs"][0]["top_logprobs"]) == 3
        assert c["logprobs"][0]["logprob"] <= 0
    one = client.post(
        "/api/generate", json={"model": "llama3.2", "prompt": "think", "think": "high", "stream": False}
    ).json()
    assert one["thinking"] and one["response"]
    chat = client.post(
        "/api/chat",
        json={
            "model": "llama3.2",
            "messages": [{"role": "user", "content": "q"}],
            "think": True,
            "stream": False,
        },
    ).json()
    assert chat["message"]["thinking"]
    no = client.post("/api/generate", json={"model": "plain", "prompt": "x", "think": True})
    assert (no.status_code, no.json()["error"]) == (400, '"plain" does not support thinking')
    bad = client.post("/api/generate", json={"model": "llama3.2", "prompt": "x", "think": "lots"})
    assert bad.status_code == 400 and "invalid think value" in bad.json()["error"]
    top = client.post("/api/generate", json={"model": "llama3.2", "prompt": "x", "top_logprobs": 21})
    assert (top.status_code, top.json()["error"]) == (400, "top_logprobs must be between 0 and 20")


def test_structured_output(client: httpx.Client) -> None:
    j = client.post(
        "/api/generate",
        json={"model": "llama3.2", "prompt": "json please", "format": "json", "stream": False},
    ).json()
    assert isinstance(json.loads(j["response"]), dict)
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "score": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "ok": {"type": "boolean"},
            "extra": {"type": "string"},
        },
        "required": ["name", "age", "score", "tags", "ok"],
    }
    _r, chunks = stream_lines(
        client,
        "/api/chat",
        {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}], "format": schema},
    )
    value = json.loads("".join(c["message"]["content"] for c in chunks))
    assert set(value) == {"name", "age", "score", "tags", "ok"}
    assert (
        isinstance(value["name"], str)
        and isinstance(value["age"], int)
        and not isinstance(value["age"], bool)
    )
    assert isinstance(value["score"], float) and isinstance(value["ok"], bool)
    assert isinstance(value["tags"], list) and all(isinstance(t, str) for t in value["tags"])


def test_embed_shapes_and_vectors(client: httpx.Client) -> None:
    r = client.post("/api/embed", json={"model": "nomic-embed-text", "input": ["a b", "c", "a b"]})
    assert r.status_code == 200 and r.headers["content-type"] == JSON_CT
    obj = r.json()
    assert set(obj) == {"model", "embeddings", "total_duration", "load_duration", "prompt_eval_count"}
    assert obj["prompt_eval_count"] == 5
    vecs = obj["embeddings"]
    assert len(vecs) == 3 and all(len(v) == 64 for v in vecs)
    assert vecs[0] == vecs[2] and vecs[0] != vecs[1]
    for v in vecs:
        assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-5)
    single = client.post("/api/embed", json={"model": "nomic-embed-text", "input": "a b"}).json()[
        "embeddings"
    ]
    assert single == [vecs[0]]
    small = client.post(
        "/api/embed", json={"model": "nomic-embed-text", "input": "a b", "dimensions": 8}
    ).json()["embeddings"][0]
    assert len(small) == 8 and math.isclose(math.sqrt(sum(x * x for x in small)), 1.0, rel_tol=1e-5)
    assert small[0] * vecs[0][1] == pytest.approx(
        small[1] * vecs[0][0], rel=1e-4
    )  # same direction as a prefix
    empty = client.post("/api/embed", json={"model": "nomic-embed-text", "input": []}).json()
    assert empty == {"model": "nomic-embed-text", "embeddings": []}
    legacy = client.post("/api/embeddings", json={"model": "nomic-embed-text", "prompt": "a b"})
    assert legacy.status_code == 200 and list(legacy.json()) == ["embedding"]
    assert legacy.json()["embedding"] == pytest.approx(vecs[0], rel=1e-6)
    assert client.post("/api/embeddings", json={"model": "nomic-embed-text", "prompt": ""}).json() == {
        "embedding": []
    }


def test_embed_context_length(client: httpx.Client) -> None:
    long_text = " ".join(["word"] * 40)
    cut = client.post("/api/embed", json={"model": "nomic-embed-text", "input": long_text}).json()
    assert cut["prompt_eval_count"] == 16
    same = client.post(
        "/api/embed", json={"model": "nomic-embed-text", "input": " ".join(["word"] * 16)}
    ).json()
    assert cut["embeddings"] == same["embeddings"]
    refused = client.post(
        "/api/embed", json={"model": "nomic-embed-text", "input": long_text, "truncate": False}
    )
    assert (refused.status_code, refused.json()["error"]) == (
        400,
        "the input length exceeds the context length",
    )


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/api/generate", {"model": "nope", "prompt": "x"}, 404, "model 'nope' not found"),
        ("/api/chat", {"model": "nope", "messages": []}, 404, "model 'nope' not found"),
        ("/api/show", {"model": "nope"}, 404, "model 'nope:latest' not found"),
        ("/api/generate", {"prompt": "x"}, 404, "model '' not found"),
        ("/api/chat", {"messages": []}, 400, "model is required"),
        ("/api/embed", {"model": "nope", "input": "x"}, 404, "model 'nope' not found"),
        (
            "/api/embeddings",
            {"model": "nope", "prompt": "x"},
            404,
            'model "nope" not found, try pulling it first',
        ),
        ("/api/generate", b'{"model": "llama3.2", "prompt":', 400, "unexpected EOF"),
        ("/api/generate", b"hello", 400, "invalid character 'h' looking for beginning of value"),
        ("/api/generate", b"", 400, "missing request body"),
        (
            "/api/generate",
            {"model": "nomic-embed-text", "prompt": "x"},
            400,
            '"nomic-embed-text" does not support generate',
        ),
        (
            "/api/chat",
            {"model": "nomic-embed-text", "messages": [{"role": "user", "content": "x"}]},
            400,
            '"nomic-embed-text" does not support chat',
        ),
        ("/api/embed", {"model": "llama3.2", "input": "x"}, 501, "this model does not support embeddings"),
        (
            "/api/embeddings",
            {"model": "llama3.2", "prompt": "x"},
            500,
            "this model does not support embeddings",
        ),
        (
            "/api/generate",
            {"model": "llama3.2", "prompt": "x", "keep_alive": "300"},
            400,
            'time: missing unit in duration "300"',
        ),
        (
            "/api/generate",
            {"model": "llama3.2", "prompt": "x", "options": {"temperature": "hot"}},
            500,
            'option "temperature" must be of type float32',
        ),
        (
            "/api/generate",
            {"model": "llama3.2", "prompt": "x", "options": {"num_predict": "10"}},
            500,
            'option "num_predict" must be of type integer',
        ),
        (
            "/api/generate",
            {"model": 12, "prompt": "x"},
            400,
            "json: cannot unmarshal number into Go struct field GenerateRequest.model of type string",
        ),
        ("/api/embed", {"model": "nomic-embed-text", "input": [1, 2]}, 400, "invalid input type"),
        (
            "/api/generate",
            {"model": "llama3.2", "prompt": " ".join(["w"] * 5000), "truncate": False},
            400,
            "the input length exceeds the context length",
        ),
    ],
)
def test_error_replies(
    client: httpx.Client, path: str, body: dict[str, Any] | bytes, status: int, error: str
) -> None:
    r = client.post(path, content=body) if isinstance(body, bytes) else client.post(path, json=body)
    assert r.status_code == status
    assert r.headers["content-type"] == JSON_CT
    assert r.json() == {"error": error}


def test_keep_alive_forms(client: httpx.Client) -> None:
    for ka in ("5m", "1h30m", "300ms", 120, -1, "-1s"):
        r = client.post(
            "/api/generate", json={"model": "llama3.2", "prompt": "x", "keep_alive": ka, "stream": False}
        )
        assert r.status_code == 200, ka
    far = next(m for m in client.get("/api/ps").json()["models"] if m["name"] == "llama3.2:latest")
    assert far["expires_at"] > "2200"  # negative keep_alive = forever


def test_tags_show_ps(client: httpx.Client) -> None:
    tags = client.get("/api/tags")
    assert tags.headers["content-type"] == JSON_CT
    by_name = {m["name"]: m for m in tags.json()["models"]}
    assert {"llama3.2:latest", "plain:latest", "nomic-embed-text:latest"} <= set(by_name)
    m = by_name["llama3.2:latest"]
    assert m["model"] == "llama3.2:latest" and re.fullmatch(r"[0-9a-f]{64}", m["digest"])
    assert isinstance(m["size"], int) and m["size"] > 0
    assert {"format", "family", "families", "parameter_size", "quantization_level"} <= set(m["details"])
    show = client.post("/api/show", json={"model": "llama3.2"})
    assert show.status_code == 200
    s = show.json()
    assert {"modelfile", "template", "details", "model_info", "capabilities", "modified_at"} <= set(s)
    assert "completion" in s["capabilities"] and s["model_info"]["llama.context_length"] == 4096
    assert client.post("/api/show", json={"model": "nomic-embed-text"}).json()["capabilities"] == [
        "embedding"
    ]
    client.post("/api/generate", json={"model": "llama3.2", "prompt": "x", "stream": False})
    ps = client.get("/api/ps").json()["models"]
    entry = next(p for p in ps if p["name"] == "llama3.2:latest")
    assert {"name", "model", "size", "digest", "details", "expires_at", "size_vram", "context_length"} <= set(
        entry
    )
    assert entry["context_length"] == 4096


def test_tag_defaults_to_latest(client: httpx.Client) -> None:
    a = client.post("/api/generate", json={"model": "llama3.2", "prompt": "same", "stream": False}).json()
    b = client.post(
        "/api/generate", json={"model": "llama3.2:latest", "prompt": "same", "stream": False}
    ).json()
    assert a["response"] == b["response"] and b["model"] == "llama3.2:latest"


def test_pull_push_create_copy_delete(client: httpx.Client) -> None:
    r, lines = stream_lines(client, "/api/pull", {"model": "qwen3:0.6b"})
    assert r.status_code == 200 and r.headers["content-type"] == NDJSON_CT
    assert lines[0] == {"status": "pulling manifest"} and lines[-1] == {"status": "success"}
    progress = [x for x in lines if "digest" in x]
    assert progress and all(
        x["digest"].startswith("sha256:") and 0 <= x["completed"] <= x["total"] for x in progress
    )
    assert "qwen3:0.6b" in [m["name"] for m in client.get("/api/tags").json()["models"]]
    assert (
        client.post("/api/generate", json={"model": "qwen3:0.6b", "prompt": "x", "stream": False}).status_code
        == 200
    )

    r, lines = stream_lines(client, "/api/pull", {"model": "missing-model"})
    assert r.status_code == 200
    assert lines == [{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]
    ns = client.post("/api/pull", json={"model": "missing-model", "stream": False})
    assert (ns.status_code, ns.json()) == (500, {"error": "pull model manifest: file does not exist"})
    assert client.post("/api/pull", json={"model": "tinyllama", "stream": False}).json() == {
        "status": "success"
    }

    r, lines = stream_lines(client, "/api/push", {"model": "qwen3:0.6b"})
    assert lines[0] == {"status": "retrieving manifest"} and lines[-1] == {"status": "success"}
    r, lines = stream_lines(client, "/api/push", {"model": "not-here"})
    assert r.status_code == 200 and "error" in lines[-1]

    r, lines = stream_lines(
        client, "/api/create", {"model": "mine", "from": "llama3.2", "system": "be brief"}
    )
    assert lines[-1] == {"status": "success"}
    assert client.post("/api/show", json={"model": "mine"}).json()["system"] == "be brief"
    r, lines = stream_lines(client, "/api/create", {"model": "other", "from": "missing-base"})
    assert r.status_code == 200 and "error" in lines[-1]
    assert client.post("/api/create", json={"model": "x"}).status_code == 400

    cp = client.post("/api/copy", json={"source": "mine", "destination": "mine-copy"})
    assert cp.status_code == 200 and cp.content == b"" and "content-type" not in cp.headers
    assert "mine-copy:latest" in [m["name"] for m in client.get("/api/tags").json()["models"]]
    missing = client.post("/api/copy", json={"source": "zzz", "destination": "y"})
    assert (missing.status_code, missing.json()) == (404, {"error": 'model "zzz" not found'})
    d = client.request("DELETE", "/api/delete", json={"model": "mine-copy"})
    assert d.status_code == 200 and d.content == b"" and "content-type" not in d.headers
    again = client.request("DELETE", "/api/delete", json={"model": "mine-copy"})
    assert (again.status_code, again.json()) == (404, {"error": "model 'mine-copy' not found"})
    assert "mine-copy:latest" not in [m["name"] for m in client.get("/api/tags").json()["models"]]


def test_blobs(client: httpx.Client) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert client.head(f"/api/blobs/{digest}").status_code == 404

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(data), 100_000):
            yield data[i : i + 100_000]

    created = client.post(f"/api/blobs/{digest}", content=chunks())  # Transfer-Encoding: chunked
    assert created.status_code == 201
    assert client.head(f"/api/blobs/{digest}").status_code == 200
    assert client.post(f"/api/blobs/{digest}", content=data).status_code == 200
    other = "sha256:" + "0" * 64
    bad = client.post(f"/api/blobs/{other}", content=b"abc")
    assert bad.status_code == 400 and bad.json()["error"].startswith("digest mismatch")
    assert client.post("/api/blobs/md5:abc", content=b"abc").status_code == 400
    _r, lines = stream_lines(client, "/api/create", {"model": "from-blob", "files": {"m.gguf": digest}})
    assert lines[-1] == {"status": "success"}


def test_determinism(sim: Simulator, client: httpx.Client) -> None:
    def gen(prompt: str, **options: Any) -> str:
        body: dict[str, Any] = {"model": "llama3.2", "prompt": prompt, "stream": False}
        if options:
            body["options"] = options
        text = client.post("/api/generate", json=body).json()["response"]
        assert isinstance(text, str)
        return text

    assert gen("alpha") == gen("alpha")
    assert gen("alpha") != gen("beta")
    assert gen("alpha", seed=1) == gen("alpha", seed=1) != gen("alpha", seed=2)
    vec = client.post("/api/embed", json={"model": "nomic-embed-text", "input": "alpha"}).json()[
        "embeddings"
    ][0]
    with (
        Simulator([ModelSpec("e", kind="embed", dim=64)], seed=7) as other,
        httpx.Client(base_url=other.url) as c2,
    ):
        assert c2.post("/api/embed", json={"model": "e", "input": "alpha"}).json()["embeddings"][0] == vec
        c2_text = c2.post("/api/generate", json={"model": "e", "prompt": "x"})
        assert c2_text.status_code == 400


def raw_exchange(sim: Simulator, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as s:
        s.sendall(payload)
        out = b""
        while True:
            data = s.recv(65536)
            if not data:
                return out
            out += data


def test_bytes_that_cannot_start_a_request_get_a_400_at_once(sim: Simulator) -> None:
    # a TLS ClientHello (record type 0x16, no CRLF anywhere): refused on arrival, as Go's server
    # does, not held until the client's connect timeout
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32))
    reply = raw_exchange(sim, hello)  # returns when the simulator closes the connection
    assert reply.startswith(b"HTTP/1.1 400 ") and b"malformed request line" in reply
    assert raw_exchange(sim, b"\r\nGET /api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(
        b"HTTP/1.1 200 ")  # a stray CRLF before a request is still tolerated


def test_raw_http_keep_alive_chunked_and_close(sim: Simulator) -> None:
    body = json.dumps({"model": "llama3.2", "prompt": "hi", "stream": False}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    req1 = b"POST /api/generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
    req2 = b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n"
    req3 = b"HEAD /api/tags HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = raw_exchange(sim, req1 + req2 + req3)  # pipelined on one connection, closed by the last
    heads = out.count(b"HTTP/1.1 200 OK\r\n")
    assert heads == 3
    assert b'"done_reason":"stop"' in out and b'"version"' in out
    assert out.rstrip().endswith(b"Connection: close")  # HEAD: headers only, then close


def test_raw_http_bad_request(sim: Simulator) -> None:
    out = raw_exchange(sim, b"NONSENSE\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")
