"""The clients the benchmarks compare, behind one small interface.

Every adapter does the same three things the way a user of that client would:

* ``generate()``: one non-streamed ``/api/generate``, decoded (typed response, or a dict from
  orjson for the raw clients);
* ``stream()``: one streamed ``/api/generate``, every NDJSON line decoded; returns the count;
* ``embed()``: one ``/api/embed`` of a list of texts, ending in a float32 numpy array.

The raw clients (httpx, aiohttp) decode with orjson and validate nothing: they are the floor a
Python client can reach with that HTTP stack, not a feature-equal alternative.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

GEN_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class Adapter(abc.ABC):
    """One client under test; subclasses say how it makes each of the three calls."""

    name = ""

    def __init__(self, url: str, concurrency: int) -> None:
        self.url = url
        self.concurrency = concurrency

    async def start(self) -> None:  # noqa: B027 - optional hook: most clients need no set-up
        """Create the client (inside the running event loop)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the client's connections."""

    @abc.abstractmethod
    async def generate(self, model: str, prompt: str) -> Any: ...

    @abc.abstractmethod
    async def stream(self, model: str, prompt: str) -> int: ...

    @abc.abstractmethod
    async def embed(self, model: str, texts: Sequence[str]) -> np.ndarray: ...


class OllamaStyle(Adapter):
    """The calls as a user of the ``ollama`` API writes them: the same code drives the official
    client and ours (drop-in), only the client object differs."""

    client: Any

    async def generate(self, model: str, prompt: str) -> Any:
        return await self.client.generate(model, prompt)

    async def stream(self, model: str, prompt: str) -> int:
        n = 0
        async for _part in await self.client.generate(model, prompt, stream=True):
            n += 1
        return n

    async def embed(self, model: str, texts: Sequence[str]) -> np.ndarray:
        response = await self.client.embed(model, list(texts))
        return np.asarray(response.embeddings, dtype=np.float32)


class OllamaAsync(OllamaStyle):
    """``ollama_async.AsyncClient`` with ``concurrency=`` set to the benchmark's concurrency."""

    name = "ollama_async"
    transport: str | None = None  # "httpx" forces the httpx path (OLLAMA_ASYNC_TRANSPORT)
    adaptive = False  # True: the default (adaptive) in-flight limit instead of concurrency=N

    async def start(self) -> None:
        import ollama_async

        old = os.environ.get("OLLAMA_ASYNC_TRANSPORT")
        if self.transport:
            os.environ["OLLAMA_ASYNC_TRANSPORT"] = self.transport
        try:
            kwargs: dict[str, Any] = {} if self.adaptive else {"concurrency": self.concurrency}
            self.client = ollama_async.AsyncClient(self.url, **kwargs)
        finally:
            if old is None:
                os.environ.pop("OLLAMA_ASYNC_TRANSPORT", None)
            else:
                os.environ["OLLAMA_ASYNC_TRANSPORT"] = old

    async def close(self) -> None:
        await self.client.aclose()


class OllamaAsyncHttpx(OllamaAsync):
    """The same client with its own HTTP pool switched off: every request through httpx."""

    name = "ollama_async[httpx]"
    transport = "httpx"


class OllamaAsyncAdaptive(OllamaAsync):
    """The same client with its default, adaptive in-flight limit."""

    name = "ollama_async[adaptive]"
    adaptive = True


class Official(OllamaStyle):
    """The official ``ollama.AsyncClient`` (httpx underneath), used as its README shows."""

    name = "ollama"

    async def start(self) -> None:
        import ollama

        self.client = ollama.AsyncClient(self.url)

    async def close(self) -> None:
        await self.client._client.aclose()


class RawHttpx(Adapter):
    """``httpx.AsyncClient`` with a pool as large as ours, orjson in and out."""

    name = "httpx"

    async def start(self) -> None:
        import httpx

        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        self.client = httpx.AsyncClient(base_url=self.url, limits=limits, timeout=None, headers=GEN_HEADERS)

    async def close(self) -> None:
        await self.client.aclose()

    async def generate(self, model: str, prompt: str) -> Any:
        body = orjson.dumps({"model": model, "prompt": prompt, "stream": False})
        response = await self.client.post("/api/generate", content=body)
        response.raise_for_status()
        return orjson.loads(response.content)

    async def stream(self, model: str, prompt: str) -> int:
        n = 0
        body = orjson.dumps({"model": model, "prompt": prompt})
        async with self.client.stream("POST", "/api/generate", content=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line:
                    orjson.loads(line)
                    n += 1
        return n

    async def embed(self, model: str, texts: Sequence[str]) -> np.ndarray:
        response = await self.client.post("/api/embed", content=orjson.dumps({"model": model, "input": list(texts)}))
        response.raise_for_status()
        return np.asarray(orjson.loads(response.content)["embeddings"], dtype=np.float32)


class RawAiohttp(Adapter):
    """``aiohttp.ClientSession`` with a 100-connection pool, orjson in and out."""

    name = "aiohttp"

    async def start(self) -> None:
        import aiohttp

        self.client = aiohttp.ClientSession(
            self.url, connector=aiohttp.TCPConnector(limit=100), headers=GEN_HEADERS,
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def close(self) -> None:
        await self.client.close()

    async def generate(self, model: str, prompt: str) -> Any:
        body = orjson.dumps({"model": model, "prompt": prompt, "stream": False})
        async with self.client.post("/api/generate", data=body) as response:
            response.raise_for_status()
            return orjson.loads(await response.read())

    async def stream(self, model: str, prompt: str) -> int:
        n = 0
        body = orjson.dumps({"model": model, "prompt": prompt})
        async with self.client.post("/api/generate", data=body) as response:
            response.raise_for_status()
            async for line in response.content:
                if line.strip():
                    orjson.loads(line)
                    n += 1
        return n

    async def embed(self, model: str, texts: Sequence[str]) -> np.ndarray:
        body = orjson.dumps({"model": model, "input": list(texts)})
        async with self.client.post("/api/embed", data=body) as response:
            response.raise_for_status()
            return np.asarray(orjson.loads(await response.read())["embeddings"], dtype=np.float32)


#: The four clients every scenario compares, in table order.
MAIN: list[type[Adapter]] = [OllamaAsync, Official, RawHttpx, RawAiohttp]
#: Extra rows for the non-streamed generate scenario.
VARIANTS: list[type[Adapter]] = [OllamaAsyncHttpx, OllamaAsyncAdaptive]
