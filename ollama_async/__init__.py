"""ollama-async: the async Python client for the Ollama HTTP API.

A drop-in for ``ollama.AsyncClient`` (same methods, parameters, response types and exceptions)
built for concurrent work: one connection pool, in-flight limits per model that mirror the
server's slots, retries with backoff, streams that let go of their connection the moment you
stop, and a batch engine for millions of items.
"""

from ._client import AsyncClient
from ._errors import (
    ClientClosedError,
    EventLoopError,
    IncompleteStreamError,
    ModelNotFoundError,
    OllamaConnectionError,
    OllamaError,
    OllamaTimeoutError,
    RequestError,
    ResponseError,
    ResponseTooLargeError,
    ServerBusyError,
    StreamError,
    StructuredOutputError,
)
from ._hosts import Host, HostState
from ._limits import LimitStats
from ._log import set_log_content
from ._observe import ClientStats, RequestMetrics, RequestStats
from ._streaming import Stream
from ._tools import tool_from_callable
from ._transport import DEFAULT_TIMEOUT, RetryPolicy
from ._types import (
    ChatResponse,
    EmbeddingsResponse,
    EmbedResponse,
    GenerateResponse,
    Image,
    ListResponse,
    Logprob,
    Message,
    ModelDetails,
    Options,
    ProcessResponse,
    ProgressResponse,
    ShowResponse,
    StatusResponse,
    TokenLogprob,
    Tool,
    VersionResponse,
    WebFetchResponse,
    WebSearchResponse,
)
from ._version import __version__
from ._wire import WireLimits

__all__ = [
    "DEFAULT_TIMEOUT",
    "AsyncClient",
    "ChatResponse",
    "ClientClosedError",
    "ClientStats",
    "EmbedResponse",
    "EmbeddingsResponse",
    "EventLoopError",
    "GenerateResponse",
    "Host",
    "HostState",
    "Image",
    "IncompleteStreamError",
    "LimitStats",
    "ListResponse",
    "Logprob",
    "Message",
    "ModelDetails",
    "ModelNotFoundError",
    "OllamaConnectionError",
    "OllamaError",
    "OllamaTimeoutError",
    "Options",
    "ProcessResponse",
    "ProgressResponse",
    "RequestError",
    "RequestMetrics",
    "RequestStats",
    "ResponseError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "ServerBusyError",
    "ShowResponse",
    "StatusResponse",
    "Stream",
    "StreamError",
    "StructuredOutputError",
    "TokenLogprob",
    "Tool",
    "VersionResponse",
    "WebFetchResponse",
    "WebSearchResponse",
    "WireLimits",
    "__version__",
    "set_log_content",
    "tool_from_callable",
]
