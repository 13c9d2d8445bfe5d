"""LangChain on this library's client: ``ChatOllamaAsync`` and ``OllamaAsyncEmbeddings``.

Needs the ``langchain`` extra (``pip install 'ollama-async[langchain]'``, which brings
``langchain-core``). ``import ollama_async`` never imports this package; importing it without
langchain-core raises an ``ImportError`` that says what to install.

Both classes send every request through an :class:`ollama_async.AsyncClient`: give them one
(``client=``) to share its connection pool, per-model limits and retries between many chains and
the rest of an application. Sync methods (``invoke``, ``stream``, ``embed_documents``) run on the
client's event loop in another thread; see ``docs/langchain.md``.
"""

try:
    import langchain_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "ollama_async.langchain needs langchain-core: pip install 'ollama-async[langchain]'"
    ) from exc

from ._chat import ChatOllamaAsync
from ._embeddings import OllamaAsyncEmbeddings

__all__ = ["ChatOllamaAsync", "OllamaAsyncEmbeddings"]
