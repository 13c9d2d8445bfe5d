"""Which :class:`~ollama_async.AsyncClient` a LangChain call uses, and how sync calls run.

An ``AsyncClient`` owns connections that belong to one event loop. LangChain calls a model's
async methods (``ainvoke``, ``astream``, ``aembed_documents``) inside the caller's loop and its
sync ones (``invoke``, ``stream``, ``embed_documents``, ``batch``'s worker threads) outside any
loop. So:

- **async calls** run on the caller's loop, with the client given to the model (``client=``, to
  share one pool and one per-model limiter between many chains and the rest of the application)
  or, without one, a client the model creates for that loop;
- **sync calls** run as coroutines on a loop in another thread, and block until they finish: the
  loop of the given client when it is running in another thread (so sync and async callers share
  its limits), else one daemon thread per process with its own loop (:class:`LoopThread`),
  started on first use, on which the model keeps its own client. A sync call from inside the
  client's own loop would deadlock; it raises a clear error instead.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

from .._client import AsyncClient
from .._errors import EventLoopError

__all__ = ["ClientSource", "LoopThread"]

T = TypeVar("T")

_ITEM, _END, _ERROR = 0, 1, 2


class LoopThread:
    """One daemon thread running an asyncio loop for the sync methods of every model."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The thread's loop (the thread starts on first use)."""
        loop = self._loop
        if loop is not None:
            return loop
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                threading.Thread(target=main, name="ollama-async-langchain", daemon=True).start()
                ready.wait()
                self._loop = loop
            return self._loop


#: The process's loop thread for sync calls (models without a running client loop share it).
LOOP_THREAD = LoopThread()


def run_on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on ``loop`` (another thread's) and wait; interrupting the wait cancels it."""
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise


class ClientSource:
    """The client for each call of one model: the one it was given, or one per event loop."""

    def __init__(
        self, client: AsyncClient | None, factory: Callable[[], AsyncClient], owner: AsyncClient | None = None
    ) -> None:
        self.client = client
        # The client ``client`` is a ``with_options`` view of (views share its pool and loop).
        self._owner = owner or client
        self._factory = factory
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def current(self) -> AsyncClient:
        """The client for the running loop (call from inside it)."""
        if self.client is not None:
            return self.client
        loop = asyncio.get_running_loop()
        client = self._per_loop.get(loop)
        if client is None:
            client = self._per_loop[loop] = self._factory()
        return client

    async def aclose(self) -> None:
        """Close the client made for the running loop (never a client given to the model)."""
        client = self._per_loop.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def close(self) -> None:
        """Close the client made for sync calls on the loop thread (never a given client)."""
        loop = LOOP_THREAD._loop
        if self.client is None and loop is not None and loop in self._per_loop:
            run_on(loop, self.aclose())

    def _sync_loop(self) -> asyncio.AbstractEventLoop:
        """The loop a sync call runs on: the given client's when it runs in another thread."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        target = LOOP_THREAD.loop
        for client in (self.client, self._owner):
            bound = client._transport._loop if client is not None else None
            if isinstance(bound, asyncio.AbstractEventLoop) and bound.is_running():
                target = bound
        if target is running:
            raise EventLoopError(
                "a sync call (invoke/stream/embed_documents) was made from inside the event loop its "
                "AsyncClient belongs to, where it would block that loop forever; use the async method "
                "(ainvoke/astream/aembed_documents) there"
            )
        return target

    def run(self, call: Callable[[AsyncClient], Coroutine[Any, Any, T]]) -> T:
        """Run ``call(client)`` from sync code and return its result."""
        loop = self._sync_loop()

        async def main() -> T:
            return await call(self.current())

        return run_on(loop, main())

    def iterate(self, make: Callable[[AsyncClient], AsyncIterator[T]]) -> Iterator[T]:
        """Iterate ``make(client)`` from sync code.

        One task on the loop reads the stream and hands each item over through a thread-safe
        queue (no loop round trip per item: a third of the CPU per chunk of asking the loop for
        each one); the reply is read ahead of a slow consumer, one message's worth at most.
        Leaving early cancels the task and waits until it has closed the stream.
        """
        loop = self._sync_loop()
        items: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        finished = threading.Event()
        task: list[asyncio.Task[None] | None] = [None]  # set on the loop; read there only
        abandoned = [False]

        async def produce() -> None:
            try:
                if abandoned[0]:
                    return
                task[0] = asyncio.current_task()
                async for item in make(self.current()):
                    items.put((_ITEM, item))
            except Exception as exc:
                items.put((_ERROR, exc))
            else:
                items.put((_END, None))
            finally:
                finished.set()

        def abandon() -> None:  # on the loop: before produce starts, or cancelling it
            abandoned[0] = True
            if task[0] is not None:
                task[0].cancel()

        asyncio.run_coroutine_threadsafe(produce(), loop)
        try:
            while True:
                kind, value = items.get()
                if kind == _ITEM:
                    yield value
                elif kind == _END:
                    return
                else:
                    raise value
        finally:
            if not finished.is_set():
                loop.call_soon_threadsafe(abandon)
                while not finished.wait(0.5) and loop.is_running():
                    pass  # the stream closes as the task unwinds; a stopped loop cannot finish it
