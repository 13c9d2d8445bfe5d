"""The OpenAI-compatible layer: openai-python's calls, on this client's pool, slots and retries."""

from __future__ import annotations

import anyio
from _common import EMBED_MODEL, GENERATE_MODEL, server

from ollama_async import AsyncClient


async def main(host: str) -> None:
    async with AsyncClient(host) as client:
        oai = client.openai  # what you would have called AsyncOpenAI(base_url=.../v1)
        reply = await oai.chat.completions.create(
            model=GENERATE_MODEL, messages=[{"role": "user", "content": "Why is the sky blue?"}])
        print("chat:", reply.choices[0].message.content, f"({reply.usage.total_tokens} tokens)")

        print("stream: ", end="")
        stream = await oai.chat.completions.create(
            model=GENERATE_MODEL, messages=[{"role": "user", "content": "Count"}], stream=True,
            stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.choices:
                print(chunk.choices[0].delta.content or "", end="", flush=True)
        print()

        vectors = (await oai.embeddings.create(model=EMBED_MODEL, input=["first", "second"],
                                               encoding_format="base64")).vectors()
        print("embeddings:", vectors.shape, vectors.dtype)  # one float32 matrix, decoded from base64

        print("models:", [m.id async for m in oai.models.list()])
        answer = await oai.responses.create(model=GENERATE_MODEL, input="Say hello")
        print("responses:", answer.output_text)
        # /v1 and native calls to one model share its slots: the limiter saw both.
        await client.chat(GENERATE_MODEL, [{"role": "user", "content": "native too"}])
        print("in flight at most:", {m: s.max_in_flight for m, s in client.limits.stats().items()})


if __name__ == "__main__":
    with server() as url:
        anyio.run(main, url)
