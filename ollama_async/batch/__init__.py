"""Batches over any number of inputs: ``client.batch.generate / chat / embed``.

::

    run = client.batch.generate("llama3.2", prompts)      # sends nothing yet
    results = await run                                    # input order; exceptions in place
    async for item in client.batch.embed("nomic-embed-text", texts):   # as completed, flat memory
        ...

See :class:`Batch` for the methods, :class:`BatchRun` for how a run is consumed.
"""

from ._batch import BUSY_REQUEUES, Batch, EmbedResults, EmbedRun
from ._run import BatchError, BatchItem, BatchRun, Progress

__all__ = ["BUSY_REQUEUES", "Batch", "BatchError", "BatchItem", "BatchRun", "EmbedResults", "EmbedRun", "Progress"]
