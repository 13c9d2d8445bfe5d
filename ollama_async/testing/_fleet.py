"""Several simulators at once, for multi-host clients: :class:`Fleet`.

Each member is a full :class:`~ollama_async.testing.Simulator` with its own models, slots and
speed, on its own port. A test can stop one (connections drop, new ones are refused, as when a
server dies), restart it on the same port (cold: no model loaded, empty prompt caches) and slow
it down. Example::

    from ollama_async.testing import Fleet, ModelSpec

    with Fleet([[ModelSpec("llama3.2", slots=1, token_ms=4)],
                [ModelSpec("llama3.2", slots=8, token_ms=2)]]) as fleet:
        client = AsyncClient(host=fleet.urls)
        fleet.stop(0); fleet.restart(0); fleet.slow_down(1, 3.0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

import anyio.to_thread

from ._models import ModelSpec
from ._server import Simulator

__all__ = ["Fleet"]

_LATENCIES = ("load_ms", "prompt_ms", "prompt_token_ms", "token_ms", "embed_ms")


class Fleet:
    """Simulators on ports of their own: one per entry of ``hosts`` (each a list of specs).

    ``hosts`` may also be an int: that many simulators with the default models. Keyword
    arguments go to every :class:`Simulator`. Use as a (sync or async) context manager.
    """

    def __init__(self, hosts: Iterable[Iterable[ModelSpec] | None] | int, **simulator_kwargs: Any) -> None:
        specs: list[list[ModelSpec] | None] = (
            [None] * hosts if isinstance(hosts, int) else [None if h is None else list(h) for h in hosts]
        )
        if not specs:
            raise ValueError("a Fleet needs at least one host")
        addr = simulator_kwargs.pop("host", "127.0.0.1")
        # Each member binds port 0 on its first start (a port picked here and bound later can be
        # taken in between, by any socket's ephemeral port: "address already in use"); a
        # Simulator keeps that port, so that a restart comes back where clients look for it.
        self.simulators = [Simulator(s, host=addr, port=0, **simulator_kwargs) for s in specs]
        self._specs = [list(s) if s is not None else None for s in specs]

    @property
    def urls(self) -> list[str]:
        return [sim.url for sim in self.simulators]

    def __len__(self) -> int:
        return len(self.simulators)

    def __getitem__(self, index: int) -> Simulator:
        return self.simulators[index]

    # -- one member ---------------------------------------------------------------------------

    def stop(self, index: int) -> None:
        """Stop member ``index`` (open connections drop; new ones are refused)."""
        self.simulators[index].stop()

    def restart(self, index: int) -> None:
        """Start member ``index`` again on its port, cold."""
        sim = self.simulators[index]
        if not sim.running:
            sim.start()

    def slow_down(self, index: int, factor: float) -> None:
        """Multiply every latency of member ``index``'s models by ``factor`` (> 1: slower).

        The models are replaced (as ``Simulator.add_model`` does), so they load again.
        """
        if not factor > 0:
            raise ValueError("factor must be > 0")
        sim = self.simulators[index]
        for entry in list(sim._app.models.values()):
            spec = entry.spec
            sim.add_model(dataclasses.replace(spec, **{f: getattr(spec, f) * factor for f in _LATENCIES}))

    # -- all ----------------------------------------------------------------------------------

    def start(self) -> None:
        for sim in self.simulators:
            if not sim.running:
                sim.start()

    def close(self) -> None:
        for sim in self.simulators:
            sim.stop()

    def running(self) -> Sequence[bool]:
        return [sim.running for sim in self.simulators]

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> Fleet:
        await anyio.to_thread.run_sync(self.start)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await anyio.to_thread.run_sync(self.close)
