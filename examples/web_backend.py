"""Many concurrent handlers sharing one client, as in an asyncio web backend.

Every handler calls ``client.chat`` on its own; the client's per-model limiter keeps the requests
in flight at the server's slot count, so the queue stays in the client (where it is measured)
instead of piling up, invisible, in the server. A handler that gives up (a timeout here)
releases its connection and its server slot at once.
"""

from __future__ import annotations

import anyio
from _common import GENERATE_MODEL, server

from ollama_async import AsyncClient, OllamaError


async def handle_request(client: AsyncClient, user: int, answers: list[str]) -> None:
    """What a web handler would do for one user: a short chat, with its own deadline."""
    with anyio.move_on_after(10):
        try:
            reply = await client.chat(GENERATE_MODEL, [{"role": "user", "content": f"Hello from user {user}"}])
        except OllamaError as exc:  # typed, and says which request failed
            answers.append(f"error: {exc}")
            return
        answers.append(reply.message.content or "")


async def main(host: str) -> None:
    answers: list[str] = []
    async with AsyncClient(host, concurrency=4) as client:  # or OLLAMA_NUM_PARALLEL, or adaptive
        async with anyio.create_task_group() as tg:
            for user in range(100):
                tg.start_soon(handle_request, client, user, answers)
        stats = client.limits.stats()
    print(f"{len(answers)} users answered")
    for model, s in stats.items():
        print(f"{model}: at most {s.max_in_flight} requests in flight (limit {s.limit}); "
              f"mean wait for a slot in the client {s.wait_mean * 1000:.1f} ms")


if __name__ == "__main__":
    with server() as url:
        anyio.run(main, url)
