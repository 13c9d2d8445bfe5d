"""Tool calling with plain Python functions: their signature becomes the tool's JSON schema."""

from __future__ import annotations

from typing import Literal

import anyio
from _common import GENERATE_MODEL, server

from ollama_async import AsyncClient


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """Get the current weather for a city.

    Args:
      city: The city to look up
      unit: The temperature unit
    """
    return f"22 degrees {unit} and sunny in {city}"


async def main(host: str) -> None:
    async with AsyncClient(host) as client:
        messages: list[dict[str, object]] = [{"role": "user", "content": "What is the weather in Paris? Use get_weather."}]
        reply = await client.chat(GENERATE_MODEL, messages, tools=[get_weather])
        for call in reply.message.tool_calls or []:
            result = get_weather(**call.function.arguments)
            print(f"tool call: {call.function.name}({dict(call.function.arguments)}) -> {result}")
            messages += [reply.message.model_dump(exclude_none=True),
                         {"role": "tool", "content": result, "tool_name": call.function.name}]
        final = await client.chat(GENERATE_MODEL, messages)
        print("answer:", final.message.content)


if __name__ == "__main__":
    with server() as url:
        anyio.run(main, url)
