"""``OllamaAsyncEmbeddings``: LangChain embeddings through this library's batch engine.

``aembed_documents`` is ``client.batch.embed``: texts go ``batch_size`` per ``/api/embed``
request, as many requests at once as the client's per-model limiter admits (an embedding model
has one server slot, so by default one, with the next request ready), and a request the server
rejects (400/413: a text too long with ``truncate=False``, ...) is split in halves until the bad
texts are found. The other texts still get their vectors; the call then raises
:class:`~ollama_async.batch.BatchError` whose ``errors`` maps each bad text's index to its
error and whose ``results.vectors`` holds every vector (rows of bad texts are NaN), so nothing
computed is lost and nothing fails silently.
"""

from __future__ import annotations

from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import Field

from .._errors import RequestError
from ..batch import BatchError
from ._options import ClientSettings

__all__ = ["OllamaAsyncEmbeddings"]


def _rows(vectors: Any) -> list[list[float]]:
    """Vectors as lists of Python floats (a numpy matrix converts in one call)."""
    tolist = getattr(vectors, "tolist", None)
    if tolist is not None:
        rows: list[list[float]] = tolist()
        return rows
    return [list(v) for v in vectors]


class OllamaAsyncEmbeddings(ClientSettings, Embeddings):
    """LangChain ``Embeddings`` for an Ollama server, on :class:`ollama_async.AsyncClient`.

    Pass ``client=`` to share one client with chat models and the rest of the application. The
    sync methods run on the client's loop thread, as the chat model's do.

    Example::

        from ollama_async.langchain import OllamaAsyncEmbeddings

        emb = OllamaAsyncEmbeddings(model="nomic-embed-text")
        vectors = await emb.aembed_documents(["a", "b", "c"])
    """

    model: str
    """The embedding model (``nomic-embed-text``, ``embeddinggemma``, ...)."""
    batch_size: int = Field(default=64, ge=1, strict=True)
    """Texts per ``/api/embed`` request."""
    dimensions: int | None = None
    """Keep the first N dimensions (re-normalised by the server), for models that allow it."""
    truncate: bool | None = None
    """``False``: a text longer than the context is an error (isolated by the batch engine)."""
    keep_alive: float | str | None = None
    options: dict[str, Any] | None = None

    def _check(self, texts: list[str]) -> list[str]:
        if isinstance(texts, str):
            raise RequestError("must be a list of strings, not one string (use embed_query)", field="texts")
        return texts

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order; raises ``BatchError`` naming bad texts (see the module)."""
        texts = self._check(texts)
        if not texts:
            return []
        client = self.clients.current()
        run = client.batch.embed(
            self.model, texts, batch_size=self.batch_size, dimensions=self.dimensions, truncate=self.truncate,
            keep_alive=self.keep_alive, options=self.options, return_exceptions=False,
        )
        return _rows((await run).vectors)

    async def aembed_query(self, text: str) -> list[float]:
        """The vector of one text: one request, decoded as documents' are (so equal texts give
        equal vectors); its failure is raised as itself."""
        if not isinstance(text, str):
            raise RequestError(f"must be a string, not {type(text).__name__}", field="text")
        try:
            return (await self.aembed_documents([text]))[0]
        except BatchError as exc:
            raise exc.errors[0] from None

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Sync :meth:`aembed_documents` (runs on the client's loop thread)."""
        return self.clients.run(lambda _client: self.aembed_documents(texts))

    def embed_query(self, text: str) -> list[float]:
        """Sync :meth:`aembed_query` (runs on the client's loop thread)."""
        return self.clients.run(lambda _client: self.aembed_query(text))
