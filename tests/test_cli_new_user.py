"""What a new user hit when trying the command line, each case as a subprocess run.

Bad flag values are refused at argument parsing (exit 2, one ``error:`` line, nothing written);
``serve-sim`` reports errors like the rest of the CLI; an output never overwrites its input; the
bench checks its output paths before measuring and keeps what it measured on Ctrl-C; an https
host that speaks plain HTTP is named as such, quickly.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ollama_async._limits import LimitStats
from ollama_async.cli._demo import describe_limiter
from ollama_async.testing import Fault, ModelSpec, Simulator

from .test_cli import EMB, GEN, clean_env, cli, read_jsonl, serve_sim


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(models=[ModelSpec(name=GEN, slots=2, tokens=4), ModelSpec(name=EMB, kind="embed", dim=8)]) as s:
        yield s


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if "error:" in line]


@pytest.mark.parametrize(("command", "value"), [("embed", "forever"), ("generate", "abc"), ("chat", "5 minutes"),
                                                ("embed", "inf")])
def test_bad_keep_alive_is_refused_at_parsing(sim: Simulator, tmp_path: Path, command: str, value: str) -> None:
    src = tmp_path / "in.txt"
    src.write_text("a\nb\n")
    out = tmp_path / ("o.npy" if command == "embed" else "o.jsonl")
    proc = cli(command, str(src), "-m", EMB if command == "embed" else GEN, "-o", str(out), "--host", sim.url,
               "--keep-alive", value)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.splitlines()  # one line: no usage block before it
    assert line.startswith(f"ollama-async {command}: error: argument --keep-alive:"), line
    assert line.endswith(f"(see ollama-async {command} --help)"), line
    assert "not a duration" in line or "must be finite" in line, line
    assert not out.exists() and not Path(f"{out}.ckpt").exists()


def test_good_keep_alive_values_run(sim: Simulator, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("a\n")
    for value in ("5m", "-1", "300", "0"):
        out = tmp_path / f"o{value}.jsonl"
        proc = cli("generate", str(src), "-m", GEN, "-o", str(out), "--host", sim.url, "--keep-alive", value, "-q")
        assert proc.returncode == 0, (value, proc.stderr)


@pytest.mark.parametrize(("args", "message"), [
    (["--port", "99999"], "argument --port: must be a port between 0 and 65535"),
    (["--port", "-5"], "argument --port: must be a port between 0 and 65535"),
    (["--max-queue", "-1"], "argument --max-queue: must be an integer >= 0"),
    (["--fault-rate", "2"], "argument --fault-rate: must be a probability between 0 and 1"),
    (["--model", "m:slots=abc"], "ollama-async: error: --model: model option slots='abc': expected an integer"),
])
def test_serve_sim_errors_look_like_the_cli(args: list[str], message: str) -> None:
    proc = cli("serve-sim", *args, timeout=30)
    assert proc.returncode == 2, proc.stderr
    [line] = error_lines(proc)
    assert message in line, line
    assert line.startswith("ollama-async"), line


def test_serve_sim_help_has_its_own_name() -> None:
    proc = cli("serve-sim", "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: ollama-async serve-sim")


def test_serve_sim_defaults_report_plausible_tokens_per_second() -> None:
    with serve_sim() as url:
        reply = httpx.post(f"{url}/api/generate", json={"model": "llama3.2", "prompt": "x", "stream": False,
                                                         "options": {"num_predict": 4}}, timeout=30).json()
    tokens_per_second = reply["eval_count"] / reply["eval_duration"] * 1e9
    assert 10 < tokens_per_second < 1000, tokens_per_second  # 10 ms per token: about 100


def test_output_that_is_the_input_is_refused(sim: Simulator, tmp_path: Path) -> None:
    src = tmp_path / "good.jsonl"
    src.write_text('{"text": "a"}\n{"text": "b"}\n')
    before = src.read_bytes()
    proc = cli("embed", str(src), "-m", EMB, "-o", str(src), "--host", sim.url)
    assert proc.returncode == 2
    assert "refusing to write the output" in proc.stderr and "it is the input" in proc.stderr
    # the input under the name of the output's checkpoint or errors file is refused too
    for suffix, what in ((".ckpt", "the checkpoint"), (".errors.jsonl", "the errors file")):
        out = tmp_path / "v.jsonl"
        renamed = tmp_path / f"v.jsonl{suffix}"
        renamed.write_bytes(before)
        proc = cli("embed", str(renamed), "-m", EMB, "-o", str(out), "--host", sim.url, "--input-format", "jsonl")
        assert proc.returncode == 2, proc.stderr
        assert f"refusing to write {what}" in proc.stderr, proc.stderr
        assert renamed.read_bytes() == before
    assert src.read_bytes() == before


def test_out_under_a_file_says_it_is_a_file(sim: Simulator, tmp_path: Path) -> None:
    src = tmp_path / "prompts.txt"
    src.write_text("a\n")
    proc = cli("embed", str(src), "-m", EMB, "-o", str(src / "x.npy"), "--host", sim.url)
    assert proc.returncode == 2
    assert f"{src} is a file, not a directory" in proc.stderr


def test_small_wording_fixes(sim: Simulator, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("a\n")
    proc = cli("generate", str(src), "-m", GEN, "-o", str(tmp_path / "g.jsonl"), "--format", "{bad")
    assert proc.returncode == 2
    assert "--format: the inline schema is not valid JSON" in proc.stderr
    # a generate run with a failed item keeps its checkpoint; chat on the same OUT is refused
    out = tmp_path / "r.jsonl"
    sim.inject(Fault.status(400, "bad"), times=1, path="/api/generate")
    proc = cli("generate", str(src), "-m", GEN, "-o", str(out), "--host", sim.url, "-q")
    assert proc.returncode == 1, proc.stderr
    proc = cli("chat", str(src), "-m", GEN, "-o", str(out), "--host", sim.url, "-q")
    assert proc.returncode == 2
    assert "it was made by `ollama-async generate`, this is `ollama-async chat`" in proc.stderr


def test_unknown_option_names_are_warned_about(sim: Simulator, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("a\n")
    out = tmp_path / "g.jsonl"
    proc = cli("generate", str(src), "-m", GEN, "-o", str(out), "--host", sim.url, "-q",
               "--options", "temprature=0", "--options", '{"num_predict": 2}')
    assert proc.returncode == 0, proc.stderr
    assert "unknown option 'temprature'" in proc.stderr and "did you mean 'temperature'?" in proc.stderr
    assert "num_predict" not in proc.stderr


def test_jsonl_metrics_use_the_python_names(sim: Simulator, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("a\n")
    out = tmp_path / "g.jsonl"
    assert cli("generate", str(src), "-m", GEN, "-o", str(out), "--host", sim.url, "-q").returncode == 0
    [record] = read_jsonl(out)
    assert "tokens_per_second" in record and "tokens_per_s" not in record


def test_bench_checks_output_paths_before_running(tmp_path: Path) -> None:
    # No server at all: the path check must come first, or this would fail with exit 3.
    for flag in ("--json", "--plot"):
        proc = cli("bench", "-m", GEN, "--host", "127.0.0.1:9", flag, str(tmp_path / "missing" / "x.json"))
        assert proc.returncode == 2, proc.stderr
        assert "does not exist" in proc.stderr


def test_bench_ctrl_c_prints_the_levels_measured(tmp_path: Path) -> None:
    with Simulator(models=[ModelSpec(name=GEN, slots=1, tokens=4, token_ms=5)]) as bsim:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ollama_async.cli", "bench", "-m", GEN, "--host", bsim.url, "--levels",
             "1,2,64", "--requests", "8", "--plot", ""],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
        )
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "concurrency   2:" in line:  # two levels done; the third (64 x 8 requests, 1 slot) is slow
                proc.send_signal(signal.SIGINT)
                break
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, "".join(seen) + err
    assert "interrupted: the 2 levels measured so far" in err
    rows = [line.split() for line in out.splitlines()]
    assert rows[0][0] == "concurrency" and [r[0] for r in rows[1:]] == ["1", "2"]


def test_https_against_plain_http_names_the_tls_failure(sim: Simulator, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("a\n")
    https = sim.url.replace("http://", "https://")
    proc = cli("embed", str(src), "-m", EMB, "-o", str(tmp_path / "o.npy"), "--host", https, timeout=30)
    assert proc.returncode == 3
    assert f"the TLS handshake with {https} failed: the server there speaks plain HTTP" in proc.stderr
    assert f"--host {sim.url}" in proc.stderr


def test_invalid_host_is_called_invalid(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("a\n")
    proc = cli("embed", str(src), "-m", EMB, "-o", str(tmp_path / "o.npy"), "--host", "not a url")
    assert proc.returncode == 2
    [line] = error_lines(proc)
    assert "invalid host 'not a url'" in line
    env = {**clean_env(), "OLLAMA_HOST": "not a url"}
    proc = subprocess.run([sys.executable, "-m", "ollama_async.cli", "embed", str(src), "-m", EMB, "-o",
                           str(tmp_path / "o.npy")], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "invalid host 'not a url'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_explains_an_adaptive_peak_above_the_limit() -> None:
    proc = cli("demo", "--generates", "120", "--embeds", "10", "-q")
    assert proc.returncode == 0, proc.stderr
    limiter = next(line for line in proc.stdout.splitlines() if "client limiter: adaptive" in line)
    found = re.search(r"limit (\d+), peak (\d+)", limiter)
    assert found, limiter
    limit, peak = int(found.group(1)), int(found.group(2))
    if peak > limit:
        assert f"up to {peak} in flight" in proc.stdout and f"settled on {limit}" in proc.stdout
    else:  # no probe above the limit this time: nothing to explain
        assert "settled on" not in proc.stdout


def test_limiter_line_explains_a_peak_above_the_limit() -> None:
    probed = describe_limiter(LimitStats(limit=4, mode="adaptive", max_in_flight=8))
    assert "limit 4, peak 8 in flight" in probed
    assert "up to 8 in flight" in probed and "settled on 4" in probed
    for plain in (LimitStats(limit=4, mode="adaptive", max_in_flight=4), LimitStats(limit=1, mode="embed-only",
                                                                                    max_in_flight=1)):
        assert "settled" not in describe_limiter(plain)


@pytest.mark.parametrize("command", ["embed", "generate"])
def test_badly_typed_options_are_refused_before_any_item(sim: Simulator, tmp_path: Path, command: str) -> None:
    src = tmp_path / "in.txt"
    src.write_text("a\nb\n")
    out = tmp_path / ("o.npy" if command == "embed" else "o.jsonl")
    for option, message in (("temperature=hot", "--options.temperature: must be a finite number, not 'hot'"),
                            ('{"stop": 5}', "--options.stop: must be a list of strings")):
        proc = cli(command, str(src), "-m", EMB if command == "embed" else GEN, "-o", str(out), "--host", sim.url,
                   "--options", option)
        assert proc.returncode == 2, proc.stderr  # was: exit 70 (embed) or every item failed (generate)
        [line] = error_lines(proc)
        assert message in line, line
        assert not Path(f"{out}.ckpt").exists()
