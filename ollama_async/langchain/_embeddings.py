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

from .._errors import RequestError
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
    batch_size: int = 64
    """Texts per ``/api/embed`` request."""
    dimensions: int | None = None
    """Keep the first N dimensions (re-normalised by the server), for models that allow it."""
    truncate: bool | None = None
    """``False``: a text longer than the context is an error (isolated by the batch engine)."""
    keep_alive: float | str | None = None
    options: dict[str, Any] | None = None

    def model_post_init(self, context: Any, /) -> None:
        if isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise RequestError(f"must be a positive int, not {self.batch_size!r}", field="batch_size")

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
        """The vector of one text (one ``/api/embed`` request)."""
        if not isinstance(text, str):
            raise RequestError(f"must be a string, not {type(text).__name__}", field="text")
        client = self.clients.current()
        response = await client.embed(self.model, text, truncate=self.truncate, options=self.options,
                                      keep_alive=self.keep_alive, dimensions=self.dimensions, **self._call_timeout())
        return response.embeddings[0]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Sync :meth:`aembed_documents` (runs on the client's loop thread)."""
        return self.clients.run(lambda _client: self.aembed_documents(texts))

    def embed_query(self, text: str) -> list[float]:
        """Sync :meth:`aembed_query` (runs on the client's loop thread)."""
        return self.clients.run(lambda _client: self.aembed_query(text))
