"""The ``ollama-async`` command line: bulk embed, batch generate/chat with resume, bench, demo.

``main(argv)`` is the console script's entry point (``ollama-async = "ollama_async.cli:main"``);
``python -m ollama_async.cli`` runs the same. See ``docs/cli.md`` for the commands, the resume
semantics and the exit codes.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run ``ollama-async`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    from ._main import main as _main

    return _main(argv)
