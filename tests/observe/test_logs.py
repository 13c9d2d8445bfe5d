"""Each log event of the client (caplog), over loopback against the simulator; and that no prompt,
output or API key reaches a log unless content logging is switched on."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

import ollama_async as oa
from ollama_async import RetryPolicy
from ollama_async.testing import Fault, Simulator

from .conftest import EMB, GEN, stop_early_then_break

pytestmark = pytest.mark.anyio

SECRET_PROMPT = "my-secret-prompt-4711"
API_KEY = "sk-test-key-0815"




@pytest.fixture(autouse=True)
def _no_content() -> Iterator[None]:
    yield
    oa.set_log_content(False)


def fast_retries(client: oa.AsyncClient, n: int = 2) -> None:
    client._transport.retry = RetryPolicy(max_retries=n, backoff_base=0.001, backoff_max=0.002)


def records(caplog: pytest.LogCaptureFixture, name: str, level: int | None = None) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name and (level is None or r.levelno == level)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_503_gate_and_retry(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ollama_async")
    async with oa.AsyncClient(sim.url) as client:
        sim.inject(Fault.busy(1, retry_after=0.01))
        await client.generate(GEN, "x")
    (gate,) = records(caplog, "ollama_async.limits", logging.WARNING)
    assert gate.getMessage() == "server busy (503) for model gen: its requests wait 0.01s"
    (retry,) = records(caplog, "ollama_async.transport", logging.INFO)
    assert retry.getMessage() == "retrying POST /api/generate (model gen) in 0.01s after HTTP 503 (retry 1 of 2)"
    assert retry.args and "%" in str(retry.msg)  # lazy: formatted only when emitted


async def test_connection_failure_retried_then_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ollama_async")
    async with oa.AsyncClient(f"127.0.0.1:{free_port()}") as client:
        fast_retries(client, 1)
        with pytest.raises(oa.OllamaConnectionError):
            await client.generate(GEN, "x")
    retries = records(caplog, "ollama_async.transport", logging.INFO)
    assert [r.getMessage().split(" in ")[0] for r in retries] == ["retrying POST /api/generate (model gen)"]
    assert "after ConnectError (retry 1 of 1)" in retries[0].getMessage()
    (failure,) = records(caplog, "ollama_async.transport", logging.WARNING)
    assert failure.getMessage().startswith("POST /api/generate (model gen) failed: OllamaConnectionError: ")


async def test_timeout_is_a_warning(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ollama_async")
    async with oa.AsyncClient(sim.url, timeout=0.05, max_retries=0) as client:
        sim.inject(Fault.slow_first_byte(0.5))
        with pytest.raises(oa.OllamaTimeoutError):
            await client.generate(GEN, "x")
    (failure,) = records(caplog, "ollama_async.transport", logging.WARNING)
    assert failure.getMessage().startswith(
        "POST /api/generate (model gen) failed: OllamaTimeoutError: read timeout after "
    )


async def test_http_error_is_info_with_the_server_text(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ollama_async")
    async with oa.AsyncClient(sim.url) as client:
        with pytest.raises(oa.ModelNotFoundError):
            await client.generate("missing", "x")
    (failure,) = records(caplog, "ollama_async.transport", logging.INFO)
    assert failure.getMessage() == (
        "POST /api/generate (model missing) failed: ModelNotFoundError (HTTP 404): model 'missing' not found"
    )
    assert not records(caplog, "ollama_async.transport", logging.WARNING)


async def test_stream_stopped_early_and_broken(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ollama_async.streaming")
    async with oa.AsyncClient(sim.url) as client:
        await stop_early_then_break(client, sim)
        sim.inject(Fault.reset(after=3))
        with pytest.raises(oa.IncompleteStreamError):
            async for _ in await client.chat(GEN, [{"role": "user", "content": "x"}], stream=True):
                pass
    (early,) = records(caplog, "ollama_async.streaming", logging.DEBUG)
    assert early.getMessage() == "stream POST /api/generate (model gen) closed by the caller after 1 parts"
    broken = [r.getMessage() for r in records(caplog, "ollama_async.streaming", logging.WARNING)]
    assert broken == [
        "stream POST /api/generate (model gen) broke after 2 parts: StreamError (HTTP 500): boom",
        "stream POST /api/chat (model gen) broke after 3 parts: IncompleteStreamError after 3 parts",
    ]


async def test_stream_retried_before_its_first_part(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ollama_async")
    async with oa.AsyncClient(sim.url) as client:
        fast_retries(client)
        sim.inject(Fault.reset(after=0))
        parts = [p async for p in await client.generate(GEN, "x", stream=True)]
    assert parts[-1].done and parts[-1].metrics is not None and parts[-1].metrics.retries == 1
    (retry,) = records(caplog, "ollama_async.transport", logging.INFO)
    assert "after stream broke before its first part: " in retry.getMessage()


async def test_debug_line_per_request(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ollama_async.transport")
    async with oa.AsyncClient(sim.url, metrics=False) as client:  # DEBUG alone asks for the timings
        await client.generate(GEN, "x")
    (line,) = records(caplog, "ollama_async.transport", logging.DEBUG)
    text = line.getMessage()
    assert text.startswith(f"POST /api/generate (model gen) at {sim.url.split('://')[1]}: 200 in ")
    assert "slot wait" in text and "output tokens 6 at" in text and "0 retries" in text


async def test_failing_hook_is_logged(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    def hook(m: oa.RequestMetrics) -> None:
        raise ValueError("bad hook")

    async with oa.AsyncClient(sim.url, on_request=hook) as client:
        await client.version()
    (record,) = records(caplog, "ollama_async.hooks", logging.ERROR)
    assert "raised; the request is not affected" in record.getMessage() and record.exc_info


async def test_batch_events(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ollama_async.batch")
    async with oa.AsyncClient(sim.url, max_retries=0) as client:
        sim.inject(Fault.busy(1, retry_after=0.01), model=GEN)
        results = await client.batch.generate(GEN, ["a", "b"], concurrency=1)
        sim.inject(Fault.status(413, "too large"), path="/v1/embeddings")  # the batch embeds over /v1
        vectors = await client.batch.embed(EMB, ["a", "b", "c", "d"], batch_size=4)
    assert len(results) == 2 and len(vectors) == 4
    messages = [r.getMessage() for r in records(caplog, "ollama_async.batch", logging.INFO)]
    assert messages[0] == "generate gen: started with 1 workers"
    assert messages[1].startswith("gen still busy (503) after the client's retries: requeued (1 of ")
    assert messages[2].startswith("generate gen: 2 items done, 0 failed, in ")
    assert "embed emb: a request of 4 texts got HTTP 413; splitting it in two" in messages
    assert messages[-1].startswith("embed emb: 4 items done, 0 failed, in ")


async def test_no_prompt_output_or_api_key_in_any_log(
    sim: Simulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every event above, at DEBUG, with the API key set: neither key nor prompt nor output appears."""
    monkeypatch.setenv("OLLAMA_API_KEY", API_KEY)
    caplog.set_level(logging.DEBUG, logger="ollama_async")
    logging.getLogger("ollama_async.testing").setLevel(logging.WARNING)  # the simulator is not the client
    outputs: list[str] = []
    async with oa.AsyncClient(sim.url) as client:
        fast_retries(client)
        r = await client.generate(GEN, SECRET_PROMPT)
        outputs.append(r.response or "")
        sim.inject(Fault.busy(1, retry_after=0.01))
        await client.chat(GEN, [{"role": "user", "content": SECRET_PROMPT}])
        sim.inject(Fault.malformed_line(after=1))
        with pytest.raises(oa.StreamError):
            async for p in await client.generate(GEN, SECRET_PROMPT, stream=True):
                outputs.append(p.response or "")
        sim.inject(Fault.error_line(after=1, error="failed"))
        with pytest.raises(oa.StreamError):
            async for _ in await client.chat(GEN, [{"role": "user", "content": SECRET_PROMPT}], stream=True):
                pass
        stream = await client.generate(GEN, SECRET_PROMPT, stream=True)
        async with stream:
            async for _ in stream:
                break
        await client.embed(EMB, [SECRET_PROMPT])
        with pytest.raises(oa.ModelNotFoundError):
            await client.generate("missing", SECRET_PROMPT)
        await client.batch.generate(GEN, [SECRET_PROMPT])
    assert len(caplog.records) > 10
    outputs = [o for o in outputs if len(o) > 8] + [outputs[0][:16], outputs[0][-16:]]
    for record in caplog.records:
        if record.name.startswith("ollama_async.testing"):
            continue
        text = record.getMessage() + " " + repr(record.args)
        assert SECRET_PROMPT not in text and API_KEY not in text, record.name
        assert "Bearer" not in text
        assert not any(o in text for o in outputs), (record.name, text)


async def test_content_logging_is_opt_in(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ollama_async.transport")
    async with oa.AsyncClient(sim.url) as client:
        await client.generate(GEN, SECRET_PROMPT)
        assert not any(SECRET_PROMPT in r.getMessage() for r in caplog.records)
        oa.set_log_content(True)
        r = await client.generate(GEN, SECRET_PROMPT)
    bodies = [r.getMessage() for r in caplog.records if SECRET_PROMPT in r.getMessage()]
    assert len(bodies) == 1 and bodies[0].startswith("POST /api/generate to ") and '"prompt"' in bodies[0]
    replies = [r.getMessage() for r in caplog.records if "reply:" in r.getMessage()]
    assert len(replies) == 1 and (r.response or "")[:20] in replies[0]


def test_content_clip() -> None:
    from ollama_async._log import CONTENT_LIMIT, clip

    assert clip(b"abc") == "abc"
    long = clip(b"x" * (CONTENT_LIMIT + 5))
    assert long.endswith(f"... ({CONTENT_LIMIT + 5} bytes)") and long.count("x") == CONTENT_LIMIT
    assert clip(None) == "<none>" and clip(lambda: None) == "<streamed body>"
