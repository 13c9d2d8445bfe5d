"""An Ollama-compatible server for tests and benchmarks: ``Simulator``.

It speaks the real wire format (NDJSON streams, status codes, error texts, metrics in
nanoseconds), schedules like the real server (slots per model, a bounded load queue, one load at
a time, keep-alive), produces deterministic text and embeddings, and can be told to fail in the
ways a client must survive (:class:`Fault`). It depends only on the standard library and anyio
(numpy and orjson are used when installed) and imports nothing else from ``ollama_async``.

Example::

    from ollama_async.testing import Simulator, ModelSpec, Fault

    async with Simulator([ModelSpec("llama3.2", slots=4, token_ms=5)]) as sim:
        ...  # point a client at sim.url
        sim.inject(Fault.error_line(after=3))
        print(sim.stats("llama3.2"))
"""

from ._cli import main
from ._faults import Fault
from ._fleet import Fleet
from ._models import ModelSpec, ModelStats
from ._server import Simulator

__all__ = ["Fault", "Fleet", "ModelSpec", "ModelStats", "Simulator", "main"]
