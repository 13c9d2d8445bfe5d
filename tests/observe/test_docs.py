"""The Python blocks of docs/observability.md and of the README's observability section run as
they are, against the simulator (``OLLAMA_HOST`` pointing at it), in one fresh interpreter."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from ollama_async.testing import ModelSpec, Simulator

ROOT = Path(__file__).resolve().parents[2]

RUNNER = """
import json, sys
blocks = json.loads(sys.stdin.read())
for i, code in enumerate(blocks):
    exec(compile(code, f"<block {i}>", "exec"), {"__name__": "__main__"})
    print(f"block {i} ok", flush=True)
"""


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def readme_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Observability")
    return readme[start : readme.index("\n## ", start + 3)]


def test_observability_code_blocks_run() -> None:
    blocks = python_blocks((ROOT / "docs" / "observability.md").read_text()) + python_blocks(readme_section())
    assert len(blocks) >= 6
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA")}
    with Simulator([ModelSpec("llama3.2", tokens=8, slots=4)]) as sim:
        env["OLLAMA_HOST"] = sim.url
        done = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(blocks), env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [line for line in done.stdout.splitlines() if line.startswith("block ")] == [
        f"block {i} ok" for i in range(len(blocks))
    ]
    assert "chat llama3.2 {'gen_ai.operation.name': 'chat'" in done.stdout
    assert "generate llama3.2: " in done.stdout
