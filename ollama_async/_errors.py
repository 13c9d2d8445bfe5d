"""The exception hierarchy.

Every error this library raises derives from :class:`OllamaError`, and each one says which
request failed and why. The names the official ``ollama`` package uses keep their meaning so that
``except ollama.ResponseError`` code keeps working after switching the import:

- :class:`RequestError` (also a :class:`ValueError`): bad input, found before anything was sent.
- :class:`ResponseError` with ``.error`` and ``.status_code``: the server answered with an error
  (the ``/v1`` routes' OpenAI-style ``{"error": {"message", "type", ...}}`` bodies too: ``.error``
  is the message, ``.type``/``.code``/``.param`` the rest).
  Subclasses narrow it down: :class:`ModelNotFoundError` (404), :class:`ServerBusyError` (503),
  :class:`StreamError` (an ``{"error": ...}`` line after the stream began) and
  :class:`IncompleteStreamError` (the stream ended without its ``done`` line),
  :class:`ResponseTooLargeError` (a head, line or body beyond the client's ``WireLimits``).
- :class:`OllamaConnectionError` is a builtin :class:`ConnectionError`, as the official client raises.
- :class:`OllamaTimeoutError` is a builtin :class:`TimeoutError`.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "ClientClosedError",
    "EventLoopError",
    "IncompleteStreamError",
    "ModelNotFoundError",
    "OllamaConnectionError",
    "OllamaError",
    "OllamaTimeoutError",
    "RequestError",
    "ResponseError",
    "ResponseTooLargeError",
    "ServerBusyError",
    "StreamError",
    "StructuredOutputError",
]

CONNECTION_ERROR_MESSAGE = (
    "Failed to connect to Ollama. Please check that Ollama is downloaded, running and accessible. "
    "https://ollama.com/download"
)


class OllamaError(Exception):
    """Base class of every error raised by ``ollama_async``."""


def _where(method: str | None, url: str | None, model: str | None) -> str:
    parts = [p for p in (method, url) if p]
    if model:
        parts.append(f"model={model!r}")
    return f" [{' '.join(parts)}]" if parts else ""


class RequestError(OllamaError, ValueError):
    """Invalid input, detected before any request was sent.

    ``field`` names the offending argument (``"options.temperature"``, ``"images[2]"``, ...).
    """

    def __init__(self, error: str, *, field: str | None = None) -> None:
        self.error = error
        self.field = field
        super().__init__(f"{field}: {error}" if field else error)


class ResponseError(OllamaError):
    """The server answered with an error.

    ``error`` is the server's text (the ``error`` field of a JSON body, else the body itself);
    ``status_code`` the HTTP status. ``method``, ``url`` and ``model`` say which request failed.
    """

    def __init__(
        self,
        error: str,
        status_code: int = -1,
        *,
        method: str | None = None,
        url: str | None = None,
        model: str | None = None,
    ) -> None:
        # Same contract as the official client: a JSON body's "error" wins over the raw text.
        if error[:1] == "{":
            try:
                parsed: Any = json.loads(error)
            except ValueError:
                pass
            else:
                if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
                    error = parsed["error"]
                elif isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
                    error = self._openai_error(parsed["error"], error)
        self.error = error
        self.status_code = status_code
        self.method = method
        self.url = url
        self.model = model
        super().__init__(error)

    #: The ``type``, ``code`` and ``param`` of an OpenAI-style error body (``/v1`` routes), else None.
    type: str | None = None
    code: Any = None
    param: Any = None

    def _openai_error(self, detail: dict[str, Any], raw: str) -> str:
        """``{"error": {"message", "type", "param", "code"}}``: the message, the rest as attributes."""
        self.type = detail.get("type") if isinstance(detail.get("type"), str) else None
        self.code = detail.get("code")
        self.param = detail.get("param")
        message = detail.get("message")
        return message if isinstance(message, str) else raw

    def __str__(self) -> str:
        return f"{self.error} (status code: {self.status_code}){_where(self.method, self.url, self.model)}"


class ModelNotFoundError(ResponseError):
    """404 with the server's "model ... not found" text (pull the model first)."""


class ServerBusyError(ResponseError):
    """503: the server's pending queue is full (``OLLAMA_MAX_QUEUE``). Retried with backoff first."""


class ResponseTooLargeError(ResponseError):
    """A response head, NDJSON line or body exceeded the client's ``WireLimits``; ``limit`` names which."""

    def __init__(self, error: str, status_code: int = -1, *, limit: str, **kw: Any) -> None:
        super().__init__(error, status_code, **kw)
        self.limit = limit


class StreamError(ResponseError):
    """The server reported an error in-band, as an ``{"error": ...}`` line after the stream began.

    The HTTP status was already 200 by then; ``status_code`` is 500, the status the same failure
    gets when it happens before the first byte (the official client reports -1).
    ``chunks_received`` counts the chunks handed out before the error.
    """

    def __init__(self, error: str, status_code: int = 500, *, chunks_received: int = 0, **kw: Any) -> None:
        super().__init__(error, status_code, **kw)
        self.chunks_received = chunks_received


class IncompleteStreamError(StreamError):
    """The stream ended (EOF or a broken connection) before its ``done: true`` line.

    What was received is not a finished response; the official client lets it pass silently.
    """


class OllamaConnectionError(OllamaError, ConnectionError):
    """Could not reach the server, or the connection broke before any response arrived.

    ``plain_http`` is True when an ``https://`` host answered the TLS handshake with something
    that is not TLS: the server speaks plain HTTP there (as Ollama itself does).
    """

    def __init__(self, message: str, *, method: str | None = None, url: str | None = None,
                 plain_http: bool = False) -> None:
        self.method = method
        self.url = url
        self.plain_http = plain_http
        super().__init__(f"{message}{_where(method, url, None)}")


class OllamaTimeoutError(OllamaError, TimeoutError):
    """A connect, read, write or pool timeout expired. ``phase`` says which."""

    def __init__(
        self,
        message: str,
        *,
        phase: str,
        method: str | None = None,
        url: str | None = None,
        model: str | None = None,
    ) -> None:
        self.phase = phase
        self.method = method
        self.url = url
        self.model = model
        super().__init__(f"{message}{_where(method, url, model)}")


class ClientClosedError(OllamaError, RuntimeError):
    """The client was used after ``aclose()``."""


class EventLoopError(OllamaError, RuntimeError):
    """The client's connection pool belongs to another event loop than the caller's.

    Connections cannot move between event loops; create one client per loop.
    """


class StructuredOutputError(OllamaError, ValueError):
    """The model's output does not validate against the requested ``format``.

    ``text`` is the raw output, ``errors`` the validation errors (a list of dicts as pydantic
    gives them).
    """

    def __init__(self, message: str, *, text: str, errors: list[Any] | None = None) -> None:
        self.text = text
        self.errors = errors or []
        super().__init__(message)
