"""Async callable classes for ``Dataset.map_batches``: embed, generate and chat on a fleet.

Ray Data builds one instance per actor and calls it with a batch at a time (several batches at
once: the UDF is async). Each instance keeps one pooled :class:`~ollama_async.AsyncClient` per
host, made on first use on the actor's event loop. Every request first takes a *grant* from the
job's slot broker (``_broker.py``, or the actor's own share in the split mode), which says which
host to send it to and holds the bound across every actor; the grant goes back with the outcome.

Failures are per row: a row that fails gets its error (``"Type: message"``) in the error column
and the job goes on. A host that cannot be reached is not a row failure: the grant is given back
as ``"down"`` (the broker stops granting that host until it answers again) and the row goes to
another host, until ``failover_timeout`` seconds after its first such failure. A 503 goes again
after a backoff. Rows are never doubled: each batch's output is built once, from one result
per row, and Ray Data discards the partial work of an actor that dies (the batch is redone).
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from .. import _payloads as P
from .._client import AsyncClient
from .._errors import OllamaConnectionError, OllamaTimeoutError, RequestError, ServerBusyError
from .._format import normalize_format
from .._transport import DEFAULT_TIMEOUT, RetryPolicy, TimeoutInput
from ..batch import BUSY_REQUEUES
from ._columns import column, inferred, ints, strings, vector_column, with_columns
from ._config import HostsInput, JobSlots, SlotsInput
from ._grants import BrokerSlots, LocalSlots, Slots
from ._slots import SlotTable, split_bounds

__all__ = ["METRIC_COLUMNS", "OllamaChat", "OllamaEmbed", "OllamaGenerate"]

T = TypeVar("T")

#: The server's metrics of a generate/chat reply, one int64 column each (ns, counts), plus the
#: time the request waited for a slot inside the server (derived: see ``queue_duration``).
METRIC_COLUMNS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
                  "eval_duration", "queue_duration")

#: The per-host clients never bound a request themselves: the grants do.
_UNBOUNDED = 1 << 16


def _host_down(exc: BaseException) -> bool:
    """The host is unreachable (refused, reset, gone mid-reply, connect timeout): fail over."""
    return isinstance(exc, OllamaConnectionError) or (isinstance(exc, OllamaTimeoutError) and exc.phase == "connect")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class _Stage:
    """What the three classes share: settings, the actor's clients and slots, grants per request."""

    _kind = "stage"

    def __init__(
        self, hosts: HostsInput, model: str, *, input_column: str, output_column: str, error_column: str,
        slots: SlotsInput, margin: int, share: str, actors: int | None, max_concurrency: int,
        failover_timeout: float, timeout: TimeoutInput, job: str | None, broker: Any,
    ) -> None:
        self._job = JobSlots.make(hosts, model, slots=slots, margin=margin, max_concurrency=max_concurrency,
                                  share=share, actors=actors, job=job)
        for field, name in (("input_column", input_column), ("output_column", output_column),
                            ("error_column", error_column)):
            if not isinstance(name, str) or not name:
                raise RequestError(f"must be a non-empty string, not {name!r}", field=field)
        if isinstance(failover_timeout, bool) or not isinstance(failover_timeout, (int, float)) or failover_timeout < 0:
            raise RequestError(f"must be a number of seconds >= 0, not {failover_timeout!r}", field="failover_timeout")
        self.model = model
        self.input_column = input_column
        self.output_column = output_column
        self.error_column = error_column
        self._failover_timeout = float(failover_timeout)
        self._timeout = timeout
        self._broker = broker
        self._clients: list[AsyncClient] | None = None
        self._slots: Slots | None = None
        self._ready: asyncio.Lock | None = None

    @property
    def hosts(self) -> tuple[str, ...]:
        return self._job.hosts

    async def _setup(self) -> tuple[list[AsyncClient], Slots]:
        """The actor's clients and slots, made once on the actor's event loop."""
        if self._clients is not None and self._slots is not None:
            return self._clients, self._slots
        if self._ready is None:
            self._ready = asyncio.Lock()
        async with self._ready:
            if self._clients is None or self._slots is None:
                job = self._job
                self._clients = [
                    AsyncClient(host, concurrency={job.model: _UNBOUNDED}, max_retries=0, timeout=self._timeout)
                    for host in job.hosts
                ]
                if job.share == "split":
                    bounds, _ = split_bounds(job.slots, job.margin, job.actors or 1)
                    self._slots = LocalSlots(SlotTable(job.hosts, bounds, max_concurrency=job.max_concurrency))
                else:
                    from ._broker import broker_for

                    self._slots = BrokerSlots(self._broker if self._broker is not None else broker_for(job))
        return self._clients, self._slots

    async def _granted(self, send: Callable[[AsyncClient], Awaitable[T]],
                       queue_of: Callable[[T], float | None] = lambda _: None) -> T:
        """Run ``send`` on the host of a grant; fail over while hosts are down, requeue 503s."""
        clients, slots = await self._setup()
        first_down: float | None = None
        busy = 0
        while True:
            grant = await slots.acquire()
            started = time.monotonic()
            try:
                result = await send(clients[grant.host])
            except ServerBusyError:
                slots.release(grant, "busy")
                busy += 1
                if busy > BUSY_REQUEUES:
                    raise
                await asyncio.sleep(_BACKOFF.delay(busy))
                continue
            except BaseException as exc:
                if not _host_down(exc):
                    slots.release(grant, "error")
                    raise
                slots.release(grant, "down")
                now = time.monotonic()
                first_down = now if first_down is None else first_down
                if now - first_down >= self._failover_timeout:
                    raise
                continue
            slots.release(grant, "ok", time.monotonic() - started, queue_of(result))
            return result

    async def _rows(self, values: list[Any], one: Callable[[Any], Awaitable[T]]) -> list[T | BaseException]:
        """``one`` for every row at once (the grants bound what is in flight); errors in place."""
        async def guarded(value: Any) -> T | BaseException:
            try:
                return await one(value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                return exc

        return list(await asyncio.gather(*(guarded(v) for v in values)))

    def _errors(self, outcomes: list[Any]) -> Any:
        return strings([_describe(o) if isinstance(o, BaseException) else None for o in outcomes])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} model={self.model!r} hosts={list(self.hosts)}>"


