"""The README's set-up commands are the ones CI runs, and the examples it points to work."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    test_command = next(b for b in _bash_blocks(readme) if "pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()


def test_readme_main_job_is_the_demo() -> None:
    readme = (ROOT / "README.md").read_text()
    assert any("ollama-async demo" in b and "pip install" in b for b in _bash_blocks(readme))


EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_against_the_simulator(name: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)], cwd=ROOT / "examples", env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip(), "an example prints what it did"
    assert "Traceback" not in proc.stderr
