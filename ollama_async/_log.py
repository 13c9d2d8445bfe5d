"""The library's loggers, one per concern, and the one switch that lets content into them.

Everything logs through the stdlib :mod:`logging` under ``ollama_async``; configure it as any
library's (``logging.getLogger("ollama_async").setLevel(logging.INFO)``). Nothing is logged at
WARNING unless something went wrong, and nothing is set up by the library itself (no handler, no
level): an application that configures nothing sees only warnings, through Python's last resort.

- ``ollama_async.transport``: retries (reason, delay, attempt), requests that failed for good
  (connection failures and timeouts at WARNING, HTTP errors at INFO), one DEBUG line per finished
  request with its timings;
- ``ollama_async.limits``: the 503 gate closing (WARNING); limit changes (DEBUG, by the adaptive
  controller);
- ``ollama_async.streaming``: a stream the caller stopped early (DEBUG), a stream that broke or
  carried an error after it started (WARNING);
- ``ollama_async.batch``: 503 requeues and embed groups split after a too-large reply;
- ``ollama_async.hooks``: a metrics hook that raised (it never breaks the request);
- ``ollama_async.hosts``: host health changes (several-host clients).

**Content never reaches a log** by default, at any level: no prompt, message, image, embedding
input, model output or header (so no API key). Only names (model, path, host), numbers and the
server's own error texts are logged. For debugging, :func:`set_log_content` (or the environment
variable ``OLLAMA_ASYNC_LOG_CONTENT=1``) adds request bodies and decoded replies (a stream's:
its final part), cut to :data:`CONTENT_LIMIT` bytes, to the DEBUG lines of
``ollama_async.transport``. Headers, and so the
API key, are not logged even then.
"""

from __future__ import annotations

import logging
import os

__all__ = [
    "CONTENT_LIMIT",
    "batch_log",
    "content_logged",
    "hooks_log",
    "hosts_log",
    "limits_log",
    "set_log_content",
    "streaming_log",
    "transport_log",
]

# A library's loggers get a NullHandler (the logging HOWTO's advice): the application decides
# where records go, and an unconfigured app does not get WARNING lines on stderr from
# logging's last-resort handler.
logging.getLogger("ollama_async").addHandler(logging.NullHandler())

transport_log = logging.getLogger("ollama_async.transport")
limits_log = logging.getLogger("ollama_async.limits")
streaming_log = logging.getLogger("ollama_async.streaming")
batch_log = logging.getLogger("ollama_async.batch")
hooks_log = logging.getLogger("ollama_async.hooks")
hosts_log = logging.getLogger("ollama_async.hosts")

#: Bytes of a body shown when content logging is on.
CONTENT_LIMIT = 2000

_content = os.environ.get("OLLAMA_ASYNC_LOG_CONTENT", "").strip().lower() in {"1", "true", "yes", "on"}


def set_log_content(enabled: bool) -> None:
    """Let request bodies and replies into ``ollama_async.transport``'s DEBUG lines (or stop).

    Off by default (and unless ``OLLAMA_ASYNC_LOG_CONTENT=1``): prompts and outputs are often
    personal data. Headers (the API key) are never logged.
    """
    global _content
    _content = bool(enabled)


def content_logged() -> bool:
    """Whether bodies may be logged (:func:`set_log_content`)."""
    return _content


def clip(body: object) -> str:
    """A body as it may appear in a log line when content logging is on: cut, never raw bytes."""
    if body is None:
        return "<none>"
    if callable(body):
        return "<streamed body>"
    if isinstance(body, (bytes, bytearray, memoryview)):
        data = bytes(body)
        text = data[:CONTENT_LIMIT].decode("utf-8", "replace")
        return text + (f"... ({len(data)} bytes)" if len(data) > CONTENT_LIMIT else "")
    return f"<{type(body).__name__}>"
