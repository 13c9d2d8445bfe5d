"""The public :class:`Simulator`: an Ollama-compatible server on its own event loop thread.

The server always runs on a private asyncio loop in a daemon thread, so it works the same
whatever the caller runs (asyncio, trio, or plain synchronous code) and its CPU use never
competes with the caller's loop for scheduling. Methods that change server state are posted to
that loop; counters and the fault plan are lock-protected and read directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TypeVar

import anyio.to_thread

from ._faults import Fault
from ._handlers import App
from ._http import HttpServer
from ._models import ModelSpec, ModelStats, canonical_name, default_models
from ._registry import SIMULATED_VERSION

T = TypeVar("T")

DEFAULT_RANDOM_KINDS = ("status_500", "error_line", "eof", "reset")


async def serve(
    app: App,
    host: str,
    port: int,
    on_ready: Callable[[int], None],
    stop: asyncio.Event,
) -> None:
    """Serve ``app`` on ``host:port`` until ``stop`` is set; ``on_ready(port)`` once listening."""
    app.scheduler.bind_loop()
    server = HttpServer(app.handle, app.hash_body)
    bound = await server.start(host, port)
    try:
        on_ready(bound)
        await stop.wait()
    finally:
        await server.stop()
        app.scheduler.unload_all(app.models.values())


class Simulator:
    """An Ollama-compatible HTTP server for tests, examples and benchmarks.

    Use it as ``async with Simulator(...) as sim`` (asyncio or trio) or ``with Simulator(...)``
    from synchronous code; ``sim.url`` is then the base URL. Without ``models`` it serves a
    generate model ``llama3.2`` and an embed model ``nomic-embed-text``.

    ``max_queue`` is ``OLLAMA_MAX_QUEUE``; ``seed`` seeds generated text when a request has no
    ``options.seed``; ``keep_alive_s`` is the default ``keep_alive``; ``pullable`` limits which
    names ``/api/pull`` finds (names or specs; default: any name not starting with ``missing``).
    """

    def __init__(
        self,
        models: Iterable[ModelSpec] | None = None,
        *,
        max_queue: int = 512,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        keep_alive_s: float = 300.0,
        version: str = SIMULATED_VERSION,
        pullable: Iterable[str | ModelSpec] | None = None,
    ) -> None:
        if max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        specs = list(models) if models is not None else default_models()
        self.host = host
        self.port = port  # 0: any free port on the first start; the bound one from then on
        self._app = App(
            specs,
            max_queue=max_queue,
            seed=seed,
            keep_alive_s=keep_alive_s,
            version=version,
            pullable=pullable,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the bound port once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start serving in a daemon thread; returns once the port is bound.

        A restart binds the port of the first start, so clients find the server where it was."""
        if self.running:
            raise RuntimeError("simulator already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        def on_ready(port: int) -> None:
            self.port = port
            ready.set()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await serve(self._app, self.host, self.port, on_ready, self._stop)

        def run() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:
                failure.append(exc)
                ready.set()

        self._thread = threading.Thread(target=run, name="ollama-simulator", daemon=True)
        self._thread.start()
        ready.wait(30.0)
        if failure:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"simulator failed to start: {failure[0]!r}") from failure[0]
        if not ready.is_set():  # pragma: no cover - only on a wedged machine
            raise RuntimeError("simulator did not start within 30 s")

    def stop(self) -> None:
        """Stop serving (drops open connections) and wait for the thread to end."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(stop.set)
        thread.join(30.0)
        self._thread = None
        self._loop = None
        self._stop = None

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Simulator:
        await anyio.to_thread.run_sync(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await anyio.to_thread.run_sync(self.stop)

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop (or directly when the server is not running)."""
        loop = self._loop
        thread = self._thread
        if loop is None or thread is None or not thread.is_alive() or threading.current_thread() is thread:
            return fn()
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return fut.result(30.0)

    def remove_routes(self, *paths: str) -> None:
        """Answer ``404 page not found`` (plain text, as Go's router does) for these paths from
        now on, as a server that predates them does: e.g. ``"/v1/embeddings"`` for an Ollama
        older than its OpenAI-compatible layer."""
        for path in paths:
            self._app.routes.pop(path, None)

    # --- introspection ---------------------------------------------------------------------

    def stats(self, model: str) -> ModelStats:
        """A snapshot of ``model``'s counters (safe from any thread); ``KeyError`` if unknown."""
        entry = self._app.models.get(canonical_name(model))
        if entry is None:
            raise KeyError(f"unknown model {model!r}")
        return entry.stats.snapshot()

    def all_stats(self) -> dict[str, ModelStats]:
        """Snapshots for every model, by display name (``llama3.2:latest``)."""
        return {e.display: e.stats.snapshot() for e in list(self._app.models.values())}

    def reset_stats(self, model: str | None = None) -> None:
        """Zero the counters (of one model, or all); ``in_flight`` keeps its live value."""
        entries = list(self._app.models.values())
        if model is not None:
            key = canonical_name(model)
            entries = [e for e in entries if e.key == key]
        for entry in entries:
            entry.stats.reset()

    def models(self) -> list[str]:
        """Display names of the models the server lists."""
        return [e.display for e in list(self._app.models.values())]

    # --- faults ------------------------------------------------------------------------------

    def inject(self, fault: Fault, times: int = 1, model: str | None = None, path: str | None = None) -> None:
        """Apply ``fault`` to the next ``times`` requests matching ``model`` and/or ``path``.

        ``Fault.busy(count)`` applies to ``count`` requests per ``times``. Scripted faults are
        used in the order they were injected.
        """
        self._app.faults.inject(fault, times, canonical_name(model) if model else None, path)

    def random_faults(
        self,
        rate: float = 0.1,
        kinds: Iterable[str] = DEFAULT_RANDOM_KINDS,
        seed: int = 1,
        model: str | None = None,
    ) -> None:
        """Give each inference request a fault with probability ``rate`` (0 disables).

        ``kinds``: ``status_<code>`` (e.g. ``status_500``), ``busy``, ``error_line``, ``eof``,
        ``reset``, ``slow_first_byte``, ``malformed_line``, ``blank_lines``, ``long_line``.
        The draws come from ``random.Random(seed)``, so a run is reproducible.
        """
        self._app.faults.set_random(rate, kinds, seed, canonical_name(model) if model else None)

    def clear_faults(self) -> None:
        """Drop scripted faults and disable random ones."""
        self._app.faults.clear()

    # --- models ------------------------------------------------------------------------------

    def add_model(self, spec: ModelSpec) -> None:
        """Add (or replace) a model; counters of a replaced model are kept."""
        self._call(lambda: self._app.add_model(spec))

    def remove_model(self, name: str) -> None:
        """Remove a model (as ``DELETE /api/delete``); ``KeyError`` if unknown."""
        if not self._call(lambda: self._app.remove_model(name)):
            raise KeyError(f"unknown model {name!r}")
