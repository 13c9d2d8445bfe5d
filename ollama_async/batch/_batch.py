"""``client.batch``: generate, chat and embed over any number of inputs.

Each method checks its arguments at once (a bad argument raises before anything is sent) and
returns a :class:`~ollama_async.batch.BatchRun` that sends nothing until awaited or iterated.

Failures are per item: an item that fails (after the client's own retries) carries its exception
and every other item goes on. Two failures get special handling:

- **503** (server busy) after the client's retries: the item is tried again, up to
  ``BUSY_REQUEUES`` times, after the model's gate (``_limits.py``) has been closed for the next
  backoff delay, so the whole batch slows down together and a burst of 503s ends with every
  item done;
- **400 on an embedding request** of several texts: one bad text (too long with
  ``truncate=False``, ...) fails the whole request, so the request is split in halves until the
  bad texts are isolated; they fail alone and the others succeed.

Bulk embeddings go through ``/v1/embeddings`` with ``encoding_format: "base64"`` whenever that
gives the same vectors (default truncation, no ``options`` or ``keep_alive``, numpy installed):
the reply is a quarter of the bytes and decodes without parsing a float (``openai/_decode.py``),
bit-identical to ``/api/embed``'s. A server that answers 404 there (no ``/v1`` layer: an old
server, a proxy that only forwards ``/api``) gets the request again on ``/api/embed``, and that
host is remembered and asked natively from then on.
"""

from __future__ import annotations

import itertools
import json
import weakref
from collections.abc import AsyncIterable, Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _payloads as P
from .._errors import RequestError, ResponseError, ServerBusyError
from .._log import batch_log
from .._transport import Transport
from .._types import ChatResponse, GenerateResponse
from ..openai._decode import b64_matrix
from ._run import FATAL, BatchItem, BatchRun, ProgressArg

if TYPE_CHECKING:
    from .._client import AsyncClient
    from .._routing import Router

try:  # optional extras: decode embeddings fast, and into one float32 matrix
    import numpy
except ImportError:  # pragma: no cover - exercised only without the extra
    numpy = None  # type: ignore[assignment]
try:
    import orjson

    _loads: Any = orjson.loads
except ImportError:  # pragma: no cover
    _loads = json.loads

__all__ = ["BUSY_REQUEUES", "Batch", "EmbedResults", "EmbedRun"]

R = TypeVar("R")

#: How often an item that still gets 503 after the client's retries is tried again.
BUSY_REQUEUES = 8

#: Statuses that mean "this request is bad": a multi-text embed request is split to find why.
_SPLIT_STATUSES = frozenset({400, 413})

Source = Iterable[Any] | AsyncIterable[Any]


class EmbedResults:
    """``await client.batch.embed(...)``: every vector in input order, and the failures.

    ``vectors`` is a float32 ``numpy`` array ``(n, dim)`` when numpy is installed (rows of failed
    texts are NaN), else a list of ``list[float] | None``. ``errors`` maps index to exception.
    """

    def __init__(self, vectors: Any, errors: dict[int, BaseException]) -> None:
        self.vectors = vectors
        self.errors = errors

    def __len__(self) -> int:
        return len(self.vectors)

    def __iter__(self) -> Any:
        return iter((self.vectors, self.errors))

    def __repr__(self) -> str:
        shape = getattr(self.vectors, "shape", (len(self.vectors),))
        return f"<EmbedResults vectors={tuple(shape)} errors={len(self.errors)}>"


class EmbedRun(BatchRun[Any]):
    """A batch of embeddings; ``await`` gives :class:`EmbedResults`, iteration one item per text."""

    def __await__(self) -> Generator[Any, None, EmbedResults]:  # type: ignore[override]
        # The one run whose awaited value is not a list of results (a matrix and the failures).
        return self._collect().__await__()

    def _results(self, items: list[BatchItem[Any]]) -> EmbedResults:
        errors = {item.index: item.error for item in items if item.error is not None}
        if numpy is None:
            return EmbedResults([None if item.error else item.result for item in items], errors)
        dim = next((len(item.result) for item in items if item.result is not None), 0)
        matrix = numpy.full((len(items), dim), numpy.nan, dtype=numpy.float32)
        for item in items:
            if item.result is not None:
                matrix[item.index] = item.result
        return EmbedResults(matrix, errors)