_BACKOFF = RetryPolicy()


def _check_kwargs(method: Callable[..., Any], kwargs: Mapping[str, Any], reserved: set[str], name: str) -> None:
    params = inspect.signature(method).parameters
    for key in kwargs:
        if key not in params or key in reserved:
            raise RequestError(f"not an argument {name} takes here", field=key)


class OllamaEmbed(_Stage):
    """``ds.map_batches(OllamaEmbed, fn_constructor_kwargs={...}, concurrency=N)``: embed a column.

    Adds ``output_column`` (default ``embedding``): float32 vectors, one fixed-size tensor column
    (NaN for a failed row), and ``error_column`` (``None``, or the row's error). Each request
    carries ``batch_size`` texts; one bad text (a 400) fails alone, not its whole request.

    Args:
        hosts: one host, a list, or a comma-separated string; default ``OLLAMA_HOST``.
        model: the embedding model.
        slots: each host's slots (an int, or ``{host: n}``); ``None`` or ``"auto"``: adaptive.
            The sum of what every actor sends one host never exceeds ``slots + margin``.
        margin: requests beyond the slots that may wait in a server (hides the round trip).
        share: ``"broker"`` (one actor of the job holds every host's slots; the default) or
            ``"split"`` (each of ``actors`` actors holds ``(slots + margin) // actors`` per host).
        failover_timeout: seconds a row keeps failing over while hosts are unreachable.
        job: a name that keeps two jobs with the same settings apart (default: the Ray job id).
    """

    _kind = "embed"

    def __init__(
        self, hosts: HostsInput = None, model: str = "", *, input_column: str = "text",
        output_column: str = "embedding", error_column: str = "error", batch_size: int = 64,
        dimensions: int | None = None, truncate: bool | None = None, options: Any = None,
        keep_alive: float | str | None = None, slots: SlotsInput = None, margin: int = 1, share: str = "broker",
        actors: int | None = None, max_concurrency: int = 64, failover_timeout: float = 300.0,
        timeout: TimeoutInput = DEFAULT_TIMEOUT, job: str | None = None, broker: Any = None,
    ) -> None:
        super().__init__(hosts, model, input_column=input_column, output_column=output_column,
                         error_column=error_column, slots=slots, margin=margin, share=share, actors=actors,
                         max_concurrency=max_concurrency, failover_timeout=failover_timeout, timeout=timeout,
                         job=job, broker=broker)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise RequestError(f"must be a positive int, not {batch_size!r}", field="batch_size")
        P.embed_body(model, [], truncate, options, keep_alive, dimensions)  # validates now
        self.batch_size = batch_size
        self._embed_kwargs: dict[str, Any] = {"dimensions": dimensions, "truncate": truncate, "options": options,
                                              "keep_alive": keep_alive}
        self._dim: int | None = dimensions

    async def __call__(self, batch: Any) -> Any:
        texts = column(batch, self.input_column)
        vectors: list[Any] = [None] * len(texts)
        errors: list[Any] = [None] * len(texts)
        chunks = [list(range(i, min(i + self.batch_size, len(texts)))) for i in range(0, len(texts), self.batch_size)]
        outcomes = await self._rows(chunks, lambda rows: self._embed_chunk([texts[i] for i in rows]))
        for rows, outcome in zip(chunks, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                for i in rows:
                    errors[i] = outcome
                continue
            matrix, failed = outcome
            for k, i in enumerate(rows):
                if k in failed:
                    errors[i] = failed[k]
                else:
                    vectors[i] = matrix[k]
        dim = next((len(v) for v in vectors if v is not None), self._dim or 0)
        self._dim = dim
        out = np.full((len(texts), dim), np.nan, dtype=np.float32)
        for i, vector in enumerate(vectors):
            if vector is not None:
                out[i] = vector
        return with_columns(batch, {self.output_column: vector_column(out), self.error_column: self._errors(errors)})

    async def _embed_chunk(self, texts: list[Any]) -> tuple[Any, dict[int, BaseException]]:
        model, kwargs = self.model, self._embed_kwargs

        async def send(client: AsyncClient) -> tuple[Any, dict[int, BaseException]]:
            # The batch engine: orjson straight into float32, a 400 split down to the bad texts,
            # a non-string row failing alone. A host failure fails the chunk, to go elsewhere.
            vectors, failed = await client.batch.embed(model, texts, batch_size=len(texts), concurrency=1, **kwargs)
            for exc in failed.values():
                if _host_down(exc) or isinstance(exc, ServerBusyError):
                    raise exc
            return vectors, failed

        return await self._granted(send)


def _queue_seconds(reply: Any) -> float | None:
    queue = getattr(reply, "queue_duration", None)
    return queue / 1e9 if isinstance(queue, int) else None


class _TextStage(_Stage, abc.ABC):
    """Generate and chat: a text column, ``done_reason``, the metrics, ``parsed`` with a format."""

    def __init__(self, hosts: HostsInput, model: str, *, metrics: bool, kwargs: dict[str, Any], **settings: Any) -> None:
        super().__init__(hosts, model, **settings)
        self._kwargs = kwargs
        self._format = kwargs.get("format")
        self._metrics = bool(metrics)
        P.options_value(kwargs.get("options"))
        P.keep_alive_value(kwargs.get("keep_alive"))
        normalize_format(self._format)
        if kwargs.get("stream"):
            raise RequestError("rows get whole responses; stream=True is not supported", field="stream")

    @abc.abstractmethod
    async def _call(self, client: AsyncClient, value: Any) -> Any:
        """Send the row's request (generate or chat) to ``client``."""

    async def __call__(self, batch: Any) -> Any:
        values = column(batch, self.input_column)
        outcomes = await self._rows(values, lambda v: self._granted(lambda c: self._call(c, v), _queue_seconds))
        texts: list[Any] = []
        thinking: list[Any] = []
        reasons: list[Any] = []
        parsed: list[Any] = []
        errors: list[Any] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                for values_ in (texts, thinking, reasons, parsed):
                    values_.append(None)
                errors.append(outcome)
                continue
            texts.append(outcome._text())
            thinking.append(self._thinking(outcome))
            reasons.append(outcome.done_reason)
            errors.append(None)
            if self._format is not None:
                try:
                    value = outcome.parse()
                    parsed.append(value.model_dump(mode="json") if hasattr(value, "model_dump") else value)
                except Exception as exc:  # the text is kept; the row says why it did not parse
                    parsed.append(None)
                    errors[-1] = exc
        new: dict[str, Any] = {self.output_column: strings(texts), "done_reason": strings(reasons)}
        if self._kwargs.get("think") is not None:
            new["thinking"] = strings(thinking)
        if self._format is not None:
            new["parsed"] = inferred(parsed)
        if self._metrics:
            for name in METRIC_COLUMNS:
                new[name] = ints([None if isinstance(o, BaseException) else getattr(o, name) for o in outcomes])
        new[self.error_column] = self._errors(errors)
        return with_columns(batch, new)

    @staticmethod
    def _thinking(reply: Any) -> Any:
        message = getattr(reply, "message", None)
        return message.thinking if message is not None else getattr(reply, "thinking", None)


class OllamaGenerate(_TextStage):
    """``ds.map_batches(OllamaGenerate, fn_constructor_kwargs={...}, concurrency=N)``: complete a
    prompt column.

    Adds ``output_column`` (default ``response``), ``done_reason``, the server's metrics
    (``METRIC_COLUMNS``, int64; ``metrics=False`` leaves them out), ``thinking`` when ``think``
    is given, ``parsed`` when ``format`` is given (``"json"``, a JSON schema or a pydantic model:
    the parsed value, a dict) and ``error_column``. Any other keyword argument of
    :meth:`AsyncClient.generate` (``system``, ``options``, ``format``, ``think``, ``raw``, ...)
    applies to every row. Hosts, slots, margin, share and failover: as :class:`OllamaEmbed`.
    """

    _kind = "generate"

    def __init__(
        self, hosts: HostsInput = None, model: str = "", *, input_column: str = "prompt",
        output_column: str = "response", error_column: str = "error", metrics: bool = True,
        slots: SlotsInput = None, margin: int = 1, share: str = "broker", actors: int | None = None,
        max_concurrency: int = 64, failover_timeout: float = 300.0, timeout: TimeoutInput = DEFAULT_TIMEOUT,
        job: str | None = None, broker: Any = None, **generate_kwargs: Any,
    ) -> None:
        _check_kwargs(AsyncClient.generate, generate_kwargs, {"model", "prompt", "stream"}, "generate")
        super().__init__(hosts, model, metrics=metrics, kwargs=generate_kwargs, input_column=input_column,
                         output_column=output_column, error_column=error_column, slots=slots, margin=margin,
                         share=share, actors=actors, max_concurrency=max_concurrency,
                         failover_timeout=failover_timeout, timeout=timeout, job=job, broker=broker)

    async def _call(self, client: AsyncClient, value: Any) -> Any:
        if not isinstance(value, str):
            raise RequestError(f"must be a string, not {type(value).__name__}", field=self.input_column)
        return await client.generate(self.model, value, **self._kwargs)


class OllamaChat(_TextStage):
    """``ds.map_batches(OllamaChat, fn_constructor_kwargs={...}, concurrency=N)``: answer a column
    of conversations (each a list of ``{"role", "content"}`` messages, or a string: one user
    message). Columns as :class:`OllamaGenerate` (the text is the reply's ``message.content``);
    other keyword arguments of :meth:`AsyncClient.chat` (``tools``, ``options``, ``format``,
    ``think``, ...) apply to every row.
    """

    _kind = "chat"

    def __init__(
        self, hosts: HostsInput = None, model: str = "", *, input_column: str = "messages",
        output_column: str = "response", error_column: str = "error", metrics: bool = True,
        slots: SlotsInput = None, margin: int = 1, share: str = "broker", actors: int | None = None,
        max_concurrency: int = 64, failover_timeout: float = 300.0, timeout: TimeoutInput = DEFAULT_TIMEOUT,
        job: str | None = None, broker: Any = None, **chat_kwargs: Any,
    ) -> None:
        _check_kwargs(AsyncClient.chat, chat_kwargs, {"model", "messages", "stream"}, "chat")
        super().__init__(hosts, model, metrics=metrics, kwargs=chat_kwargs, input_column=input_column,
                         output_column=output_column, error_column=error_column, slots=slots, margin=margin,
                         share=share, actors=actors, max_concurrency=max_concurrency,
                         failover_timeout=failover_timeout, timeout=timeout, job=job, broker=broker)

    async def _call(self, client: AsyncClient, value: Any) -> Any:
        messages = [{"role": "user", "content": value}] if isinstance(value, str) else value
        return await client.chat(self.model, messages, **self._kwargs)
