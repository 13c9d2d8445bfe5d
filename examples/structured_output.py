"""Structured output: pass a pydantic model as ``format`` and parse the reply back into it."""

from __future__ import annotations

import anyio
from _common import GENERATE_MODEL, server
from pydantic import BaseModel

from ollama_async import AsyncClient, StructuredOutputError


class City(BaseModel):
    name: str
    country: str
    population: int


async def main(host: str) -> None:
    async with AsyncClient(host) as client:
        reply = await client.chat(
            GENERATE_MODEL, [{"role": "user", "content": "Describe Paris as JSON."}], format=City,
            options={"temperature": 0},
        )
        try:
            city = reply.parse()  # a City instance, validated
        except StructuredOutputError as exc:
            print("the model's output did not validate:", exc)
            return
        print(type(city).__name__, city.model_dump())


if __name__ == "__main__":
    with server() as url:
        anyio.run(main, url)
