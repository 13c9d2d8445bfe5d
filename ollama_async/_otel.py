"""OpenTelemetry for inference requests: a GenAI client span and the GenAI client histograms.

Follows the OpenTelemetry semantic conventions for generative AI clients: one span of kind
CLIENT per generate / chat / embed request, named ``"{gen_ai.operation.name} {gen_ai.request.model}"``
(``text_completion``, ``chat`` or ``embeddings``), covering the whole logical operation with its
retries (a stream's span ends with its final part), with ``gen_ai.provider.name = "ollama"``,
``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` /
``output_tokens``, ``gen_ai.response.finish_reasons``, ``server.address`` / ``server.port``, the
request's sampling options (``gen_ai.request.temperature``, ``max_tokens`` from ``num_predict``,
``top_p``, ``top_k``, ``seed``, ``stop_sequences``, ...) and,
on failure, ``error.type`` and an ERROR status; and the histograms
``gen_ai.client.operation.duration`` (s), ``gen_ai.client.token.usage`` ({token}, by
``gen_ai.token.type``) and, for streams, ``gen_ai.client.operation.time_to_first_chunk`` (s), with
the bucket boundaries the conventions advise. No content (prompt, output) is ever recorded.

Only ``opentelemetry-api`` is used (the ``otel`` extra), and only when the application set it up:
the global tracer / meter provider (``trace.set_tracer_provider``), or the ``tracer_provider=`` /
``meter_provider=`` given to the client. Without them, a request checks ``sys.modules`` once and
does nothing else; OpenTelemetry is never imported by this library unless the application has
imported it already (or passed a provider).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from ._observe import RequestMetrics

__all__ = ["DURATION_BUCKETS", "GENAI_OPERATIONS", "TOKEN_BUCKETS", "Telemetry"]

#: The client method → ``gen_ai.operation.name``. Other requests (list, pull, ...) get no span.
GENAI_OPERATIONS = {"generate": "text_completion", "chat": "chat", "embed": "embeddings", "embeddings": "embeddings"}
PROVIDER = "ollama"
#: Model options → ``gen_ai.request.*`` attributes.
REQUEST_OPTIONS = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "num_predict": "gen_ai.request.max_tokens",
    "seed": "gen_ai.request.seed",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
}
#: Advised boundaries for ``gen_ai.client.operation.duration`` (seconds).
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
#: Advised boundaries for ``gen_ai.client.token.usage``.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)

_METRICS_ONLY = object()  # a request that has no span (no tracer) but feeds the histograms


class Telemetry:
    """The tracer and instruments of one client, found lazily and re-checked cheaply per request."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._explicit = tracer_provider is not None or meter_provider is not None
        self._api: Any = None  # (opentelemetry.trace, opentelemetry.metrics) once imported
        self._globals: Any = None  # the modules holding the global providers, when safe to peek
        self._tracer_of: Any = None
        self._tracer: Any = None
        self._meter_of: Any = None
        self._duration: Any = None
        self._tokens: Any = None
        self._first_chunk: Any = None

    def enabled(self) -> bool:
        """Whether a tracer or a meter is configured; a dict lookup when OpenTelemetry is not in use."""
        if not self._explicit and "opentelemetry" not in sys.modules:
            return False
        peek = self._globals
        if peek is not None and peek[0]._TRACER_PROVIDER is None and peek[1]._METER_PROVIDER is None:
            return False  # still no global provider (what get_*_provider() would find, minus its cost)
        return self._resolve()

    def _resolve(self) -> bool:
        api = self._api
        if api is None:
            from opentelemetry import metrics, trace

            api = self._api = (trace, metrics)
            self._globals = None if self._explicit else _peekable(trace)
        trace, metrics = api
        tp = self._tracer_provider or trace.get_tracer_provider()
        if tp is not self._tracer_of:
            self._tracer_of = tp
            unset = isinstance(tp, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
            self._tracer = None if unset else tp.get_tracer("ollama_async", __version__)
        mp = self._meter_provider or metrics.get_meter_provider()
        if mp is not self._meter_of:
            self._meter_of = mp
            unset = isinstance(mp, metrics.NoOpMeterProvider) or type(mp).__name__ == "_ProxyMeterProvider"
            if unset:
                self._duration = self._tokens = self._first_chunk = None
            else:
                meter = mp.get_meter("ollama_async", __version__)
                self._duration = meter.create_histogram(
                    "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration",
                    explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
                )
                self._tokens = meter.create_histogram(
                    "gen_ai.client.token.usage", unit="{token}",
                    description="Number of input and output tokens used",
                    explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
                )
                self._first_chunk = meter.create_histogram(
                    "gen_ai.client.operation.time_to_first_chunk", unit="s",
                    description="Time to receive the first chunk of a streamed response",
                    explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
                )
        return self._tracer is not None or self._duration is not None

    def start(self, m: RequestMetrics, address: str, port: int | None, options: Mapping[str, Any] | None) -> Any:
        """The span of a GenAI request (or a marker when only metrics are on); None for others."""
        op = GENAI_OPERATIONS.get(m.operation)
        if op is None:
            return None
        tracer = self._tracer
        if tracer is None:
            return _METRICS_ONLY
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": op,
            "gen_ai.provider.name": PROVIDER,
            "server.address": address,
        }
        if m.model:
            attributes["gen_ai.request.model"] = m.model
        if port is not None:
            attributes["server.port"] = port
        if options:
            for key, name in REQUEST_OPTIONS.items():
                value = options.get(key)
                if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                    attributes[name] = value
            stop = options.get("stop")
            if isinstance(stop, (list, tuple)) and all(isinstance(x, str) for x in stop):
                attributes["gen_ai.request.stop_sequences"] = tuple(stop)
        kind = self._api[0].SpanKind.CLIENT
        return tracer.start_span(f"{op} {m.model}" if m.model else op, kind=kind, attributes=attributes)

    def end(self, m: RequestMetrics, exc: BaseException | None, error_text: str | None) -> None:
        """End the request's span and record its duration and token usage."""
        span = m._span
        op = GENAI_OPERATIONS[m.operation]
        error_type = type(exc).__qualname__ if exc is not None else None
        if span is not _METRICS_ONLY:
            found: dict[str, Any] = {"ollama_async.slot_wait": m.slot_wait}
            if m.response_model:
                found["gen_ai.response.model"] = m.response_model
            if m.input_tokens is not None:
                found["gen_ai.usage.input_tokens"] = m.input_tokens
            if m.output_tokens is not None:
                found["gen_ai.usage.output_tokens"] = m.output_tokens
            if m.done_reason:
                found["gen_ai.response.finish_reasons"] = (m.done_reason,)
            if m.retries:
                found["ollama_async.retries"] = m.retries
            if m.queue_time is not None:
                found["ollama_async.server_queue_time"] = m.queue_time
            if m.stopped_early:
                found["ollama_async.stopped_early"] = True
            if error_type is not None:
                found["error.type"] = error_type
                trace = self._api[0]
                span.set_status(trace.Status(trace.StatusCode.ERROR, error_text))
            span.set_attributes(found)
            span.end()
        duration = self._duration
        if duration is None:
            return
        attributes: dict[str, Any] = {"gen_ai.operation.name": op, "gen_ai.provider.name": PROVIDER}
        if m.model:
            attributes["gen_ai.request.model"] = m.model
        if m.response_model:
            attributes["gen_ai.response.model"] = m.response_model
        host, _, port = m.host.rpartition(":")
        if port.isdigit():
            attributes["server.address"] = host.strip("[]")
            attributes["server.port"] = int(port)
        if error_type is None:
            if m.input_tokens is not None:
                self._tokens.record(m.input_tokens, {**attributes, "gen_ai.token.type": "input"})
            if m.output_tokens is not None:
                self._tokens.record(m.output_tokens, {**attributes, "gen_ai.token.type": "output"})
            if m.stream and m.time_to_first_token is not None:
                self._first_chunk.record(m.time_to_first_token, attributes)
        else:
            attributes["error.type"] = error_type
        duration.record(m.duration or 0.0, attributes)


def _peekable(trace: Any) -> Any:
    """The modules whose ``_TRACER_PROVIDER`` / ``_METER_PROVIDER`` say "no global provider yet",
    when reading them is equivalent to the public getters (no provider named in the environment);
    else None, and the getters are called on every request."""
    import os

    try:
        from opentelemetry.metrics import _internal as metrics_internal
    except ImportError:  # pragma: no cover - a layout other than opentelemetry-api's
        return None
    if not hasattr(trace, "_TRACER_PROVIDER") or not hasattr(metrics_internal, "_METER_PROVIDER"):
        return None
    if "OTEL_PYTHON_TRACER_PROVIDER" in os.environ or "OTEL_PYTHON_METER_PROVIDER" in os.environ:
        return None
    return trace, metrics_internal
