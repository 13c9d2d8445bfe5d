"""Several Ollama servers as one client: a batch spread by free slots, a server dying mid-way.

Runs against a simulated fleet of three servers (1, 2 and 4 slots); with real servers pass
their URLs instead: ``AsyncClient(host=["http://gpu1:11434", Host("http://gpu2:11434", concurrency=8)])``.
"""

from __future__ import annotations

import anyio
import anyio.to_thread

from ollama_async import AsyncClient, Host
from ollama_async.testing import Fleet, ModelSpec


async def main() -> None:
    fleet = Fleet([[ModelSpec("llama3.2", slots=s, token_ms=2, tokens=8)] for s in (1, 2, 4)])
    async with fleet:
        hosts = [Host(url, concurrency=s) for url, s in zip(fleet.urls, (1, 2, 4), strict=True)]
        async with AsyncClient(host=hosts) as client:
            done = 0
            async with anyio.create_task_group() as tg:

                async def kill_one() -> None:
                    while done < 100:  # noqa: ASYNC110 - waits for the batch to get going
                        await anyio.sleep(0.01)
                    await anyio.to_thread.run_sync(fleet.stop, 2)  # the biggest server dies

                tg.start_soon(kill_one)
                async for item in client.batch.generate("llama3.2", [f"prompt {i}" for i in range(400)]):
                    assert item.error is None  # its requests went to the other two
                    done += 1
            print(f"400 prompts, {done} answers, none lost")
            for h in client.hosts:
                print(f"  {h.url}: {h.state:8} served {h.requests:3}, errors {h.errors}")
            tags = await client.list()  # merged: each entry says which server has it
            print("models:", sorted({(m.model, m.host) for m in tags.models if m.host in fleet.urls[:2]}))

            # a conversation stays on one server (its prompt cache); pin a call with on_host
            chat = [{"role": "user", "content": "hello"}]
            reply = await client.chat("llama3.2", chat)
            print("chat:", reply.message.content)
            version = await client.on_host(fleet.urls[0]).version()
            print("version of the first server:", version.version)


if __name__ == "__main__":
    anyio.run(main)
