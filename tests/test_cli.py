"""The ``ollama-async`` command line, run as a subprocess against an in-process simulator.

Covers every command (embed to .npy/.parquet/.jsonl, generate, chat, bench, demo, serve-sim),
every input format (txt, JSONL with --field/--id-field, stdin), per-item failures with their
errors file and exit code 1, and each bad-input case: a clear one-line message on stderr, a
non-zero exit code, and never a traceback. Resume is in ``test_cli_resume.py``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from ollama_async.cli._bench import Level, find_saturation
from ollama_async.testing import Fault, ModelSpec, Simulator

GEN = "llama3.2"
EMB = "nomic-embed-text"
DIM = 16


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    """A 4-slot generate model and a small embed model, shared by the module's tests."""
    with Simulator(
        models=[
            ModelSpec(name=GEN, kind="generate", slots=4, tokens=8, token_ms=0),
            ModelSpec(name=EMB, kind="embed", dim=DIM),
        ],
        seed=0,
    ) as server:
        yield server


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ollama_async.cli ARGS``; no run may print a traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "ollama_async.cli", *args],
        input=stdin, capture_output=True, text=True, timeout=timeout, env=clean_env(),
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def embed_direct(sim: Simulator, texts: list[str], dimensions: int | None = None) -> np.ndarray:
    body: dict[str, object] = {"model": EMB, "input": texts}
    if dimensions:
        body["dimensions"] = dimensions
    reply = httpx.post(f"{sim.url}/api/embed", json=body, timeout=30)
    reply.raise_for_status()
    return np.asarray(reply.json()["embeddings"], dtype=np.float32)


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- embed --------------------------------------------------------------------------------------


def test_embed_txt_to_npy_rows_in_input_order(sim: Simulator, tmp_path: Path) -> None:
    texts = [f"text number {i}" for i in range(150)]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts[:70]) + "\n\n   \n" + "\n".join(texts[70:]) + "\n")  # blank lines skipped
    out = tmp_path / "vectors.npy"
    proc = cli("embed", str(src), "--model", EMB, "--out", str(out), "--host", sim.url,
               "--batch-size", "16", "--concurrency", "3", "--keep-alive", "5m", "--truncate", "--quiet")
    assert proc.returncode == 0, proc.stderr
    matrix = np.load(out)
    assert matrix.dtype == np.float32
    assert matrix.shape == (150, DIM)
    np.testing.assert_array_equal(matrix, embed_direct(sim, texts))
    assert not Path(f"{out}.ckpt").exists()  # removed once everything succeeded
    assert not Path(f"{out}.errors.jsonl").exists()
    assert f"wrote {out}: 150 ok, 0 failed" in proc.stderr


def test_embed_jsonl_field_and_id_to_parquet(sim: Simulator, tmp_path: Path) -> None:
    rows = [{"doc": f"doc-{i}", "body": f"the body of document {i}"} for i in range(40)]
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "vectors.parquet"
    proc = cli("embed", str(src), "-m", EMB, "-o", str(out), "--host", sim.url, "--field", "body",
               "--id-field", "doc", "--concurrency", "auto", "--no-truncate", "-q")
    assert proc.returncode == 0, proc.stderr
    table = pq.read_table(out)
    assert table.schema.field("id").type == "string"
    assert str(table.schema.field("embedding").type) == "list<element: float>"
    assert table.column("id").to_pylist() == [r["doc"] for r in rows]
    got = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(got, embed_direct(sim, [r["body"] for r in rows]))


def test_embed_stdin_to_jsonl_with_dimensions(sim: Simulator, tmp_path: Path) -> None:
    texts = [f"line {i}" for i in range(25)]
    out = tmp_path / "vectors.jsonl"
    proc = cli("embed", "-", "-m", EMB, "-o", str(out), "--host", sim.url, "--dimensions", "8", "-q",
               stdin="\n".join(texts) + "\n")
    assert proc.returncode == 0, proc.stderr
    lines = read_jsonl(out)
    assert [line["id"] for line in lines] == list(range(1, 26))  # ids are line numbers
    got = np.asarray([line["embedding"] for line in lines], dtype=np.float32)
    assert got.shape == (25, 8)
    np.testing.assert_allclose(got, embed_direct(sim, texts, dimensions=8), rtol=1e-6)


