"""A tour of the everyday calls: generate, chat, stream, embed, list, show, ps."""

from __future__ import annotations

import anyio
from _common import EMBED_MODEL, GENERATE_MODEL, server

from ollama_async import AsyncClient


async def main(host: str) -> None:
    async with AsyncClient(host) as client:
        print("server version:", (await client.version()).version)

        reply = await client.generate(GENERATE_MODEL, "Why is the sky blue?")
        print("generate:", reply.response, f"({reply.eval_count} tokens)")

        chat = await client.chat(GENERATE_MODEL, [{"role": "user", "content": "Say hello"}])
        print("chat:", chat["message"]["content"])  # the official client's dict-style access works too

        print("stream: ", end="")
        async for part in await client.chat(GENERATE_MODEL, [{"role": "user", "content": "Count"}], stream=True):
            print(part.message.content, end="", flush=True)
        print()

        vectors = await client.embed(EMBED_MODEL, ["first text", "second text"])
        print("embed:", len(vectors.embeddings), "vectors of", len(vectors.embeddings[0]), "dims")

        print("models:", [m.model for m in (await client.list()).models])
        print("loaded:", [m.model for m in (await client.ps()).models])
        print("capabilities:", (await client.show(GENERATE_MODEL)).capabilities)


if __name__ == "__main__":
    with server() as url:
        anyio.run(main, url)
