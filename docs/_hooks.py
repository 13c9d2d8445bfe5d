"""mkdocs hook: publish the benchmark plots from ``benchmarks/results/`` without copying them into docs/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent


def on_files(files: Files, config: Any) -> Files:
    for png in sorted((ROOT / "benchmarks" / "results").glob("*.png")):
        files.append(File(f"benchmarks/results/{png.name}", str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files
