"""The batch engine's bulk embed over ``/v1/embeddings`` with base64: same vectors, bit for bit,
as ``/api/embed``; native where only the native route gives the same result; native again (and
from then on) for a host that has no ``/v1``."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import respx

from ollama_async import AsyncClient
from ollama_async.batch import _batch
from ollama_async.testing import Fault, Simulator

from .conftest import EMB

pytestmark = pytest.mark.anyio

TEXTS = [f"text number {i} with some words" for i in range(37)] + ["", "é ünïcode ✓"]


async def test_v1_base64_vectors_are_bit_identical_to_api_embed(sim: Simulator) -> None:
    async with AsyncClient(sim.url) as client:
        results = await client.batch.embed(EMB, TEXTS, batch_size=8)
        native = np.asarray((await client.embed(EMB, TEXTS)).embeddings, dtype=np.float32)
        sim.inject(Fault.status(500), times=100, path="/v1/embeddings")  # now /v1 would fail
        via_native = await client.batch.embed(EMB, TEXTS, batch_size=8, keep_alive="5m")  # keep_alive: native
    assert not results.errors and not via_native.errors
    assert results.vectors.dtype == np.float32 and results.vectors.shape == native.shape
    assert results.vectors.tobytes() == native.tobytes() == via_native.vectors.tobytes()


async def test_dimensions_go_through_v1_and_match(sim: Simulator) -> None:
    async with AsyncClient(sim.url) as client:
        results = await client.batch.embed(EMB, TEXTS[:5], dimensions=8)
        native = np.asarray((await client.embed(EMB, TEXTS[:5], dimensions=8)).embeddings, dtype=np.float32)
    assert results.vectors.shape == (5, 8) and results.vectors.tobytes() == native.tobytes()


@pytest.mark.parametrize("kwargs", [{"truncate": False}, {"options": {"num_ctx": 512}}, {"keep_alive": -1}])
async def test_non_default_requests_stay_native(sim: Simulator, kwargs: dict[str, object]) -> None:
    async with AsyncClient(sim.url, max_retries=0) as client:
        sim.inject(Fault.status(500), times=100, path="/v1/embeddings")
        results = await client.batch.embed(EMB, TEXTS[:6], batch_size=2, **kwargs)  # type: ignore[arg-type]
    assert not results.errors and results.vectors.shape == (6, 32)


async def test_host_without_v1_falls_back_and_is_remembered(sim: Simulator) -> None:
    async with AsyncClient(sim.url, max_retries=0) as client:
        sim.inject(Fault.status(404, "404 page not found"), times=1, path="/v1/embeddings")
        first = await client.batch.embed(EMB, TEXTS, batch_size=8, concurrency=1)
        sim.inject(Fault.status(500), times=100, path="/v1/embeddings")  # fails if /v1 is asked again
        second = await client.batch.embed(EMB, TEXTS, batch_size=8)
        native = np.asarray((await client.embed(EMB, TEXTS)).embeddings, dtype=np.float32)
    assert not first.errors and not second.errors
    assert first.vectors.tobytes() == second.vectors.tobytes() == native.tobytes()


async def test_missing_model_is_not_taken_for_a_missing_v1(sim: Simulator) -> None:
    async with AsyncClient(sim.url, max_retries=0) as client:
        results = await client.batch.embed("no-such-model", ["a", "b"])
        assert set(results.errors) == {0, 1}
        assert "not found" in str(results.errors[0])
        assert not _batch._v1_known_missing(client._transport)  # the host has /v1: not remembered


async def test_wire_request_is_openai_pythons_base64_body() -> None:
    vec = np.linspace(-1, 1, 4, dtype="<f4")
    import base64

    reply = {"object": "list", "model": "e", "data": [
        {"object": "embedding", "embedding": base64.b64encode(vec.tobytes()).decode(), "index": i} for i in range(2)]}
    with respx.mock(assert_all_called=False) as mock:
        mock.post("http://h:1/api/show").mock(return_value=httpx.Response(200, json={"capabilities": ["embedding"]}))
        route = mock.post("http://h:1/v1/embeddings").mock(return_value=httpx.Response(200, json=reply))
        async with AsyncClient("http://h:1") as client:
            results = await client.batch.embed("e", ["a", "b"], dimensions=4)
    assert route.calls.last.request.content == (
        b'{"model":"e","input":["a","b"],"dimensions":4,"encoding_format":"base64"}')
    assert results.vectors.tobytes() == np.stack([vec, vec]).tobytes()


async def test_with_several_hosts_one_without_v1_sends_the_batch_native() -> None:
    from ollama_async.testing import Fleet, ModelSpec

    slow, fast = (ModelSpec(name=EMB, kind="embed", dim=32, embed_ms=ms) for ms in (20, 1))
    with Fleet([[slow], [fast]]) as fleet:
        b = fleet[1]  # not the first host: the one whose URL the client's base_url is not
        seen: list[tuple[str, str, int | None]] = []
        async with AsyncClient(host=fleet.urls, max_retries=0,
                               on_request=lambda m: seen.append((m.host, m.path, m.status))) as client:
            await client.each_host(lambda c: c.embed(EMB, "warm up"))  # both loaded: both get rows
            b.remove_routes("/v1/embeddings")  # an Ollama from before /v1
            results = await client.batch.embed(EMB, TEXTS, batch_size=2)
            assert _batch._v1_known_missing(client._transport)
            native = np.asarray((await client.embed(EMB, TEXTS)).embeddings, dtype=np.float32)
        assert b.stats(EMB).requests > 1  # the host without /v1 took part
    b_host = b.url.removeprefix("http://")
    misses = [s for host, path, s in seen if host == b_host and path == "/v1/embeddings"]
    assert misses and set(misses) == {404}
    assert len(misses) <= 7  # at most the batch's 7 requests under way when the first 404 came back
    assert not results.errors
    assert results.vectors.tobytes() == native.tobytes()
