"""LangChain on one shared AsyncClient: a chain, a bounded abatch, tools, structured output, embeddings.

Needs the extra: ``pip install 'ollama-async[langchain]'``.
"""

from __future__ import annotations

import asyncio

from _common import EMBED_MODEL, GENERATE_MODEL, server
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from pydantic import BaseModel

from ollama_async import AsyncClient
from ollama_async.langchain import ChatOllamaAsync, OllamaAsyncEmbeddings


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"sunny in {city}"


class City(BaseModel):
    name: str
    country: str


async def main(host: str) -> None:
    # One client: one connection pool and one in-flight bound per model for every chain below.
    async with AsyncClient(host, concurrency=2) as client:
        llm = ChatOllamaAsync(model=GENERATE_MODEL, client=client, temperature=0)
        chain = ChatPromptTemplate.from_template("One sentence about {topic}.") | llm | StrOutputParser()
        print("chain:", await chain.ainvoke({"topic": "the sea"}))

        answers = await chain.abatch([{"topic": t} for t in ("rivers", "lakes", "rain", "snow", "ice", "fog")])
        stats = client.limits.stats()[f"{GENERATE_MODEL}:latest"]
        print(f"abatch: {len(answers)} answers, at most {stats.max_in_flight} in flight (bound 2)")

        reply = await llm.bind_tools([get_weather]).ainvoke("What is the weather in 'Lisbon'?")
        for call in reply.tool_calls:
            print(f"tool call: {call['name']}({call['args']}) -> {get_weather.invoke(call['args'])}")

        city = await llm.with_structured_output(City).ainvoke("Name a city.")
        print("structured:", repr(city))

        embeddings = OllamaAsyncEmbeddings(model=EMBED_MODEL, client=client)
        vectors = await embeddings.aembed_documents(["a first text", "a second one", "a third"])
        print(f"embeddings: {len(vectors)} vectors of {len(vectors[0])} floats")

    # Sync calls work too (outside any event loop): they run on a loop thread the package owns.
    sync_llm = ChatOllamaAsync(model=GENERATE_MODEL, base_url=host)
    print("sync invoke:", sync_llm.invoke("Hello").content)


if __name__ == "__main__":
    with server() as url:
        asyncio.run(main(url))
