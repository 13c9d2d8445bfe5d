"""OpenTelemetry: GenAI spans and metrics, checked with the SDK's in-memory exporters, over
loopback against the simulator; and that OpenTelemetry costs nothing when absent or unconfigured."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import ollama_async as oa
from ollama_async._otel import DURATION_BUCKETS, TOKEN_BUCKETS
from ollama_async.testing import Fault, Simulator

from .conftest import EMB, GEN

pytestmark = pytest.mark.anyio




@pytest.fixture
def otel() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader, dict[str, Any]]]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield spans, reader, {"tracer_provider": tracer_provider, "meter_provider": meter_provider}
    meter_provider.shutdown()
    tracer_provider.shutdown()


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            assert scope.scope.name == "ollama_async"
            for metric in scope.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
                assert metric.unit in {"s", "{token}"}
    return out


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_generate_span_follows_the_genai_conventions(sim: Simulator, otel: Any) -> None:
    spans, _, providers = otel
    async with oa.AsyncClient(sim.url, **providers) as client:
        r = await client.generate(GEN, "hello")
    (span,) = spans.get_finished_spans()
    host, port = sim.url.split("://")[1].rsplit(":", 1)
    assert span.name == "text_completion gen" and span.kind == SpanKind.CLIENT
    assert span.status.status_code == StatusCode.UNSET
    a = attrs(span)
    assert a["gen_ai.operation.name"] == "text_completion"
    assert a["gen_ai.provider.name"] == "ollama"
    assert a["gen_ai.request.model"] == GEN and a["gen_ai.response.model"] == r.model
    assert a["gen_ai.usage.input_tokens"] == r.prompt_eval_count
    assert a["gen_ai.usage.output_tokens"] == r.eval_count == 6
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["server.address"] == host and a["server.port"] == int(port)
    assert "error.type" not in a
    assert not any("hello" in str(v) for v in a.values())  # no content on spans
    assert span.end_time is not None and span.start_time is not None
    assert r.metrics is not None and r.metrics.duration is not None
    assert (span.end_time - span.start_time) / 1e9 == pytest.approx(r.metrics.duration, abs=0.005)


async def test_request_options_on_the_span(sim: Simulator, otel: Any) -> None:
    spans, _, providers = otel
    options = {"temperature": 0.5, "num_predict": 4, "seed": 3, "top_p": 0.9, "top_k": 20, "stop": ["\n\n"]}
    async with oa.AsyncClient(sim.url, **providers) as client:
        await client.chat(GEN, [{"role": "user", "content": "hi"}], options=options)
        await client.generate(GEN, "no options")
    with_options, without = spans.get_finished_spans()
    a = attrs(with_options)
    assert (a["gen_ai.request.temperature"], a["gen_ai.request.max_tokens"], a["gen_ai.request.seed"]) == (0.5, 4, 3)
    assert (a["gen_ai.request.top_p"], a["gen_ai.request.top_k"]) == (0.9, 20)
    assert a["gen_ai.request.stop_sequences"] == ("\n\n",)
    assert not any(k.startswith("gen_ai.request.") and k != "gen_ai.request.model" for k in attrs(without))


async def test_chat_stream_span_ends_with_its_final_part(sim: Simulator, otel: Any) -> None:
    spans, reader, providers = otel
    async with oa.AsyncClient(sim.url, **providers) as client:
        stream = await client.chat(GEN, [{"role": "user", "content": "hi"}], stream=True)
        async for part in stream:
            if part.done:
                (span,) = spans.get_finished_spans()  # ended before the caller got the final part
    assert span.name == "chat gen" and attrs(span)["gen_ai.operation.name"] == "chat"
    assert attrs(span)["gen_ai.usage.output_tokens"] == 6
    first = points(reader)["gen_ai.client.operation.time_to_first_chunk"]
    assert len(first) == 1 and first[0].count == 1


async def test_embed_span_and_a_retry_inside_one_span(sim: Simulator, otel: Any) -> None:
    spans, _, providers = otel
    async with oa.AsyncClient(sim.url, **providers) as client:
        sim.inject(Fault.busy(1, retry_after=0.01), model=GEN)
        await client.generate(GEN, "x")
        await client.embed(EMB, ["a", "b"])
        await client.list()  # not a GenAI operation: no span
    names = [s.name for s in spans.get_finished_spans()]
    assert names == ["text_completion gen", "embeddings emb"]
    retried, embed = spans.get_finished_spans()
    assert attrs(retried)["ollama_async.retries"] == 1  # the retry is inside the logical operation
    assert attrs(embed)["gen_ai.usage.input_tokens"] == 2 and "gen_ai.usage.output_tokens" not in attrs(embed)


async def test_error_span_and_error_metric(sim: Simulator, otel: Any) -> None:
    spans, reader, providers = otel
    async with oa.AsyncClient(sim.url, max_retries=0, **providers) as client:
        with pytest.raises(oa.ModelNotFoundError):
            await client.generate("missing", "x")
        sim.inject(Fault.error_line(after=2))
        with pytest.raises(oa.StreamError):
            async for _ in await client.generate(GEN, "x", stream=True):
                pass
    missing, broken = spans.get_finished_spans()
    assert attrs(missing)["error.type"] == "ModelNotFoundError"
    assert missing.status.status_code == StatusCode.ERROR
    assert missing.status.description == "ModelNotFoundError (HTTP 404): model 'missing' not found"
    assert attrs(broken)["error.type"] == "StreamError" and broken.status.status_code == StatusCode.ERROR
    durations = points(reader)["gen_ai.client.operation.duration"]
    assert {p.attributes.get("error.type") for p in durations} == {"ModelNotFoundError", "StreamError"}
    assert "gen_ai.client.token.usage" not in points(reader)  # failed requests report no usage


async def test_duration_and_token_histograms(sim: Simulator, otel: Any) -> None:
    _, reader, providers = otel
    async with oa.AsyncClient(sim.url, **providers) as client:
        for _ in range(3):
            await client.generate(GEN, "x")
        await client.embed(EMB, ["a", "b", "c"])
    got = points(reader)
    durations = {p.attributes["gen_ai.operation.name"]: p for p in got["gen_ai.client.operation.duration"]}
    assert durations["text_completion"].count == 3 and durations["embeddings"].count == 1
    assert tuple(durations["text_completion"].explicit_bounds) == DURATION_BUCKETS
    gen_attrs = dict(durations["text_completion"].attributes)
    assert gen_attrs["gen_ai.provider.name"] == "ollama" and gen_attrs["gen_ai.request.model"] == GEN
    assert gen_attrs["server.port"] == int(sim.url.rsplit(":", 1)[1]) and "error.type" not in gen_attrs
    tokens = {(p.attributes["gen_ai.operation.name"], p.attributes["gen_ai.token.type"]): p
              for p in got["gen_ai.client.token.usage"]}
    assert tokens["text_completion", "output"].sum == 18 and tokens["text_completion", "output"].count == 3
    assert tokens["embeddings", "input"].sum == 3 and ("embeddings", "output") not in tokens
    assert tuple(tokens["text_completion", "input"].explicit_bounds) == TOKEN_BUCKETS


async def test_tracer_only_and_meter_only(sim: Simulator, otel: Any) -> None:
    spans, reader, providers = otel
    async with oa.AsyncClient(sim.url, tracer_provider=providers["tracer_provider"]) as client:
        await client.generate(GEN, "x")
    assert len(spans.get_finished_spans()) == 1 and not points(reader)
    async with oa.AsyncClient(sim.url, meter_provider=providers["meter_provider"], metrics=False) as client:
        r = await client.generate(GEN, "x")
    assert len(spans.get_finished_spans()) == 1 and points(reader)["gen_ai.client.operation.duration"][0].count == 1
    assert r.metrics is not None  # OpenTelemetry needs them even with metrics=False


async def test_unconfigured_opentelemetry_does_no_work(sim: Simulator) -> None:
    """Imported (as in this test process) but no provider set: no span, and with metrics off,
    not even a metrics object."""
    from opentelemetry import trace

    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    async with oa.AsyncClient(sim.url, metrics=False) as client:
        r = await client.generate(GEN, "x")
        assert r.metrics is None
        assert client._transport.observer.telemetry.enabled() is False


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_global_providers_are_picked_up() -> None:
    out = run_python("""
        import asyncio
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import ollama_async as oa
        from ollama_async.testing import ModelSpec, Simulator

        async def main(url):
            async with oa.AsyncClient(url) as client:
                await client.generate("m", "x")  # no provider yet: no span
                provider = TracerProvider()
                exporter = InMemorySpanExporter()
                provider.add_span_processor(SimpleSpanProcessor(exporter))
                trace.set_tracer_provider(provider)  # set later: seen by the next request
                await client.generate("m", "x")
                print([s.name for s in exporter.get_finished_spans()])

        with Simulator([ModelSpec("m", tokens=2)]) as sim:
            asyncio.run(main(sim.url))
    """)
    assert out == "['text_completion m']"


def test_nothing_of_opentelemetry_is_imported_when_the_app_does_not_use_it() -> None:
    out = run_python("""
        import asyncio, sys
        import ollama_async as oa
        from ollama_async.testing import ModelSpec, Simulator

        async def main(url):
            async with oa.AsyncClient(url) as client:
                await client.generate("m", "x")
                async for _ in await client.generate("m", "x", stream=True):
                    pass
        with Simulator([ModelSpec("m", tokens=2)]) as sim:
            asyncio.run(main(sim.url))
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
    """)
    assert out == "[]"


def test_works_without_opentelemetry_installed() -> None:
    out = run_python("""
        import asyncio, sys

        class NoOtel:
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ModuleNotFoundError(f"No module named {name!r}")
                return None

        sys.meta_path.insert(0, NoOtel())
        import ollama_async as oa
        from ollama_async.testing import ModelSpec, Simulator

        async def main(url):
            async with oa.AsyncClient(url) as client:
                r = await client.generate("m", "x")
                print(r.metrics.output_tokens, r.metrics.status)

        with Simulator([ModelSpec("m", tokens=2)]) as sim:
            asyncio.run(main(sim.url))
    """)
    assert out == "2 200"
