"""The documentation site builds with ``mkdocs build --strict``, offline, and its code runs.

Every fenced ``python`` block of ``docs/*.md`` and ``README.md`` is a complete program run against
the built-in simulator (``OLLAMA_HOST`` points at it); a ``python { .pytest }`` block is a test
module run by pytest. A block that cannot run here (it needs a real server or an external
package) says so with ``{ .no-run }`` in its info string and is the only kind left out.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ollama_async.testing import Simulator

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.M | re.S)


def blocks(kind: str) -> list[tuple[str, str]]:
    """``(where, code)`` for each Python block of ``kind``: ``run``, ``pytest`` or ``no-run``."""
    found = []
    for page in PAGES:
        for match in FENCE.finditer(page.read_text()):
            info, code = match.group(1).strip(), match.group(2)
            if not info.startswith("python"):
                continue
            block_kind = "no-run" if ".no-run" in info else "pytest" if ".pytest" in info else "run"
            if block_kind == kind:
                line = page.read_text()[: match.start()].count("\n") + 1
                found.append((f"{page.relative_to(ROOT)}:{line}", code))
    return found


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(seed=0) as server:  # llama3.2 and nomic-embed-text: the names the docs use
        yield server


def _env(sim: Simulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    env["OLLAMA_HOST"] = sim.url
    return env


def test_site_builds_strict_and_offline(tmp_path: Path) -> None:
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)], cwd=ROOT,
        capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for page in ("index.html", "getting-started/index.html", "cli/index.html", "reference/index.html"):
        assert (site / page).is_file(), page
    reference = (site / "reference" / "index.html").read_text()
    assert "create_blob" in reference and "Simulator" in reference  # from the docstrings
    for html in site.rglob("*.html"):  # nothing loaded from elsewhere when the site is read offline
        text = html.read_text()
        assert "fonts.googleapis.com" not in text and "fonts.gstatic.com" not in text, html
        assert not re.search(r'<script[^>]+src="https?://', text), html


def test_docs_have_runnable_blocks() -> None:
    runnable = blocks("run")
    assert len(runnable) >= 8, [w for w, _ in runnable]
    assert any("getting-started.md" in where for where, _ in runnable)  # the tour
    assert blocks("pytest")


def test_every_runnable_docs_block_runs_against_the_simulator(sim: Simulator, tmp_path: Path) -> None:
    def run(index: int, where: str, code: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        cwd = tmp_path / f"block{index}"
        cwd.mkdir()
        script = cwd / "block.py"
        script.write_text(code)
        return where, subprocess.run([sys.executable, str(script)], cwd=cwd, env=_env(sim), capture_output=True,
                                     text=True, timeout=120)

    with ThreadPoolExecutor(max_workers=3) as pool:
        done = list(pool.map(lambda args: run(*args), [(i, w, c) for i, (w, c) in enumerate(blocks("run"))]))
    failed = [f"{where}:\n{proc.stderr[-1500:]}" for where, proc in done if proc.returncode != 0]
    assert not failed, "\n\n".join(failed)


@pytest.mark.parametrize(("where", "code"), blocks("pytest"), ids=[w for w, _ in blocks("pytest")])
def test_pytest_blocks_pass(where: str, code: str, tmp_path: Path) -> None:
    (tmp_path / "test_block.py").write_text(code)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_block.py"], cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "PYTEST_"))},
    )
    assert proc.returncode == 0, where + "\n" + proc.stdout[-3000:]
    assert " passed" in proc.stdout
