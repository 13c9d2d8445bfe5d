"""Batched decoding in the simulator: step time grows with active slots, per the model's profile.

Timings are read from the server's own accounting (each reply's ``eval_duration`` per token and
``prompt_eval_duration``), and compared as ratios between runs of the same test with generous
bounds: the claims are about shape (how much slower four streams are than one), not wall time.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from ollama_async import AsyncClient
from ollama_async.testing import ModelSpec, Simulator
from ollama_async.testing._batching import step_factor
from ollama_async.testing._cli import parse_model
from ollama_async.testing._models import PROFILES

pytestmark = pytest.mark.anyio


def per_token_s(reply: Any) -> float:
    return float(reply.eval_duration) / float(reply.eval_count) / 1e9


def total_s(reply: Any) -> float:
    return float(reply.total_duration) / 1e9


async def together(client: AsyncClient, model: str, n: int, *, stream: bool = False) -> list[Any]:
    """``n`` generates started at once; their replies (a stream's final chunk)."""
    replies: list[Any] = []

    async def one(i: int) -> None:
        if stream:
            last = None
            async for part in await client.generate(model, f"prompt {i}", stream=True):
                last = part
            replies.append(last)
        else:
            replies.append(await client.generate(model, f"prompt {i}"))

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return replies


def test_step_factor_follows_the_contention_line() -> None:
    assert step_factor(0.41, 1) == 1.0 and step_factor(0.41, 0) == 1.0
    assert step_factor(0.41, 4) == pytest.approx(2.23)
    cpu = PROFILES["cpu"]
    # The calibration: 65 tokens/s alone, ~29 each of four, on the real server.
    assert 1000 / cpu["token_ms"] == pytest.approx(65, abs=1)
    assert 1000 / (cpu["token_ms"] * step_factor(cpu["contention"], 4)) == pytest.approx(29, abs=1)


def test_profiles_from_the_api_and_the_cli() -> None:
    spec = ModelSpec.from_profile("cpu", "gemma3:270m", token_ms=2)
    assert (spec.slots, spec.contention, spec.token_ms) == (4, 0.41, 2)
    cli = parse_model("gemma3:270m:profile=gpu,slots=12")
    assert cli.name == "gemma3:270m" and cli.slots == 12 and cli.contention == PROFILES["gpu"]["contention"]
    assert parse_model("m:contention=0.2,prompt_token_ms=0.5").prompt_token_ms == 0.5
    assert ModelSpec("m").contention == 0.0  # independent slots stay the default
    with pytest.raises(ValueError, match="unknown profile 'tpu'"):
        ModelSpec.from_profile("tpu", "m")
    with pytest.raises(ValueError, match="unknown profile"):
        parse_model("m:profile=tpu")
    with pytest.raises(ValueError, match="contention"):
        ModelSpec("m", contention=-1)


@pytest.mark.parametrize(
    ("profile", "slots", "low", "high"),
    [
        ("cpu", 4, 1.7, 2.9),  # 1 + 0.41 * 3 = 2.23
        ("gpu", 8, 1.0, 1.6),  # 1 + 0.03 * 7 = 1.21
        ("independent", 4, 0.8, 1.35),  # every slot at full speed
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_full_batch_steps_slower_by_the_profile(
    profile: str, slots: int, low: float, high: float, stream: bool
) -> None:
    spec = ModelSpec.from_profile(profile, "m", slots=slots, token_ms=4, tokens=10, prompt_ms=0, prompt_token_ms=0)
    with Simulator([spec]) as sim:
        async with AsyncClient(sim.url, concurrency=slots) as client:
            alone = per_token_s((await together(client, "m", 1, stream=stream))[0])
            full = await together(client, "m", slots, stream=stream)
        assert sim.stats("m").max_in_flight == slots
    ratio = sum(per_token_s(r) for r in full) / len(full) / alone
    assert low <= ratio <= high, ratio
    assert alone == pytest.approx(0.004, rel=0.5)


async def test_prompt_tokens_cost_and_compete_with_decoding() -> None:
    spec = ModelSpec.from_profile("cpu", "m", token_ms=5, tokens=8, prompt_ms=0, prompt_token_ms=1.0)
    long_prompt = " ".join(["word"] * 200)
    with Simulator([spec]) as sim:
        async with AsyncClient(sim.url, concurrency=4) as client:
            short = await client.generate("m", "hi")
            long = await client.generate("m", long_prompt)
            # The long prompt costs ~200 ms of solo work, the short one ~2 ms.
            long_s, short_s = (float(r.prompt_eval_duration or 0) / 1e9 for r in (long, short))
            assert long_s > 20 * short_s > 0
            assert long_s == pytest.approx(0.2, rel=0.5)

            # A decode running beside a long prompt is slowed by it (they share the steps).
            async def decode() -> Any:
                return await client.generate("m", "hi", options={"num_predict": 6})

            async with anyio.create_task_group() as tg:
                tg.start_soon(client.generate, "m", long_prompt)
                beside: list[Any] = []

                async def run() -> None:
                    while sim.stats("m").in_flight < 1:  # noqa: ASYNC110 - the long prompt has started
                        await anyio.sleep(0.002)
                    beside.append(await decode())

                tg.start_soon(run)
    assert per_token_s(beside[0]) > 1.2 * per_token_s(short)


async def test_queue_time_stays_exact_under_contention() -> None:
    # Twelve at once on four slots: the server's durations still tell queueing from work.
    spec = ModelSpec.from_profile("cpu", "m", token_ms=3, tokens=8)
    with Simulator([spec]) as sim:
        async with AsyncClient(sim.url, concurrency=12) as client:
            replies = await together(client, "m", 12)
    waits = sorted(float(r.queue_duration) / 1e9 for r in replies)
    work = sorted(float(r.prompt_eval_duration + r.eval_duration) / 1e9 for r in replies)
    assert max(waits[:4]) < 0.2 * work[0]  # the first four found slots
    assert min(waits[4:]) > 0.5 * work[0]  # the others waited about a whole request or two


async def test_embeddings_of_a_batched_model_share_the_steps() -> None:
    spec = ModelSpec.from_profile("cpu", "m", embed_ms=10, capabilities=("completion", "embedding"))
    with Simulator([spec]) as sim:
        async with AsyncClient(sim.url, concurrency=4) as client:
            alone = total_s(await client.embed("m", ["a", "b"]))
            replies: list[Any] = []

            async def one(i: int) -> None:
                replies.append(await client.embed("m", [f"a{i}", f"b{i}"]))

            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(one, i)
    four = sum(total_s(r) for r in replies) / 4
    # 4 at once take ~2.2x one each (not 1x as independent slots, not 4x as one slot).
    assert 1.5 * alone < four < 3.2 * alone
