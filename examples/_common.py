"""Shared by the examples: a server to talk to.

With ``OLLAMA_HOST`` set, the examples use that server (and ``OLLAMA_MODEL`` /
``OLLAMA_EMBED_MODEL`` for the model names). Without it they start the built-in simulator, so
every example runs on a machine with no Ollama at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from ollama_async.testing import ModelSpec, Simulator

GENERATE_MODEL = os.environ.get("OLLAMA_MODEL", "llama3.2")
EMBED_MODEL = os.environ.get("OLLAMA_EMBED_MODEL", "nomic-embed-text")


@contextmanager
def server() -> Iterator[str]:
    """Yield the base URL of a server: ``OLLAMA_HOST`` if set, else a simulator on a free port."""
    host = os.environ.get("OLLAMA_HOST")
    if host:
        yield host
        return
    models = [
        ModelSpec(name=GENERATE_MODEL, kind="generate", slots=4, tokens=12, token_ms=2),
        ModelSpec(name=EMBED_MODEL, kind="embed", dim=768),
    ]
    with Simulator(models=models, seed=0) as sim:
        yield sim.url