class _EmbedReply:
    """A decoded ``/api/embed`` reply: the vectors, the timing the limiter reads, and what the
    request's metrics read (``_observe.py``)."""

    __slots__ = ("load_duration", "model", "prompt_eval_count", "total_duration", "vectors")

    def __init__(self, vectors: Any, total_duration: int | None, obj: dict[str, Any]) -> None:
        self.vectors = vectors
        self.total_duration = total_duration
        self.load_duration = obj.get("load_duration")
        self.prompt_eval_count = obj.get("prompt_eval_count")
        self.model = obj.get("model")


def decode_embed(body: bytes) -> _EmbedReply:
    """Decode an ``/api/embed`` body straight into a float32 matrix (or lists without numpy).

    orjson (when installed) parses the floats once; numpy copies them into one contiguous array.
    That is several times faster than validating ``EmbedResponse`` with pydantic and keeps a
    vector at 4 bytes per float instead of a list of Python floats (see the benchmark).
    """
    obj = _loads(body)
    if not isinstance(obj, dict) or not isinstance(obj.get("embeddings"), list):
        raise ValueError("no 'embeddings' list in the reply")
    rows: list[list[float]] = obj["embeddings"]
    total = obj.get("total_duration")
    total = total if isinstance(total, int) else None
    if numpy is None or not rows:
        return _EmbedReply(rows, total, obj)
    dim = len(rows[0])
    if any(len(row) != dim for row in rows):
        raise ValueError("embeddings of different lengths")
    # One pass over the floats into one buffer: faster than numpy.asarray on nested lists.
    flat = numpy.fromiter(itertools.chain.from_iterable(rows), dtype=numpy.float32, count=len(rows) * dim)
    return _EmbedReply(flat.reshape(len(rows), dim), total, obj)


def decode_v1_embed(body: bytes) -> _EmbedReply:
    """Decode a base64 ``/v1/embeddings`` body into one float32 matrix (numpy is required here).

    ``total_duration`` 0: the reply has no timings, but the limiter still counts a finished request.
    """
    obj = _loads(body)
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise ValueError("no 'data' list in the reply")
    usage = obj.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return _EmbedReply(b64_matrix(obj["data"]), 0, {"model": obj.get("model"), "prompt_eval_count": tokens})


#: Per connection pool, the base URLs of hosts that answered 404 on /v1/embeddings.
_NO_V1: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()

V1_EMBED = "/v1/embeddings"


def _v1_known_missing(transport: Transport | Router) -> bool:
    """A host of this transport answered 404 for ``/v1/embeddings``. With several hosts one such
    host sends the whole batch native: which host a request goes to is the router's choice at
    send time, and the native route gives every host the same vectors."""
    known = _NO_V1.get(transport.http)
    if not known:
        return False
    members = getattr(transport, "members", None)
    urls = [m.url for m in members] if members else [transport.base_url]
    return any(url in known for url in urls)


def _remember_no_v1(transport: Transport | Router, url: str | None) -> None:
    host = url[: -len(V1_EMBED)] if url and url.endswith(V1_EMBED) else transport.base_url
    _NO_V1.setdefault(transport.http, set()).add(host)