def test_embed_stdin_jsonl_is_sniffed(sim: Simulator, tmp_path: Path) -> None:
    out = tmp_path / "v.npy"
    lines = "".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(10))
    proc = cli("embed", "-", "-m", EMB, "-o", str(out), "--host", sim.url, "-q", stdin=lines)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(out), embed_direct(sim, [f"t{i}" for i in range(10)]))


# -- generate / chat ----------------------------------------------------------------------------


def test_generate_writes_responses_and_metrics(sim: Simulator, tmp_path: Path) -> None:
    src = tmp_path / "prompts.txt"
    src.write_text("".join(f"prompt {i}\n" for i in range(30)))
    out = tmp_path / "results.jsonl"
    proc = cli("generate", str(src), "-m", GEN, "-o", str(out), "--host", sim.url,
               "--options", '{"temperature": 0}', "--options", "num_predict=5", "--system", "be brief",
               "--think", "false", "--keep-alive", "300", "--concurrency", "4", "-q")
    assert proc.returncode == 0, proc.stderr
    lines = read_jsonl(out)
    assert [line["id"] for line in lines] == list(range(1, 31))
    assert [line["index"] for line in lines] == list(range(30))
    for line in lines:
        assert isinstance(line["response"], str) and line["response"]
        assert line["done_reason"] in ("stop", "length")
        assert line["eval_count"] == 5  # num_predict reached the server
        for key in ("total_duration", "eval_duration", "prompt_eval_count", "load_duration"):
            assert isinstance(line[key], int)
    assert re.search(r"tokens/s", proc.stderr)


