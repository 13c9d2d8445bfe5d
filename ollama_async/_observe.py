"""Where the time of each request went: :class:`RequestMetrics`, their aggregates, and hooks.

Every request of an :class:`~ollama_async.AsyncClient` gets a :class:`RequestMetrics` (unless
``metrics=False`` and nothing else asks for one): the client-side wait for a slot, the time to the
first byte and (streams) to the first part, the server's own load / prompt / eval / queue times
from the reply, tokens and tokens per second, retries, host, status or error. It is

- readable on the reply: ``response.metrics`` (a stream's final part has it, and so has the
  stream: ``stream.metrics``), without being a field of the model (``model_dump()`` and
  ``response["key"]`` are unchanged);
- handed to every hook (``AsyncClient(on_request=fn)`` / ``client.add_hook(fn)``) once the request
  is over: the reply decoded, the stream's final part read, the caller stopped early, or an error;
- added to per-(host, model) aggregates, read with ``client.stats()`` (:class:`ClientStats`).

The same points of the request path feed the logs (``_log.py``) and OpenTelemetry
(``_otel.py``). When metrics are off, there is no hook, DEBUG logging is off and OpenTelemetry is
not configured, a request costs one call that returns ``None``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from ._errors import OllamaConnectionError, OllamaTimeoutError, RequestError, ResponseError, StreamError
from ._limits import model_key
from ._log import clip, content_logged, hooks_log, limits_log, streaming_log, transport_log
from ._otel import Telemetry

if TYPE_CHECKING:
    from ._routing import Router
    from ._transport import Call, Transport

__all__ = ["ClientStats", "Hook", "Observer", "RequestMetrics", "RequestStats"]

_DEBUG = logging.DEBUG

#: What a hook receives; its return value is ignored. Called on the event loop: keep it quick.
Hook = Callable[["RequestMetrics"], object]

_OPERATIONS = {
    "/api/generate": "generate",
    "/api/chat": "chat",
    "/api/embed": "embed",
    "/api/embeddings": "embeddings",
    # the /v1 layer (``client.openai``, and the batch engine's bulk embeds) as the native operation
    "/v1/chat/completions": "chat",
    "/v1/completions": "generate",
    "/v1/embeddings": "embed",
    "/v1/responses": "chat",
    "/api/tags": "list",
    "/api/ps": "ps",
    "/api/show": "show",
    "/api/pull": "pull",
    "/api/push": "push",
    "/api/create": "create",
    "/api/copy": "copy",
    "/api/delete": "delete",
    "/api/version": "version",
}


def operation_of(path: str) -> str:
    """The client method a path belongs to (``/api/blobs/...`` is ``create_blob``)."""
    op = _OPERATIONS.get(path)
    if op is not None:
        return op
    if path.startswith("/api/blobs/"):
        return "create_blob"
    return path.rsplit("/", 1)[-1] or path


@dataclass(slots=True, eq=False)
class RequestMetrics:
    """What one request cost, and where the time went. Times in seconds.

    Client side (measured here):

    - ``duration``: from the call to its end (reply decoded, a stream's final part, or the error);
    - ``slot_wait``: waiting for a free slot of the model's in-flight limit and for the 503 gate,
      over all attempts;
    - ``time_to_first_byte``: from the call to the response headers of the attempt that succeeded
      (Ollama sends a generate/chat stream's headers with its first token; a non-streamed reply's
      only when it is complete);
    - ``time_to_first_token``: streams only, from the call to the first part;
    - ``retries`` and why (``retry_reasons``: ``"HTTP 503"``, ``"ConnectError"``, ...), and
      ``backoff``, the seconds slept before them.

    Server side (from the reply, None when it has no such field): ``load_time``,
    ``prompt_eval_time``, ``eval_time``, ``server_time`` (``total_duration``) and ``queue_time``,
    the wait for a slot inside the server (``total - load - prompt_eval - eval``); the token counts
    ``input_tokens`` (``prompt_eval_count``) and ``output_tokens`` (``eval_count``), and
    :attr:`tokens_per_second` (``eval_count / eval_duration``).

    ``status`` is the HTTP status (None when no response came), ``error`` the exception's class
    name (None on success). A stream the caller left before its final part has
    ``stopped_early=True`` and no error; ``parts`` counts the parts it handed out.
    """

    operation: str
    model: str | None
    host: str
    method: str
    path: str
    stream: bool
    started_at: float  #: ``time.time()`` at the call
    duration: float | None = None
    slot_wait: float = 0.0
    time_to_first_byte: float | None = None
    time_to_first_token: float | None = None
    retries: int = 0
    retry_reasons: list[str] = field(default_factory=list)
    backoff: float = 0.0
    status: int | None = None
    error: str | None = None
    stopped_early: bool = False
    parts: int = 0
    load_time: float | None = None
    prompt_eval_time: float | None = None
    eval_time: float | None = None
    server_time: float | None = None
    queue_time: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    done_reason: str | None = None
    response_model: str | None = None
    _t0: float = field(default=0.0, repr=False)
    _done: bool = field(default=False, repr=False)
    _span: Any = field(default=None, repr=False)

    @property
    def tokens_per_second(self) -> float | None:
        """Generation speed by the server's clock: output tokens per second of ``eval_time``."""
        if not self.output_tokens or not self.eval_time:
            return None
        return self.output_tokens / self.eval_time

    @property
    def ok(self) -> bool:
        return self.error is None

    def _elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def _read_reply(self, reply: object) -> None:
        """Copy the server's timings and token counts out of a decoded reply (or final part)."""
        fields = getattr(reply, "__dict__", None)  # a pydantic model's field values
        if fields:
            get = fields.get
        elif hasattr(reply, "total_duration"):  # an object with slots (the batch engine's embed reply)
            def get(key: str) -> Any:
                return getattr(reply, key, None)
        else:
            return
        total = get("total_duration")
        if not isinstance(total, int):
            return
        load, prompt, ev = get("load_duration"), get("prompt_eval_duration"), get("eval_duration")
        self.server_time = total / 1e9
        self.load_time = load / 1e9 if isinstance(load, int) else None
        self.prompt_eval_time = prompt / 1e9 if isinstance(prompt, int) else None
        self.eval_time = ev / 1e9 if isinstance(ev, int) else None
        if prompt is not None or ev is not None:  # embed replies have no breakdown: no queue time
            work = (self.load_time or 0.0) + (self.prompt_eval_time or 0.0) + (self.eval_time or 0.0)
            self.queue_time = max(0.0, total / 1e9 - work)
        count = get("prompt_eval_count")
        self.input_tokens = count if isinstance(count, int) else None
        count = get("eval_count")
        self.output_tokens = count if isinstance(count, int) else None
        reason = get("done_reason")
        self.done_reason = reason if isinstance(reason, str) else None
        name = get("model")
        self.response_model = name if isinstance(name, str) else None


@dataclass
class RequestStats:
    """Aggregates of the requests of one model (or host, or both), from their metrics. Seconds.

    Sums, maxima and counts: means are properties. ``server_replies`` counts the replies that
    carried the server's timings (the server-time means are over those).
    """

    requests: int = 0
    errors: int = 0
    stopped_early: int = 0
    retries: int = 0
    backoff_total: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    duration_total: float = 0.0
    duration_max: float = 0.0
    slot_wait_total: float = 0.0
    slot_wait_max: float = 0.0
    first_token_total: float = 0.0
    first_token_count: int = 0
    server_replies: int = 0
    load_total: float = 0.0
    prompt_eval_total: float = 0.0
    eval_total: float = 0.0
    queue_total: float = 0.0
    queue_max: float = 0.0
    errors_by_type: dict[str, int] = field(default_factory=dict)

    @property
    def duration_mean(self) -> float:
        return self.duration_total / self.requests if self.requests else 0.0

    @property
    def slot_wait_mean(self) -> float:
        return self.slot_wait_total / self.requests if self.requests else 0.0

    @property
    def time_to_first_token_mean(self) -> float | None:
        return self.first_token_total / self.first_token_count if self.first_token_count else None

    @property
    def queue_mean(self) -> float | None:
        return self.queue_total / self.server_replies if self.server_replies else None

    @property
    def tokens_per_second(self) -> float | None:
        """Output tokens per second of server eval time, over all replies."""
        return self.output_tokens / self.eval_total if self.eval_total > 0 else None

    def add(self, m: RequestMetrics) -> None:
        """Count one finished request."""
        self.requests += 1
        if m.error is not None:
            self.errors += 1
            self.errors_by_type[m.error] = self.errors_by_type.get(m.error, 0) + 1
        if m.stopped_early:
            self.stopped_early += 1
        self.retries += m.retries
        self.backoff_total += m.backoff
        duration = m.duration or 0.0
        self.duration_total += duration
        if duration > self.duration_max:
            self.duration_max = duration
        self.slot_wait_total += m.slot_wait
        if m.slot_wait > self.slot_wait_max:
            self.slot_wait_max = m.slot_wait
        if m.time_to_first_token is not None:
            self.first_token_total += m.time_to_first_token
            self.first_token_count += 1
        if m.server_time is not None:
            self.server_replies += 1
            self.load_total += m.load_time or 0.0
            self.prompt_eval_total += m.prompt_eval_time or 0.0
            self.eval_total += m.eval_time or 0.0
            queue = m.queue_time or 0.0
            self.queue_total += queue
            if queue > self.queue_max:
                self.queue_max = queue
        self.input_tokens += m.input_tokens or 0
        self.output_tokens += m.output_tokens or 0

    def merge(self, other: RequestStats) -> None:
        """Add another aggregate's counts to this one (model over hosts, host over models)."""
        for f in dataclasses.fields(self):
            name = f.name
            if name == "errors_by_type":
                for key, n in other.errors_by_type.items():
                    self.errors_by_type[key] = self.errors_by_type.get(key, 0) + n
            elif name.endswith("_max"):
                setattr(self, name, max(getattr(self, name), getattr(other, name)))
            else:
                setattr(self, name, getattr(self, name) + getattr(other, name))


def _copy(stats: RequestStats) -> RequestStats:
    return dataclasses.replace(stats, errors_by_type=dict(stats.errors_by_type))


@dataclass(frozen=True)
class ClientStats:
    """A snapshot of a client's aggregates (``client.stats()``).

    ``by_host_model`` is keyed by ``(host, model)``, ``by_model`` and ``by_host`` sum over the
    other one; ``total`` over everything. Models are named as the server names them
    (``llama3.2:latest``); requests without a model (list, show, pull, ...) are under ``""``.
    ``stats["llama3.2"]`` is ``by_model`` with the name completed.
    """

    by_host_model: Mapping[tuple[str, str], RequestStats]
    by_model: Mapping[str, RequestStats]
    by_host: Mapping[str, RequestStats]
    total: RequestStats

    def __getitem__(self, model: str) -> RequestStats:
        return self.by_model[model_key(model) if model else ""]

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and (model_key(model) if model else "") in self.by_model


def _address(base_url: str) -> tuple[str, str, int | None]:
    """``(host:port, host, port)`` of a base URL: what logs, stats and spans name a server by."""
    import urllib.parse

    split = urllib.parse.urlsplit(base_url)
    name = split.hostname or ""
    port = split.port
    shown = f"[{name}]" if ":" in name else name
    return (f"{shown}:{port}" if port is not None else shown), name, port


def host_address(base_url: str) -> str:
    """How metrics name the server at ``base_url`` (``host:port``)."""
    return _address(base_url)[0]


def describe(exc: BaseException) -> str:
    """An exception as a log line may show it: never content.

    The server's own error text and our connection/timeout messages are kept; messages that quote
    a body (an invalid reply, an invalid stream line) are reduced to the exception's class name.
    """
    name = type(exc).__name__
    if isinstance(exc, StreamError) and exc.__cause__ is not None:
        return f"{name} after {exc.chunks_received} parts"
    if isinstance(exc, ResponseError):
        if exc.__cause__ is not None:  # decoding failed: the message quotes the body
            return f"{name} (HTTP {exc.status_code}, invalid reply)"
        text = exc.error if len(exc.error) <= 300 else exc.error[:300] + "..."
        return f"{name} (HTTP {exc.status_code}): {text}"
    if isinstance(exc, (OllamaConnectionError, OllamaTimeoutError)):
        return f"{name}: {exc}"
    return name


class Observer:
    """The observation state of one client: switches, hooks, aggregates and its telemetry.

    The transport calls :meth:`start` when a request begins, :meth:`retrying` before each retry,
    and one of :meth:`finished`, :meth:`failed` or :meth:`stopped` when it is over.
    """

    def __init__(
        self, *, metrics: bool = True, hooks: Iterable[Hook] = (), tracer_provider: Any = None,
        meter_provider: Any = None, aggregate: bool = True,
    ) -> None:
        self.metrics = metrics
        self.hooks: list[Hook] = list(hooks)
        self.telemetry = Telemetry(tracer_provider, meter_provider)
        self._aggregate = aggregate
        self._stats: dict[tuple[str, str], RequestStats] = {}
        self._addresses: dict[str, tuple[str, str, int | None]] = {}

    # -- the request path ---------------------------------------------------------------------

    def start(self, transport: Transport | Router, call: Call, stream: bool) -> RequestMetrics | None:
        """A request begins: its metrics (also on ``call.metrics``), or None when nothing wants them."""
        telemetry = self.telemetry
        traced = telemetry.enabled()
        if not (self.metrics or self.hooks or traced or transport_log.isEnabledFor(_DEBUG)):
            call.metrics = None
            return None
        base = transport.base_url
        address = self._addresses.get(base)
        if address is None:
            address = self._addresses[base] = _address(base)
        path = call.path
        m = RequestMetrics(operation_of(path), call.model, address[0], call.method, path, stream, time.time(),
                           _t0=time.perf_counter())
        call.metrics = m
        if traced:
            m._span = telemetry.start(m, address[1], address[2], call.options)
        if content_logged() and transport_log.isEnabledFor(_DEBUG):
            transport_log.debug("%s %s to %s, body: %s", call.method, path, m.host, clip(call.body))
        return m

    def retrying(self, call: Call, attempt: int, limit: int, delay: float, reason: str,
                 gate: bool = False) -> None:
        """A retry is coming after ``delay`` seconds; ``gate``: a 503 closed the model's gate."""
        m = call.metrics
        if m is not None:
            m.retries += 1
            m.retry_reasons.append(reason)
            m.backoff += delay
        if gate and limits_log.isEnabledFor(logging.WARNING):
            limits_log.warning("server busy (503) for model %s: its requests wait %.2fs", call.model, delay)
        if transport_log.isEnabledFor(logging.INFO):
            transport_log.info("retrying %s %s (model %s) in %.2fs after %s (retry %d of %d)", call.method,
                               call.path, call.model, delay, reason, attempt, limit)

    def finished(self, m: RequestMetrics, reply: object) -> None:
        """The reply is decoded (or a stream's final part read): complete, attach, publish."""
        if m._done:
            return
        m.duration = m._elapsed()
        m._read_reply(reply)
        if m.status is None:
            m.status = 200
        private: Any = getattr(reply, "__pydantic_private__", False)  # cheaper than isinstance(BaseModel)
        if private is not False:  # a response model: ``reply.metrics`` (see _types.py)
            object.__setattr__(reply, "__pydantic_private__", {**(private or {}), "metrics": m})
            if content_logged() and transport_log.isEnabledFor(_DEBUG):
                transport_log.debug("%s %s from %s, reply: %s", m.method, m.path, m.host,
                                    clip(cast(BaseModel, reply).model_dump_json(exclude_none=True).encode()))
        self._publish(m)

    def failed(self, call: Call, exc: BaseException, parts: int = 0, streaming: bool = False) -> None:
        """The request ended in ``exc``: log it (without content) and publish its metrics."""
        m = call.metrics
        if m is not None and m._done:
            return
        cancelled = not isinstance(exc, Exception)
        if streaming and parts and not cancelled:
            if streaming_log.isEnabledFor(logging.WARNING):
                streaming_log.warning("stream %s %s (model %s) broke after %d parts: %s", call.method, call.path,
                                      call.model, parts, describe(exc))
        elif isinstance(exc, (OllamaConnectionError, OllamaTimeoutError)):
            if transport_log.isEnabledFor(logging.WARNING):
                transport_log.warning("%s %s (model %s) failed: %s", call.method, call.path, call.model,
                                      describe(exc))
        elif isinstance(exc, ResponseError):
            if transport_log.isEnabledFor(logging.INFO):
                transport_log.info("%s %s (model %s) failed: %s", call.method, call.path, call.model, describe(exc))
        elif transport_log.isEnabledFor(_DEBUG):
            transport_log.debug("%s %s (model %s) ended by %s", call.method, call.path, call.model, describe(exc))
        if m is None:
            return
        m.duration = m._elapsed()
        m.parts = parts or m.parts
        m.error = type(exc).__name__
        status = getattr(exc, "status_code", None)
        if isinstance(status, int):
            m.status = status
        self._publish(m, exc)

    def stopped(self, call: Call, parts: int) -> None:
        """The caller left a stream before its final part (``break``, ``aclose``)."""
        if streaming_log.isEnabledFor(_DEBUG):
            streaming_log.debug("stream %s %s (model %s) closed by the caller after %d parts", call.method,
                                call.path, call.model, parts)
        m = call.metrics
        if m is None or m._done:
            return
        m.duration = m._elapsed()
        m.parts = parts
        m.stopped_early = True
        self._publish(m)

    # -- publishing ---------------------------------------------------------------------------

    def _publish(self, m: RequestMetrics, exc: BaseException | None = None) -> None:
        m._done = True
        if self.metrics and self._aggregate:
            key = (m.host, _model_name(m.model))
            stats = self._stats.get(key)
            if stats is None:
                stats = self._stats[key] = RequestStats()
            stats.add(m)
        if m._span is not None:
            self.telemetry.end(m, exc, describe(exc) if exc is not None else None)
        if transport_log.isEnabledFor(_DEBUG):
            transport_log.debug(
                "%s %s (model %s) at %s: %s in %.3fs; slot wait %.3fs, first byte %s, server queue %s, "
                "output tokens %s at %s tokens/s, %d retries", m.method, m.path, m.model, m.host,
                m.error or ("stopped early" if m.stopped_early else m.status), m.duration or 0.0, m.slot_wait,
                _fmt(m.time_to_first_byte), _fmt(m.queue_time), _fmt(m.output_tokens, "%d"),
                _fmt(m.tokens_per_second, "%.1f"), m.retries,
            )
        for hook in self.hooks:
            try:
                hook(m)
            except Exception:
                hooks_log.exception("a request hook (%r) raised; the request is not affected", hook)

    # -- reading ------------------------------------------------------------------------------

    def snapshot(self) -> ClientStats:
        """Copies of the aggregates, summed per model, per host and in total."""
        pairs = {key: _copy(stats) for key, stats in self._stats.items()}
        by_model: dict[str, RequestStats] = {}
        by_host: dict[str, RequestStats] = {}
        total = RequestStats()
        for (host, model), stats in pairs.items():
            by_model.setdefault(model, RequestStats()).merge(stats)
            by_host.setdefault(host, RequestStats()).merge(stats)
            total.merge(stats)
        return ClientStats(pairs, by_model, by_host, total)

    def reset(self) -> None:
        """Forget the aggregates (``client.stats(reset=True)``)."""
        self._stats.clear()


def _model_name(model: str | None) -> str:
    return model_key(model) if model else ""


def _fmt(value: float | int | None, spec: str = "%.3fs") -> str:
    return "-" if value is None else spec % value


def make_observer(
    on_request: Hook | Iterable[Hook] | None, metrics: bool, tracer_provider: Any, meter_provider: Any
) -> Observer:
    """The observer of a new client, from its constructor's arguments (checked here)."""
    if on_request is None:
        hooks: list[Hook] = []
    elif callable(on_request):
        hooks = [on_request]
    else:
        hooks = list(on_request)
    for i, hook in enumerate(hooks):
        if not callable(hook):
            raise RequestError(f"must be callable, not {type(hook).__name__}",
                               field="on_request" if len(hooks) == 1 else f"on_request[{i}]")
    if not isinstance(metrics, bool):
        raise RequestError(f"must be True or False, not {metrics!r}", field="metrics")
    return Observer(metrics=metrics, hooks=hooks, tracer_provider=tracer_provider, meter_provider=meter_provider)
