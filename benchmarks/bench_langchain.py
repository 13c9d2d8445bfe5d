"""What the LangChain layer costs over the plain client, against the simulator in its own process.

Run: ``python benchmarks/bench_langchain.py`` (about 30 s; ``--quick`` for a smaller run).
Writes ``benchmarks/results/langchain.json`` and prints a table. Figures are ratios measured in
the same run (LangChain path / plain ``AsyncClient`` path), so they mean the same on any machine:

- calls/s of ``ChatOllamaAsync.ainvoke`` vs ``client.chat`` at concurrency 32 (instant model);
- calls/s of sync ``invoke`` (a hop to the loop thread) vs ``ainvoke``, one at a time;
- stream chunks/s of ``astream`` vs iterating ``client.chat(stream=True)``;
- texts/s of ``aembed_documents`` vs ``client.batch.embed`` (768-dim vectors).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_batch import Sim  # noqa: E402

from ollama_async import AsyncClient  # noqa: E402
from ollama_async.langchain import ChatOllamaAsync, OllamaAsyncEmbeddings  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "langchain.json"
GEN, LONG, EMB = "llama3.2", "long", "nomic-embed-text"
MESSAGES = [{"role": "user", "content": "Hello"}]


async def rate(n: int, concurrency: int, call: Callable[[], Awaitable[Any]]) -> float:
    """Calls per second for ``n`` calls, ``concurrency`` at a time."""
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - start)


async def measure(url: str, n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    async with AsyncClient(url, concurrency=64) as client:
        llm = ChatOllamaAsync(model=GEN, client=client)
        await client.chat(GEN, MESSAGES)
        out["chat_client"] = await rate(n, 32, lambda: client.chat(GEN, MESSAGES))
        out["chat_langchain"] = await rate(n, 32, lambda: llm.ainvoke("Hello"))
        out["ainvoke_serial"] = await rate(n // 4, 1, lambda: llm.ainvoke("Hello"))

        async def client_stream() -> None:
            async for _ in await client.chat(LONG, MESSAGES, stream=True):
                pass

        long_llm = ChatOllamaAsync(model=LONG, client=client)

        async def lc_stream() -> None:
            async for _ in long_llm.astream("Hello"):
                pass

        chunks = 200
        out["stream_client"] = chunks * await rate(n // 20, 8, client_stream)
        out["stream_langchain"] = chunks * await rate(n // 20, 8, lc_stream)
        texts = [f"text number {i}" for i in range(n)]
        emb = OllamaAsyncEmbeddings(model=EMB, client=client)
        await client.batch.embed(EMB, texts[:64])  # load the model
        start = time.perf_counter()
        await client.batch.embed(EMB, texts)
        out["embed_client"] = n / (time.perf_counter() - start)
        start = time.perf_counter()
        await emb.aembed_documents(texts)
        out["embed_langchain"] = n / (time.perf_counter() - start)
    sync_llm = ChatOllamaAsync(model=GEN, base_url=url)
    loop = asyncio.get_running_loop()

    def sync_calls() -> float:
        sync_llm.invoke("warm up")
        start = time.perf_counter()
        for _ in range(n // 4):
            sync_llm.invoke("Hello")
        return (n // 4) / (time.perf_counter() - start)

    out["invoke_sync_serial"] = await loop.run_in_executor(None, sync_calls)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 400 if args.quick else 2000
    models = [f"{GEN}:slots=64,tokens=4", f"{LONG}:slots=8,tokens=200", f"{EMB}:kind=embed,dim=768"]
    with Sim(*models) as sim:
        rates = asyncio.run(measure(sim.url, n))
    ratios = {
        "ainvoke_vs_client_chat": rates["chat_langchain"] / rates["chat_client"],
        "sync_invoke_vs_ainvoke": rates["invoke_sync_serial"] / rates["ainvoke_serial"],
        "astream_vs_client_stream": rates["stream_langchain"] / rates["stream_client"],
        "aembed_documents_vs_batch_embed": rates["embed_langchain"] / rates["embed_client"],
    }
    doc = {"command": " ".join(sys.argv), "python": platform.python_version(), "n": n,
           "rates_per_s": rates, "ratios": ratios}
    if not args.quick:
        RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print("| measure | per second |\n|---|---:|")
    for key, value in rates.items():
        print(f"| {key} | {value:,.0f} |")
    print("\n| ratio | value |\n|---|---:|")
    for key, value in ratios.items():
        print(f"| {key} | {value:.2f} |")


if __name__ == "__main__":
    main()
