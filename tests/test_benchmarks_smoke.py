"""``benchmarks/run.py --quick`` runs end to end and writes well-formed results (no timing checks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_of_one_scenario_writes_json_and_markdown(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--quick", "--only", "generate", "--concurrency", "4",
         "--seconds", "0.2", "--out", str(tmp_path), "--no-plots"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "latest.json").read_text())
    assert {"command", "mode", "config", "machine", "results", "ratios", "targets"} <= set(doc)
    assert doc["mode"] == "quick"
    assert {"cpu", "cores", "python", "packages"} <= set(doc["machine"])
    cell = doc["results"]["generate"]["c4"]
    assert {"ollama_async", "ollama", "httpx", "aiohttp", "ollama_async[httpx]"} <= set(cell)
    for entry in cell.values():
        assert entry["rate"] > 0 and entry["cpu_us_per_item"] > 0 and entry["rounds"]
    assert set(doc["ratios"]["generate_c4"]) == {"vs_official", "vs_aiohttp", "cpu_vs_official", "cpu_vs_aiohttp"}
    assert {t["target"] for t in doc["targets"]} >= {"non-stream generate c4: x official"}
    assert "Non-streamed generate" in (tmp_path / "latest.md").read_text()