class Batch:
    """Fan out generate / chat / embed over any iterable (``client.batch``).

    Every method reads its input lazily, keeps at most ``max_pending`` units read ahead, and runs
    a fixed set of workers: ``concurrency`` (an int) caps this batch's requests in flight; by
    default the client's per-model limiter alone decides (fixed, ``OLLAMA_NUM_PARALLEL`` or
    adaptive). Iterate the run for flat memory over millions of items; ``await`` keeps every
    result.
    """

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    # -- generate / chat --------------------------------------------------------------------------

    def generate(
        self, model: str, prompts: Source, *, concurrency: int | str | None = None,
        return_exceptions: bool = True, progress: ProgressArg = None, max_pending: int | None = None,
        **generate_kwargs: Any,
    ) -> BatchRun[GenerateResponse]:
        """Complete each prompt (a ``str``, or a dict of :meth:`AsyncClient.generate` keyword
        arguments that override ``generate_kwargs``). Results are :class:`GenerateResponse`."""
        client = self._client

        async def call(item: Any) -> Any:
            if isinstance(item, str):
                return await client.generate(model, item, **generate_kwargs)
            if isinstance(item, Mapping):
                kwargs = {**generate_kwargs, **item}
                return await client.generate(kwargs.pop("model", model), **kwargs)
            raise RequestError(f"must be a prompt string or a dict of generate arguments, not {type(item).__name__}",
                               field="prompts[]")

        return self._single(model, prompts, call, generate_kwargs, concurrency, return_exceptions, progress,
                            max_pending, "generate")

    def chat(
        self, model: str, conversations: Source, *, concurrency: int | str | None = None,
        return_exceptions: bool = True, progress: ProgressArg = None, max_pending: int | None = None,
        **chat_kwargs: Any,
    ) -> BatchRun[ChatResponse]:
        """Answer each conversation (a list of messages, or a dict of :meth:`AsyncClient.chat`
        keyword arguments with ``messages``). Results are :class:`ChatResponse`."""
        client = self._client

        async def call(item: Any) -> Any:
            if isinstance(item, Mapping):
                kwargs = {**chat_kwargs, **item}
                return await client.chat(kwargs.pop("model", model), **kwargs)
            if isinstance(item, Sequence) and not isinstance(item, (str, bytes)):
                return await client.chat(model, item, **chat_kwargs)
            raise RequestError(f"must be a list of messages or a dict of chat arguments, not {type(item).__name__}",
                               field="conversations[]")

        return self._single(model, conversations, call, chat_kwargs, concurrency, return_exceptions, progress,
                            max_pending, "chat")

    def _single(
        self, model: str, source: Source, call: Any, kwargs: Mapping[str, Any], concurrency: int | str | None,
        return_exceptions: bool, progress: ProgressArg, max_pending: int | None, label: str,
    ) -> BatchRun[Any]:
        P.check_model(model)
        if kwargs.get("stream"):
            raise RequestError("a batch returns whole responses; stream=True is not supported", field="stream")
        workers = self._workers(model, concurrency, "/api/generate")
        retry = self._busy_retry(model)

        async def process(index: int, inputs: list[Any]) -> list[BatchItem[Any]]:
            item = inputs[0]
            try:
                return [BatchItem(index, item, await retry(lambda: call(item)))]
            except FATAL:
                raise
            except Exception as exc:
                return [BatchItem(index, item, error=exc)]

        if max_pending is not None:
            _check_positive(max_pending, "max_pending")

        def pending(workers: int) -> int:
            return max_pending if max_pending is not None else max(4 * workers, 64)

        return BatchRun(_check_source(source), process, unit_size=1, workers=workers, max_pending=pending,
                        return_exceptions=return_exceptions, progress=progress, label=f"{label} {model}")

    # -- embed ----------------------------------------------------------------------------------

    def embed(
        self, model: str, texts: Source, *, batch_size: int = 64, dimensions: int | None = None,
        truncate: bool | None = None, keep_alive: float | str | None = None, options: Any = None,
        concurrency: int | str | None = None, return_exceptions: bool = True, progress: ProgressArg = None,
    ) -> EmbedRun:
        """Embed each text, ``batch_size`` texts per request (``/v1/embeddings`` with base64 where
        it gives the same vectors, else ``/api/embed``: see the module docstring).

        ``await`` gives :class:`EmbedResults`; iteration yields one :class:`BatchItem` per text
        whose ``result`` is its vector (a numpy float32 row, or a list without numpy).
        """
        batch_size = _check_positive(batch_size, "batch_size")
        static = P.embed_body(model, [], truncate, options, keep_alive, dimensions)  # validates now
        client = self._client
        transport = client._transport
        retry = self._busy_retry(model)
        workers = self._workers(model, concurrency, "/api/embed")
        # /v1 gives the same vectors only with /api/embed's defaults (it always truncates and
        # takes no options or keep_alive); base64 pays off only when numpy decodes it.
        v1 = numpy is not None and truncate in (None, True) and not options and keep_alive is None
        v1_extra = {"dimensions": dimensions} if dimensions else {}

        async def send(path: str, body: dict[str, Any], decode: Callable[[bytes], _EmbedReply], n: int) -> Any:
            call = client._call("POST", path, body, model=model)
            reply: _EmbedReply = await retry(lambda: transport.request(call, decode))
            if len(reply.vectors) != n:
                raise ResponseError(f"the server returned {len(reply.vectors)} vectors for {n} texts",
                                    200, method="POST", url=transport.url(path), model=model)
            return reply.vectors

        async def request(texts: list[str]) -> Any:
            if v1 and not _v1_known_missing(transport):
                body = {"model": model, "input": texts, **v1_extra, "encoding_format": "base64"}
                try:
                    return await send(V1_EMBED, body, decode_v1_embed, len(texts))
                except ResponseError as exc:
                    if exc.status_code != 404:
                        raise
                    vectors = await send("/api/embed", {**static, "input": texts}, decode_embed, len(texts))
                    _remember_no_v1(transport, exc.url)  # native worked: this host has no /v1
                    return vectors
            return await send("/api/embed", {**static, "input": texts}, decode_embed, len(texts))

        async def embed_group(texts: list[str], positions: list[int], out: list[BatchItem[Any]]) -> None:
            try:
                vectors = await request(texts)
            except FATAL:
                raise
            except ResponseError as exc:
                if len(texts) > 1 and exc.status_code in _SPLIT_STATUSES:
                    batch_log.info("embed %s: a request of %d texts got HTTP %d; splitting it in two", model,
                                   len(texts), exc.status_code)
                    mid = len(texts) // 2
                    await embed_group(texts[:mid], positions[:mid], out)
                    await embed_group(texts[mid:], positions[mid:], out)
                    return
                for pos in positions:
                    out[pos].error = exc
                return
            except Exception as exc:
                for pos in positions:
                    out[pos].error = exc
                return
            for pos, vector in zip(positions, vectors, strict=True):
                out[pos].result = vector

        async def process(index: int, inputs: list[Any]) -> list[BatchItem[Any]]:
            out: list[BatchItem[Any]] = [BatchItem(index + i, text) for i, text in enumerate(inputs)]
            positions = [i for i, text in enumerate(inputs) if isinstance(text, str)]
            for i, item in enumerate(out):
                if not isinstance(item.input, str):
                    item.error = RequestError(f"must be a string, not {type(item.input).__name__}",
                                              field=f"texts[{index + i}]")
            if positions:
                await embed_group([inputs[i] for i in positions], positions, out)
            return out

        return EmbedRun(_check_source(texts), process, unit_size=batch_size, workers=workers,
                        max_pending=lambda workers: 2 * workers + 2, return_exceptions=return_exceptions,
                        progress=progress, label=f"embed {model}")

    # -- shared -----------------------------------------------------------------------------------

    def _workers(self, model: str, concurrency: int | str | None, path: str) -> Callable[[], Awaitable[int]]:
        """This batch's workers: its own cap, else as many as the client's limiter may ever admit
        (+1, so the next request is ready the moment a slot frees). Asked when the run starts,
        after the limiter knows the model (an embedding-only model gets ``EMBED_ONLY_BOUND``)."""
        fixed = None if concurrency is None or concurrency == "auto" else _check_positive(concurrency, "concurrency")
        client = self._client

        async def workers() -> int:
            if fixed is not None:
                return fixed
            return await client._model_bound(model, path) + 1

        return workers

    def _busy_retry(self, model: str) -> Any:
        """Wrap a call: a 503 that outlived the client's retries closes the model's gate, then
        the call goes again (the same backoff rules as the client's; no retry of anything else)."""
        client = self._client

        async def retry(make: Any) -> Any:
            requeues = 0
            while True:
                try:
                    return await make()
                except ServerBusyError:
                    if requeues >= BUSY_REQUEUES:
                        raise
                    requeues += 1
                    policy = client._transport.retry
                    delay = policy.delay(policy.max_retries + requeues)
                    batch_log.info("%s still busy (503) after the client's retries: requeued (%d of %d) behind "
                                   "its gate, %.2fs", model, requeues, BUSY_REQUEUES, delay)
                    client.limits.for_model(model).busy(delay)

        return retry


def _check_positive(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(f"must be a positive int, not {value!r}", field=field)
    return value


def _check_source(source: object) -> Any:
    if isinstance(source, (str, bytes, Mapping)) or not isinstance(source, (Iterable, AsyncIterable)):
        raise RequestError(f"must be an iterable or async iterable of inputs, not {type(source).__name__}",
                           field="inputs")
    return source

