"""Resume: a job killed (SIGKILL), interrupted (Ctrl-C) or refused ends with the right output.

The embed runs here are slow on purpose (the simulator spends ``embed_ms`` per text on its one
embed slot), so that the kills land in the middle of the run. Kill points are random (seeded
per test run and printed on failure); each kill waits until the checkpoint has grown since the
previous one, so every round makes progress. The final output must be byte-identical to an
uninterrupted run's: nothing missing, nothing duplicated, input order kept.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollama_async.testing import ModelSpec, Simulator

EMB = "nomic-embed-text"
GEN = "llama3.2"
N_ITEMS = 2500


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(
        models=[
            ModelSpec(name=EMB, kind="embed", dim=32, embed_ms=1.0),
            ModelSpec(name="other-embed", kind="embed", dim=32),
            ModelSpec(name=GEN, kind="generate", slots=4, tokens=6, token_ms=2),
        ],
        seed=0,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "texts.txt"
    path.write_text("".join(f"text {i}: {'lorem ipsum ' * (i % 5)}\n" for i in range(N_ITEMS)))
    return path


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    e["PYTHONUNBUFFERED"] = "1"
    return e


def embed_args(sim: Simulator, src: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ollama_async.cli", "embed", str(src), "-m", EMB, "-o", str(out),
            "--host", sim.url, "--batch-size", "25", "--concurrency", "2", "-q", "--log-interval", "0", *extra]


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env())
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture(scope="module")
def reference(sim: Simulator, texts: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The .npy of an uninterrupted run."""
    out = tmp_path_factory.mktemp("ref") / "ref.npy"
    proc = run(embed_args(sim, texts, out))
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes()


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def start_and_wait_for_progress(args: list[str], ckpt: Path, floor: int) -> subprocess.Popen[str]:
    """Start the CLI and return once its checkpoint holds records past ``floor`` bytes."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    deadline = time.monotonic() + 30
    while size(ckpt) <= floor + 2048 and proc.poll() is None:
        assert time.monotonic() < deadline, "the checkpoint never grew"
        time.sleep(0.01)
    return proc


def test_sigkill_at_random_points_then_resume_is_byte_identical(
    sim: Simulator, texts: Path, reference: bytes, tmp_path: Path
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    out = tmp_path / "vectors.npy"
    ckpt = Path(f"{out}.ckpt")
    args = embed_args(sim, texts, out)
    kills = 0
    for _ in range(4):
        proc = start_and_wait_for_progress(args, ckpt, size(ckpt))
        time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is None:
            proc.kill()  # SIGKILL: no cleanup, no final flush
            kills += 1
        proc.communicate(timeout=30)
        assert not out.exists() or proc.returncode == 0, f"seed {seed}"
    assert kills >= 2, f"seed {seed}: the run finished before it could be killed"
    final = run(args)
    assert final.returncode == 0, final.stderr
    assert "resuming from" in final.stderr
    assert out.read_bytes() == reference, f"seed {seed}"
    assert not ckpt.exists()


def test_ctrl_c_exits_cleanly_and_resumes(sim: Simulator, texts: Path, reference: bytes, tmp_path: Path) -> None:
    out = tmp_path / "vectors.npy"
    ckpt = Path(f"{out}.ckpt")
    args = embed_args(sim, texts, out)
    proc = start_and_wait_for_progress(args, ckpt, 0)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stderr and "run the same command again to resume" in stderr
    assert ckpt.exists() and not out.exists()

    final = run(args)
    assert final.returncode == 0, final.stderr
    assert "resuming from" in final.stderr
    assert out.read_bytes() == reference


def test_changed_input_or_settings_are_refused_until_restart(
    sim: Simulator, texts: Path, tmp_path: Path
) -> None:
    src = tmp_path / "texts.txt"
    src.write_bytes(texts.read_bytes())
    out = tmp_path / "vectors.jsonl"
    ckpt = Path(f"{out}.ckpt")
    args = embed_args(sim, src, out)
    proc = start_and_wait_for_progress(args, ckpt, 0)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143
    saved = ckpt.read_bytes()

    other_model = run([*args[:6], "other-embed", *args[7:]])
    assert other_model.returncode == 2
    assert "refusing to resume" in other_model.stderr and "--model 'nomic-embed-text'" in other_model.stderr
    other_dims = run([*args, "--dimensions", "8"])
    assert other_dims.returncode == 2 and "dimensions was None, now 8" in other_dims.stderr

    with src.open("a") as f:
        f.write("one more line\n")
    changed = run(args)
    assert changed.returncode == 2
    assert "the input changed" in changed.stderr and "--restart" in changed.stderr
    assert ckpt.read_bytes() == saved  # a refusal touches nothing

    restarted = run([*args, "--restart", "--concurrency", "8", "--batch-size", "100"])
    assert restarted.returncode == 0, restarted.stderr
    assert "resuming" not in restarted.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == N_ITEMS + 1
    assert [json.loads(line)["id"] for line in lines] == list(range(1, N_ITEMS + 2))


def test_generate_resume_keeps_every_item_once_in_order(sim: Simulator, tmp_path: Path) -> None:
    src = tmp_path / "prompts.jsonl"
    src.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"tell me about {i}"}) + "\n" for i in range(400)))
    out = tmp_path / "answers.jsonl"
    ckpt = Path(f"{out}.ckpt")
    args = [sys.executable, "-m", "ollama_async.cli", "generate", str(src), "-m", GEN, "-o", str(out),
            "--host", sim.url, "--id-field", "id", "--concurrency", "4", "-q", "--log-interval", "0"]
    proc = start_and_wait_for_progress(args, ckpt, 0)
    proc.kill()
    proc.communicate(timeout=30)
    final = run(args)
    assert final.returncode == 0, final.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == [f"p{i}" for i in range(400)]
    # Same text as a fresh run (the simulator is deterministic); only timings may differ.
    fresh = tmp_path / "fresh.jsonl"
    assert run([*args[:8], str(fresh), *args[9:]]).returncode == 0
    fresh_lines = [json.loads(line) for line in fresh.read_text().splitlines()]
    assert [x["response"] for x in lines] == [x["response"] for x in fresh_lines]