def test_generate_format_schema_file_and_id_field(sim: Simulator, tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    src = tmp_path / "q.jsonl"
    src.write_text("".join(json.dumps({"qid": f"q{i}", "question": f"what is {i}?"}) + "\n" for i in range(6)))
    out = tmp_path / "answers.jsonl"
    proc = cli("generate", str(src), "-m", GEN, "-o", str(out), "--host", sim.url, "--field", "question",
               "--id-field", "qid", "--format", str(tmp_path / "schema.json"), "-q")
    assert proc.returncode == 0, proc.stderr
    lines = read_jsonl(out)
    assert [line["id"] for line in lines] == [f"q{i}" for i in range(6)]
    for line in lines:
        assert "answer" in json.loads(str(line["response"]))


def test_chat_messages_and_plain_lines(sim: Simulator, tmp_path: Path) -> None:
    src = tmp_path / "convos.jsonl"
    src.write_text(
        json.dumps({"id": "a", "messages": [{"role": "user", "content": "hi"}]}) + "\n"
        + json.dumps({"id": "b", "messages": [{"role": "system", "content": "terse"},
                                              {"role": "user", "content": "and you?"}]}) + "\n"
    )
    out = tmp_path / "chat.jsonl"
    proc = cli("chat", str(src), "-m", GEN, "-o", str(out), "--host", sim.url, "--id-field", "id",
               "--system", "be kind", "--format", "json", "-q")
    assert proc.returncode == 0, proc.stderr
    lines = read_jsonl(out)
    assert [line["id"] for line in lines] == ["a", "b"]
    assert all(isinstance(json.loads(str(line["response"])), dict) for line in lines)
    assert all(line["eval_count"] and line["done_reason"] for line in lines)

    plain = tmp_path / "plain.txt"
    plain.write_text("hello there\nhow are you?\n")
    out2 = tmp_path / "chat2.jsonl"
    proc = cli("chat", str(plain), "-m", GEN, "-o", str(out2), "--host", sim.url, "-q")
    assert proc.returncode == 0, proc.stderr
    assert [line["id"] for line in read_jsonl(out2)] == [1, 2]


def test_failed_items_go_to_errors_file_then_rerun_retries_them(sim: Simulator, tmp_path: Path) -> None:
    src = tmp_path / "p.txt"
    src.write_text("".join(f"p{i}\n" for i in range(12)))
    out = tmp_path / "r.jsonl"
    sim.inject(Fault.status(500, "runner crashed"), times=2, model=GEN, path="/api/generate")
    try:
        proc = cli("generate", str(src), "-m", GEN, "-o", str(out), "--host", sim.url, "--concurrency", "1", "-q")
    finally:
        sim.clear_faults()
    assert proc.returncode == 1, proc.stderr
    errors = read_jsonl(Path(f"{out}.errors.jsonl"))
    assert len(errors) == 2
    for error in errors:
        assert error["status_code"] == 500
        assert error["message"] == "runner crashed"
        assert error["type"] == "ResponseError"
        assert isinstance(error["index"], int) and error["id"] == error["index"] + 1
    lines = read_jsonl(out)
    assert len(lines) == 12
    assert sum("error" in line for line in lines) == 2
    assert Path(f"{out}.ckpt").exists()

    again = cli("generate", str(src), "-m", GEN, "-o", str(out), "--host", sim.url, "-q")
    assert again.returncode == 0, again.stderr
    assert "retrying 2 failed" in again.stderr
    lines = read_jsonl(out)
    assert [line["id"] for line in lines] == list(range(1, 13))
    assert not any("error" in line for line in lines)
    assert not Path(f"{out}.errors.jsonl").exists()
    assert not Path(f"{out}.ckpt").exists()


def test_failed_embeddings_are_nan_rows_and_listed(sim: Simulator, tmp_path: Path) -> None:
    src = tmp_path / "t.txt"
    src.write_text("".join(f"t{i}\n" for i in range(20)))
    out = tmp_path / "v.npy"
    sim.inject(Fault.status(500, "embedding failed"), times=1, model=EMB, path="/v1/embeddings")  # the CLI embeds over /v1
    try:
        proc = cli("embed", str(src), "-m", EMB, "-o", str(out), "--host", sim.url, "--batch-size", "5",
                   "--concurrency", "1", "-q")
    finally:
        sim.clear_faults()
    assert proc.returncode == 1, proc.stderr
    matrix = np.load(out)
    failed_rows = np.isnan(matrix).all(axis=1)
    assert failed_rows.sum() == 5  # one request of 5 texts failed as a whole
    errors = read_jsonl(Path(f"{out}.errors.jsonl"))
    assert sorted(e["index"] for e in errors) == list(np.flatnonzero(failed_rows))
    assert {e["message"] for e in errors} == {"embedding failed"}
    np.testing.assert_array_equal(matrix[~failed_rows], embed_direct(sim, [f"t{i}" for i in range(20)])[~failed_rows])


# -- bench / demo / serve-sim -------------------------------------------------------------------


def test_bench_prints_table_and_writes_plot(tmp_path: Path) -> None:
    with Simulator(models=[ModelSpec(name=GEN, kind="generate", slots=2, tokens=4, token_ms=3)], seed=0) as bsim:
        plot = tmp_path / "bench.png"
        report = tmp_path / "bench.json"
        proc = cli("bench", "-m", GEN, "--host", bsim.url, "--levels", "1,2,4", "--requests", "8",
                   "--num-predict", "4", "--plot", str(plot), "--json", str(report))
    assert proc.returncode == 0, proc.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "concurrency" in proc.stdout and "tokens/s" in proc.stdout
    assert "saturat" in proc.stdout
    data = json.loads(report.read_text())
    assert [level["concurrency"] for level in data["levels"]] == [1, 2, 4]
    assert all(level["errors"] == 0 and level["requests"] == 8 for level in data["levels"])


def test_find_saturation_rule() -> None:
    def level(c: int, tps: float, latency: float = 0.0, queued: float = 0.0) -> Level:
        return Level(concurrency=c, requests=10, wall=1.0, tokens=int(tps), latencies=[latency] if latency else [],
                     queue_waits=[queued] if latency else [])

    # Throughput alone (no latency data).
    assert find_saturation([level(1, 100), level(2, 195), level(4, 390), level(8, 400), level(16, 401)], 0.1) == 4
    assert find_saturation([level(1, 100), level(2, 200), level(4, 400)], 0.1) is None
    # A flat step where latency did not grow (noise) is passed over for one where requests queue.
    noisy = [level(1, 100, 1.0), level(2, 105, 1.0), level(4, 400, 1.0), level(8, 410, 2.0, 1.0)]
    assert find_saturation(noisy, 0.1) == 4


def test_demo_runs_against_builtin_simulator() -> None:
    proc = cli("demo", "--generates", "60", "--embeds", "600", "-q", timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "built-in simulator" in out
    assert "1) batch generate: 60 prompts" in out and "60 responses" in out
    assert "2) streamed generate" in out
    assert "600 vectors of 768 dimensions" in out


def test_demo_with_host_names_missing_model(sim: Simulator) -> None:
    proc = cli("demo", "--host", sim.url, "--model", "qwen3:0.6b")
    assert proc.returncode == 4
    assert "ollama pull qwen3:0.6b" in proc.stderr


@contextmanager
def serve_sim(*args: str) -> Iterator[str]:
    """Run ``ollama-async serve-sim ARGS`` as a process; yield its URL; stop it with Ctrl-C (exit 0)."""
    proc = subprocess.Popen([sys.executable, "-m", "ollama_async.cli", "serve-sim", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line
        yield url.group(0)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_serve_sim_passes_through() -> None:
    with serve_sim("--model", "tiny:kind=generate,tokens=3") as url:
        reply = httpx.post(f"{url}/api/generate", json={"model": "tiny", "prompt": "x", "stream": False})
    assert reply.json()["eval_count"] == 3


# -- bad input ----------------------------------------------------------------------------------


def test_bad_inputs_fail_cleanly(sim: Simulator, tmp_path: Path) -> None:
    good = tmp_path / "in.txt"
    good.write_text("a\nb\n")
    out = "OUT.npy"  # made unique per case below: the cases run at once
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"text": "ok"}\n{"text": \n')
    no_field = tmp_path / "nofield.jsonl"
    no_field.write_text('{"text": "ok"}\n\n{"body": "x"}\n')
    a_file = tmp_path / "file"
    a_file.write_text("")
    cases = [
        (["embed", str(tmp_path / "missing.txt"), "-m", EMB, "-o", out], 2, "input file not found"),
        (["embed", str(bad_json), "-m", EMB, "-o", out], 2, "bad.jsonl:2: invalid JSON"),
        (["embed", str(no_field), "-m", EMB, "-o", out], 2, "nofield.jsonl:3: missing field 'text'"),
        (["embed", str(good), "-m", EMB, "-o", out, "--host", "127.0.0.1:9"], 3, "cannot reach an Ollama server"),
        (["embed", str(good), "-m", "nope", "-o", out], 4, "run `ollama pull nope`"),
        (["embed", str(good), "-m", GEN, "-o", out], 4, "cannot embed"),
        (["embed", str(good), "-m", EMB, "-o", str(a_file / "o.npy")], 2, "cannot write"),
        (["embed", str(good), "-m", EMB, "-o", str(tmp_path / "nodir" / "o.npy")], 2, "does not exist"),
        (["embed", str(good), "-m", EMB, "-o", str(tmp_path / "o.csv")], 2, "must end with .npy, .parquet or .jsonl"),
        (["generate", str(good), "-m", GEN, "-o", str(tmp_path / "g.jsonl"), "--options", "{bad"], 2,
         "--options: invalid JSON"),
        (["generate", str(good), "-m", GEN, "-o", str(tmp_path / "g.jsonl"), "--format", "nofile.json"], 2,
         "--format"),
        (["generate", str(good), "-m", GEN, "-o", str(tmp_path / "g.npy")], 2, "must end with .jsonl"),
        (["embed", str(tmp_path / "empty.txt"), "-m", EMB, "-o", out], 2, "input file not found"),
        (["embed", str(good), "-m", EMB, "-o", out, "--concurrency", "0"], 2, "--concurrency"),
        (["embed", str(good), "-o", out], 2, "--model"),
    ]

    outs = [str(tmp_path / f"o{i}.npy") for i in range(len(cases))]
    argvs = [[outs[i] if a == out else a for a in args] for i, (args, _, _) in enumerate(cases)]

    def run_case(args: list[str]) -> subprocess.CompletedProcess[str]:
        return cli(*args, *([] if "--host" in args else ["--host", sim.url]))

    with ThreadPoolExecutor(max_workers=4) as pool:  # independent processes: run a few at once
        procs = list(pool.map(run_case, argvs))
    for (_, code, message), args, proc, path in zip(cases, argvs, procs, outs, strict=True):
        assert proc.returncode == code, (args, proc.returncode, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert not Path(f"{path}.ckpt").exists(), args  # nothing done, nothing left behind


def test_empty_input_and_stdin_errors(sim: Simulator, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    proc = cli("embed", str(empty), "-m", EMB, "-o", str(tmp_path / "o.npy"), "--host", sim.url)
    assert proc.returncode == 2
    assert "has no items" in proc.stderr
    proc = cli("embed", "-", "-m", EMB, "-o", str(tmp_path / "o.npy"), "--host", sim.url, "--field", "text",
               stdin='{"text": "a"}\n["not an object"]\n')
    assert proc.returncode == 2
    assert "<stdin>:2: expected a JSON object" in proc.stderr
