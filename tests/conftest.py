"""Shared test configuration.

Async tests use anyio's pytest plugin (``@pytest.mark.anyio``); ``anyio_backend`` is asyncio
unless a module parametrises it (client loopback tests also run under trio).
"""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


from collections.abc import Iterator  # noqa: E402

from ollama_async.testing import ModelSpec, Simulator  # noqa: E402

GEN = "llama3.2"
EMB = "nomic-embed-text"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A simulator on a free loopback port: a 4-slot generate model and an embed model."""
    with Simulator(
        models=[
            ModelSpec(name=GEN, kind="generate", slots=4, tokens=6),
            ModelSpec(name=EMB, kind="embed", dim=32),
        ],
        seed=0,
    ) as server:
        yield server


@pytest.fixture(params=["fast", "httpx"])
def transport_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on the fast path and on the httpx path (``OLLAMA_ASYNC_TRANSPORT=httpx``)."""
    if request.param == "httpx":
        monkeypatch.setenv("OLLAMA_ASYNC_TRANSPORT", "httpx")
    else:
        monkeypatch.delenv("OLLAMA_ASYNC_TRANSPORT", raising=False)
    return str(request.param)


def active_connections(client: object) -> int:
    """Connections of the client's pools (httpx's and the asyncio fast path's) busy right now."""
    return int(client._transport.active_connections())  # type: ignore[attr-defined]
