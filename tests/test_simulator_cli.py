"""``python -m ollama_async.testing``: options, the ready line, signals, exit codes."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import httpx
import pytest

from ollama_async.testing import ModelSpec, main
from ollama_async.testing._cli import READY_PREFIX, parse_model


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ollama_async.testing", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    if not ready:
        proc.kill()
        pytest.fail("no ready line within 20 s")
    line = proc.stdout.readline()
    assert line.startswith(READY_PREFIX), line
    return proc, line.split()[-1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_and_stops_cleanly(sig: signal.Signals) -> None:
    proc, url = start(
        "--model",
        "llama3.2:1b:slots=2,token_ms=1,tokens=3",
        "--model",
        "nomic-embed-text:kind=embed,dim=32",
        "--max-queue",
        "4",
    )
    try:
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, timeout=10) as c:
            names = {m["name"] for m in c.get("/api/tags").json()["models"]}
            assert names == {"llama3.2:1b", "nomic-embed-text:latest"}
            g = c.post("/api/generate", json={"model": "llama3.2:1b", "prompt": "x", "stream": False}).json()
            assert g["eval_count"] == 3
            e = c.post("/api/embed", json={"model": "nomic-embed-text", "input": "x"}).json()
            assert len(e["embeddings"][0]) == 32
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == 0
        assert proc.stdout is not None and proc.stdout.read() == ""  # exactly one line printed
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_defaults_and_fault_rate() -> None:
    proc, url = start("--fault-rate", "1", "--fault-kinds", "status_502")
    try:
        with httpx.Client(base_url=url, timeout=10) as c:
            names = {m["name"] for m in c.get("/api/tags").json()["models"]}
            assert names == {"llama3.2:latest", "nomic-embed-text:latest"}
            assert c.post("/api/generate", json={"model": "llama3.2", "prompt": "x"}).status_code == 502
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_parse_model() -> None:
    assert parse_model("llama3.2:1b:slots=4,token_ms=5") == ModelSpec("llama3.2:1b", slots=4, token_ms=5.0)
    assert parse_model("llama3.2:slots=4") == ModelSpec("llama3.2", slots=4)
    assert parse_model("qwen3:0.6b") == ModelSpec("qwen3:0.6b")
    emb = parse_model("nomic-embed-text:kind=embed,dim=768,slots=3")
    assert (emb.name, emb.kind, emb.dim, emb.slots) == ("nomic-embed-text", "embed", 768, 1)
    with pytest.raises(ValueError, match="unknown model option"):
        parse_model("m:colour=blue")


def test_main_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "m:slots=x"]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["--fault-rate", "0.5", "--fault-kinds", "explode"]) == 2
    t0 = time.perf_counter()
    assert main(["--help"]) == 0  # returns its exit code, like every other case
    assert main(["--port", "99999"]) == 2
    assert time.perf_counter() - t0 < 5
