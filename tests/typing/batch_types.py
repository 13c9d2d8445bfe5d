"""Checked by mypy in ``tests/test_usability.py``: what ``await client.batch.<kind>(...)`` gives."""

from __future__ import annotations

from typing_extensions import assert_type

from ollama_async import AsyncClient, ChatResponse, GenerateResponse
from ollama_async.batch import BatchItem, EmbedResults


async def check(client: AsyncClient) -> None:
    generated = await client.batch.generate("llama3.2", ["a", "b"])
    assert_type(generated, list[GenerateResponse | BaseException])
    chatted = await client.batch.chat("llama3.2", [[{"role": "user", "content": "hi"}]])
    assert_type(chatted, list[ChatResponse | BaseException])
    embedded = await client.batch.embed("nomic-embed-text", ["a", "b"])
    assert_type(embedded, EmbedResults)
    assert_type(embedded.errors, dict[int, BaseException])
    async for item in client.batch.generate("llama3.2", ["a"]):
        assert_type(item, BatchItem[GenerateResponse])
