"""Bulk work: a batch of generates with progress, then a bulk embed into one numpy matrix.

Runs as it is: ``python examples/batch_jobs.py``. Without numpy the vectors come back as lists.

Inputs are read lazily (a generator here), results come back per item: one failure never loses
the others. The client bounds requests in flight per model like the server's slots.
"""

from __future__ import annotations

import anyio
from _common import EMBED_MODEL, GENERATE_MODEL, server

from ollama_async import AsyncClient
from ollama_async.batch import Progress


def report(progress: Progress) -> None:
    if progress.done % 50 == 0:
        print(f"  {progress.done} done, {progress.failed} failed, {progress.rate:.0f}/s")


async def main(host: str) -> None:
    async with AsyncClient(host) as client:
        prompts = (f"Write a haiku about the number {i}" for i in range(200))
        results = await client.batch.generate(GENERATE_MODEL, prompts, options={"num_predict": 16}, progress=report)
        failed = [r for r in results if isinstance(r, Exception)]
        print(f"generate: {len(results) - len(failed)} answers, {len(failed)} failures")
        print("  first:", results[0].response)  # type: ignore[union-attr]

        texts = (f"document number {i}" for i in range(5_000))
        embedded = await client.batch.embed(EMBED_MODEL, texts, batch_size=128)
        vectors = embedded.vectors  # a float32 numpy matrix with numpy installed, else a list of lists
        if hasattr(vectors, "shape"):
            print(f"embed: matrix {vectors.shape} {vectors.dtype}, {len(embedded.errors)} errors")
        else:
            print(f"embed: {len(vectors)} vectors as lists (pip install 'ollama-async[numpy]' for a matrix), "
                  f"{len(embedded.errors)} errors")

        # as completed, with the input index: the flat-memory way for millions of items
        seen = 0
        async for item in client.batch.embed(EMBED_MODEL, (f"t{i}" for i in range(1_000)), batch_size=100):
            seen += item.ok
        print(f"iterated: {seen} vectors")

        for model, stats in client.limits.stats().items():
            print(f"limiter {model}: mode {stats.mode}, limit {stats.limit}, peak {stats.max_in_flight} in flight")


if __name__ == "__main__":
    with server() as url:
        anyio.run(main, url)
