"""``AsyncClient``: every native endpoint, as thin methods over one pooled transport.

Each method validates and builds its request body (``_payloads.py``), wraps it in a
:class:`~ollama_async._transport.Call` and hands it to the transport, which limits, sends,
retries, maps errors and decodes. Names, parameters and return types follow the official
``ollama.AsyncClient``, so switching is a change of import; additions are keyword-only.
"""

from __future__ import annotations

import copy
import hashlib
import os
import platform
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import anyio
import httpx
from pydantic import BaseModel

from . import _payloads as P
from ._errors import OllamaConnectionError, OllamaTimeoutError, RequestError, ResponseError
from ._host import ApiKeyAuth, api_key_from_env, parse_host
from ._hosts import Host, HostInput, HostState, as_host
from ._limits import ConcurrencyInput, Limits
from ._observe import ClientStats, Hook, make_observer
from ._routing import FleetLimits, Router, conversation_key
from ._streaming import Stream, iter_parts
from ._transport import DEFAULT_TIMEOUT, NOT_GIVEN, Call, RetryPolicy, TimeoutInput, Transport
from ._types import (
    ChatResponse,
    EmbeddingsResponse,
    EmbedResponse,
    GenerateResponse,
    Image,
    ListResponse,
    Message,
    Options,
    ProcessResponse,
    ProgressResponse,
    ShowResponse,
    StatusResponse,
    Tool,
    VersionResponse,
    WebFetchResponse,
    WebSearchResponse,
)
from ._version import __version__
from ._wire import DEFAULT_WIRE_LIMITS, WireLimits, check_headers

if TYPE_CHECKING:
    from .batch import Batch
    from .openai import OpenAILayer

__all__ = ["AsyncClient"]

T = TypeVar("T", bound=BaseModel)
T2 = TypeVar("T2")

JsonSchema = Mapping[str, Any]
FormatArg = Literal["", "json"] | JsonSchema | type[BaseModel] | None
OptionsArg = Mapping[str, Any] | Options | None
KeepAlive = float | str | None
ImageArg = str | bytes | os.PathLike[str] | Image
ToolArg = Mapping[str, Any] | Tool | Callable[..., Any]
MessageArg = Mapping[str, Any] | Message

_USER_AGENT = (
    f"ollama-async/{__version__} ({platform.machine()} {platform.system().lower()}) "
    f"Python/{platform.python_version()}"
)
_BLOB_CHUNK = 1 << 20


def _generate_done(part: GenerateResponse) -> bool:
    return part.done is True


def _chat_done(part: ChatResponse) -> bool:
    return part.done is True


def _progress_done(part: ProgressResponse) -> bool:
    return part.status == "success"


def _ignore_body(_: bytes) -> None:
    return None


def _single_state(transport: Transport) -> HostState:
    limits = transport.limits.stats()
    return HostState(
        url=transport.base_url, state="healthy", in_flight=sum(s.in_flight for s in limits.values()), errors=0,
        consecutive_failures=0, last_error=None, retry_in=0.0, weight=1.0,
        requests=sum(s.acquired for s in limits.values()), models=None, loaded=(), limits=limits,
    )


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_BLOB_CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


class AsyncClient:
    """An async client for one Ollama server (or several as one), on pooled connections.

    Args:
        host: ``[scheme://]host[:port][/path]``; default ``OLLAMA_HOST``, else 127.0.0.1:11434.
            A list of URLs and :class:`Host` entries makes one client over several servers:
            each request is routed by free slots, loaded models and measured speed, with
            failover and health checks (``docs/several-servers.md``); ``base_url`` and
            ``http_client`` are then the first server's, ``hosts`` shows them all.
        timeout: seconds or an ``httpx.Timeout``; the default connects within 10 s but lets a read
            wait 10 minutes, since a model load can take minutes before the first byte. ``None``
            disables timeouts (the official client's default).
        max_retries: retries for connection errors and 429/502/503/504, with exponential backoff
            and jitter, honouring ``Retry-After``; only before anything reached the caller.
        headers: extra headers for every request.
        http_client: your own ``httpx.AsyncClient`` (its transport, proxies, limits); it is not
            closed by :meth:`aclose`.
        concurrency: the bound on requests in flight per model: an int, ``"auto"`` (adaptive:
            found from the server's own timings) or ``{model: int | "auto"}``; default
            ``OLLAMA_NUM_PARALLEL`` from the environment, else adaptive. Embedding-only models get
            2 (the one slot the server gives them, and one request waiting for it) unless named
            in the mapping.
        max_concurrency: the most the adaptive mode may ever send at once per model (default 64).
        affinity: with several hosts, keep each chat conversation on the server that has its
            prompt cache (a key from its first messages); ``False`` turns that off.
        on_request: a hook, or a list of hooks, called with each request's
            :class:`RequestMetrics` when it is over (more with :meth:`add_hook`).
        metrics: measure every request (``response.metrics``, :meth:`stats`); ``False`` saves the
            ~3.5 µs a request costs when no hook, DEBUG log or OpenTelemetry needs them.
        tracer_provider, meter_provider: OpenTelemetry providers for this client's spans and
            GenAI metrics, instead of the global ones (needs the ``otel`` extra).
        wire_limits: the largest response head, NDJSON line and body accepted, and the deadline
            for a whole response head (:class:`~ollama_async.WireLimits`; generous defaults).
        httpx_kwargs: passed to ``httpx.AsyncClient`` (``verify=``, ``proxy=``, ...).

    ``OLLAMA_API_KEY``, when set, is sent as ``Authorization: Bearer`` to the configured host only.
    """

    def __init__(
        self,
        host: HostInput | Sequence[HostInput] | None = None,
        *,
        timeout: TimeoutInput = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        concurrency: ConcurrencyInput = None,
        max_concurrency: int | None = None,
        follow_redirects: bool = True,
        affinity: bool = True,
        on_request: Hook | Sequence[Hook] | None = None,
        metrics: bool = True,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        wire_limits: WireLimits | None = None,
        **httpx_kwargs: Any,
    ) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise RequestError(f"must be an int >= 0, not {max_retries!r}", field="max_retries")
        if host is None:
            host = os.environ.get("OLLAMA_HOST")
            if not host and http_client is not None and str(http_client.base_url):
                host = str(http_client.base_url)
        merged = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": _USER_AGENT}
        merged.update(headers or {})
        retry = RetryPolicy(max_retries=max_retries)

        def transport(base_url: str, api_key: str | None, concurrency: ConcurrencyInput,
                      max_concurrency: int | None) -> Transport:
            has_auth = any(k.lower() == "authorization" for k in merged)
            auth = ApiKeyAuth(api_key, base_url) if api_key and not has_auth else None
            made = Transport(
                base_url, http_client=http_client, timeout=timeout, retry=retry, headers=merged, auth=auth,
                limits=Limits(concurrency, max_concurrency=max_concurrency),
                httpx_kwargs={"follow_redirects": follow_redirects, **httpx_kwargs},
                wire=wire_limits if wire_limits is not None else DEFAULT_WIRE_LIMITS,
            )
            made.observer = observer  # one observer for every host: one set of stats and hooks
            return made

        observer = make_observer(on_request, metrics, tracer_provider, meter_provider)
        self._observer = observer
        self._transport: Transport | Router
        self._call_timeout: Any = NOT_GIVEN
        self._call_affinity: str | None = None
        self._auto_affinity = False
        if host is None or isinstance(host, str):
            self._transport = transport(parse_host(host), api_key_from_env(), concurrency, max_concurrency)
            return
        hosts = [as_host(host)] if isinstance(host, Host) else [as_host(h, i) for i, h in enumerate(host)]

        def for_host(h: Host) -> Transport:
            return transport(
                h.base_url, h.api_key or api_key_from_env(), concurrency if h.concurrency is None else h.concurrency,
                max_concurrency if h.max_concurrency is None else h.max_concurrency,
            )

        self._transport = Router(hosts, for_host, retry)
        self._transport.observer = observer
        self._auto_affinity = bool(affinity)

    # -- lifecycle and configuration -----------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The server's base URL, as parsed from ``host``/``OLLAMA_HOST``."""
        return self._transport.base_url

    @property
    def http_client(self) -> httpx.AsyncClient:
        """The one ``httpx.AsyncClient`` (connection pool) every request goes through."""
        return self._transport.http

    @property
    def limits(self) -> Limits | FleetLimits:
        """The per-model in-flight limiters (``client.limits.stats()`` shows waits and peaks).

        With several hosts, a :class:`FleetLimits` over each host's own limiters."""
        return self._transport.limits

    # -- several hosts (``_routing.py``) ---------------------------------------------------------

    @property
    def hosts(self) -> list[HostState]:
        """Each host's state: healthy or ejected, in flight, bounds per model, errors, models."""
        transport = self._transport
        if isinstance(transport, Router):
            return transport.hosts
        return [_single_state(transport)]

    def add_host(self, host: HostInput) -> None:
        """Add a server while the client runs; it gets requests from the next one on."""
        self._router().add(as_host(host))

    async def remove_host(self, url: str) -> None:
        """Take a server out: no new requests go there; returns once its requests finished."""
        await self._router().remove(url)

    def on_host(self, url: str) -> AsyncClient:
        """A view of this client that sends everything to one host (no routing, no failover).

        Shares that host's pool, limits and retry policy; e.g. ``await client.on_host(url).pull(m)``.
        """
        clone = copy.copy(self)
        clone._transport = self._router().member(url).transport
        clone._auto_affinity = False
        return clone

    async def each_host(self, fn: Callable[[AsyncClient], Awaitable[T2]]) -> dict[str, T2 | Exception]:
        """``fn(client pinned to a host)`` on every host at once: per host URL, its result or error.

        ``await client.each_host(lambda c: c.pull("llama3.2"))``; a single-host client has one entry.
        """
        transport = self._transport
        if not isinstance(transport, Router):
            try:
                return {transport.base_url: await fn(self)}
            except Exception as exc:
                return {transport.base_url: exc}
        return await transport.each(lambda m: fn(self.on_host(m.url)), usable_only=False)

    def _router(self) -> Router:
        transport = self._transport
        if not isinstance(transport, Router):
            raise RequestError("this client has one host; pass host=[...] for several", field="host")
        return transport

    async def _model_bound(self, model: str, path: str) -> int:
        """How many requests of ``model`` a batch keeps going (it adds one to have the next ready).

        Several hosts: the fleet's bound plus two per host (with the batch's one), so that every
        host has its next requests waiting in its limiter and a freed slot never waits for a
        round trip through the batch (bench_hosts.py: ~95 % of the ideal with one, ~97 % with
        two)."""
        call = Call("POST", path, model=model)
        limits = self._transport.limits
        if isinstance(limits, FleetLimits):
            await limits.prepare(call)
            return limits.bound(model) + 2 * limits.hosts_with(model) - 1
        await limits.for_call(call, self._transport)  # type: ignore[arg-type]
        return limits.bound(model)
    def stats(self, *, reset: bool = False) -> ClientStats:
        """Aggregates of the requests so far, per model, per host and both (:class:`ClientStats`).

        ``client.stats()["llama3.2"].tokens_per_second``; ``reset=True`` starts counting anew
        after taking the snapshot. Empty with ``metrics=False``.
        """
        observer = self._observer
        snapshot = observer.snapshot()
        if reset:
            observer.reset()
        return snapshot

    def add_hook(self, hook: Hook) -> None:
        """Call ``hook(metrics)`` after every request (success, error or a stream left early).

        Hooks run on the event loop, in the task that made the request: keep them quick (hand
        the data to a queue for anything slow). An exception in a hook is logged on
        ``ollama_async.hooks`` and never reaches the request.
        """
        if not callable(hook):
            raise RequestError(f"must be callable, not {type(hook).__name__}", field="hook")
        self._observer.hooks.append(hook)

    def remove_hook(self, hook: Hook) -> None:
        """Stop calling ``hook``; a hook that was not added is ignored."""
        hooks = self._observer.hooks
        if hook in hooks:
            hooks.remove(hook)

    @property
    def batch(self) -> Batch:
        """Fan out generate / chat / embed over any iterable: see :class:`ollama_async.batch.Batch`."""
        from .batch import Batch

        return Batch(self)

    @property
    def openai(self) -> OpenAILayer:
        """Ollama's OpenAI-compatible ``/v1`` routes with openai-python's shapes, on this client's
        pool, per-model limits and retries: see :class:`ollama_async.openai.OpenAILayer`."""
        layer: OpenAILayer | None = self.__dict__.get("_openai")
        if layer is None or layer._client is not self:  # a with_options() copy gets its own
            from .openai import OpenAILayer

            layer = self._openai = OpenAILayer(self)
        return layer

    def with_options(
        self, *, timeout: Any = NOT_GIVEN, max_retries: int | None = None, affinity: str | None = None
    ) -> AsyncClient:
        """A view of this client with other defaults, sharing its pool and limits.

        ``affinity`` (several hosts): a key that keeps the view's requests on one host while it
        is usable and has room, e.g. a conversation or user id, so its prompt cache is reused.
        """
        clone = copy.copy(self)
        if affinity is not None:
            clone._call_affinity = str(affinity)
        clone._transport = copy.copy(self._transport)
        clone._transport._owns_http = False
        if max_retries is not None:
            if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
                raise RequestError(f"must be an int >= 0, not {max_retries!r}", field="max_retries")
            clone._transport.retry = RetryPolicy(max_retries=max_retries)
        if timeout is not NOT_GIVEN:
            clone._call_timeout = timeout
        return clone

    async def aclose(self) -> None:
        """Close the connection pool. Later calls raise :class:`ClientClosedError`."""
        await self._transport.aclose()

    async def close(self) -> None:
        """Same as :meth:`aclose` (the official client's name)."""
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- plumbing ---------------------------------------------------------------------------------

    def _call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, *, model: str | None = None,
        timeout: Any = NOT_GIVEN, retryable: bool = True,
    ) -> Call:
        return Call(
            method,
            path,
            P.dumps(body) if body is not None else None,
            model=model,
            timeout=self._call_timeout if timeout is NOT_GIVEN else timeout,
            retryable=retryable,
            affinity=self._call_affinity,
            options=body.get("options") if body is not None else None,
        )

    async def _request(self, call: Call, cls: type[T]) -> T:
        return await self._transport.request(call, cls.model_validate_json)

    def _stream(self, call: Call, cls: type[T], is_final: Callable[[T], bool]) -> Stream[T]:
        transport, decode = self._transport, cls.model_validate_json
        return Stream(lambda: iter_parts(transport, call, decode, is_final), call)

    # -- generate / chat -------------------------------------------------------------------------

    @overload
    async def generate(
        self, model: str = "", prompt: str | None = None, suffix: str | None = None, *,
        system: str | None = None, template: str | None = None, context: Sequence[int] | None = None,
        stream: Literal[False] = False, think: bool | str | None = None, logprobs: bool | None = None,
        top_logprobs: int | None = None, raw: bool | None = None, format: FormatArg = None,
        images: Sequence[ImageArg] | None = None, options: OptionsArg = None, keep_alive: KeepAlive = None,
        width: int | None = None, height: int | None = None, steps: int | None = None, timeout: Any = NOT_GIVEN,
    ) -> GenerateResponse: ...

    @overload
    async def generate(
        self, model: str = "", prompt: str | None = None, suffix: str | None = None, *,
        system: str | None = None, template: str | None = None, context: Sequence[int] | None = None,
        stream: Literal[True], think: bool | str | None = None, logprobs: bool | None = None,
        top_logprobs: int | None = None, raw: bool | None = None, format: FormatArg = None,
        images: Sequence[ImageArg] | None = None, options: OptionsArg = None, keep_alive: KeepAlive = None,
        width: int | None = None, height: int | None = None, steps: int | None = None, timeout: Any = NOT_GIVEN,
    ) -> Stream[GenerateResponse]: ...

    @overload
    async def generate(
        self, model: str = "", prompt: str | None = None, suffix: str | None = None, *,
        system: str | None = None, template: str | None = None, context: Sequence[int] | None = None,
        stream: bool = False, think: bool | str | None = None, logprobs: bool | None = None,
        top_logprobs: int | None = None, raw: bool | None = None, format: FormatArg = None,
        images: Sequence[ImageArg] | None = None, options: OptionsArg = None, keep_alive: KeepAlive = None,
        width: int | None = None, height: int | None = None, steps: int | None = None, timeout: Any = NOT_GIVEN,
    ) -> GenerateResponse | Stream[GenerateResponse]: ...

    async def generate(
        self, model: str = "", prompt: str | None = None, suffix: str | None = None, *,
        system: str | None = None, template: str | None = None, context: Sequence[int] | None = None,
        stream: bool = False, think: bool | str | None = None, logprobs: bool | None = None,
        top_logprobs: int | None = None, raw: bool | None = None, format: FormatArg = None,
        images: Sequence[ImageArg] | None = None, options: OptionsArg = None, keep_alive: KeepAlive = None,
        width: int | None = None, height: int | None = None, steps: int | None = None, timeout: Any = NOT_GIVEN,
    ) -> GenerateResponse | Stream[GenerateResponse]:
        """Complete ``prompt`` with ``model`` (``/api/generate``).

        Returns a :class:`GenerateResponse`, or with ``stream=True`` a :class:`Stream` of chunks.
        ``format`` takes ``"json"``, a JSON schema or a pydantic model class; then
        ``response.parse()`` gives the parsed object.
        """
        body = P.generate_body(
            model, prompt, suffix, system=system, template=template, context=context, stream=stream,
            think=think, logprobs=logprobs, top_logprobs=top_logprobs, raw=raw, format=format, images=images,
            options=options, keep_alive=keep_alive, width=width, height=height, steps=steps,
        )
        call = self._call("POST", "/api/generate", body, model=model, timeout=timeout)
        if stream:
            return self._stream(call, GenerateResponse, _generate_done)
        result = await self._request(call, GenerateResponse)
        result._format = format
        return result

    @overload
    async def chat(
        self, model: str = "", messages: Sequence[MessageArg] | None = None, *,
        tools: Sequence[ToolArg] | None = None, stream: Literal[False] = False, think: bool | str | None = None,
        logprobs: bool | None = None, top_logprobs: int | None = None, format: FormatArg = None,
        options: OptionsArg = None, keep_alive: KeepAlive = None, timeout: Any = NOT_GIVEN,
    ) -> ChatResponse: ...

    @overload
    async def chat(
        self, model: str = "", messages: Sequence[MessageArg] | None = None, *,
        tools: Sequence[ToolArg] | None = None, stream: Literal[True], think: bool | str | None = None,
        logprobs: bool | None = None, top_logprobs: int | None = None, format: FormatArg = None,
        options: OptionsArg = None, keep_alive: KeepAlive = None, timeout: Any = NOT_GIVEN,
    ) -> Stream[ChatResponse]: ...

    @overload
    async def chat(
        self, model: str = "", messages: Sequence[MessageArg] | None = None, *,
        tools: Sequence[ToolArg] | None = None, stream: bool = False, think: bool | str | None = None,
        logprobs: bool | None = None, top_logprobs: int | None = None, format: FormatArg = None,
        options: OptionsArg = None, keep_alive: KeepAlive = None, timeout: Any = NOT_GIVEN,
    ) -> ChatResponse | Stream[ChatResponse]: ...

    async def chat(
        self, model: str = "", messages: Sequence[MessageArg] | None = None, *,
        tools: Sequence[ToolArg] | None = None, stream: bool = False, think: bool | str | None = None,
        logprobs: bool | None = None, top_logprobs: int | None = None, format: FormatArg = None,
        options: OptionsArg = None, keep_alive: KeepAlive = None, timeout: Any = NOT_GIVEN,
    ) -> ChatResponse | Stream[ChatResponse]:
        """Answer a conversation with ``model`` (``/api/chat``).

        ``tools`` takes dicts, :class:`Tool` objects or Python callables (their full signature
        schema, with docstring descriptions). In a stream, tool calls may arrive in any chunk.
        """
        body = P.chat_body(
            model, messages, tools=tools, stream=stream, think=think, logprobs=logprobs,
            top_logprobs=top_logprobs, format=format, options=options, keep_alive=keep_alive,
        )
        call = self._call("POST", "/api/chat", body, model=model, timeout=timeout)
        if self._auto_affinity and call.affinity is None:
            call.affinity = conversation_key(body.get("messages"))
        if stream:
            return self._stream(call, ChatResponse, _chat_done)
        result = await self._request(call, ChatResponse)
        result._format = format
        return result

    # -- embeddings ------------------------------------------------------------------------------

    async def embed(
        self, model: str = "", input: str | Sequence[str] = "", truncate: bool | None = None,
        options: OptionsArg = None, keep_alive: KeepAlive = None, dimensions: int | None = None, *,
        timeout: Any = NOT_GIVEN,
    ) -> EmbedResponse:
        """Embed one text or a list (``/api/embed``); vectors come back in input order."""
        body = P.embed_body(model, input, truncate, options, keep_alive, dimensions)
        return await self._request(self._call("POST", "/api/embed", body, model=model, timeout=timeout),
                                   EmbedResponse)

    async def embeddings(
        self, model: str = "", prompt: str | None = None, options: OptionsArg = None,
        keep_alive: KeepAlive = None, *, timeout: Any = NOT_GIVEN,
    ) -> EmbeddingsResponse:
        """Legacy single-text embedding (``/api/embeddings``); prefer :meth:`embed`."""
        body = P.embeddings_body(model, prompt, options, keep_alive)
        return await self._request(self._call("POST", "/api/embeddings", body, model=model, timeout=timeout),
                                   EmbeddingsResponse)

    # -- model management ------------------------------------------------------------------------

    async def _progress(
        self, path: str, body: dict[str, Any], stream: bool, timeout: Any
    ) -> ProgressResponse | Stream[ProgressResponse]:
        call = self._call("POST", path, body, timeout=timeout)
        if stream:
            return self._stream(call, ProgressResponse, _progress_done)
        return await self._request(call, ProgressResponse)

    @overload
    async def pull(self, model: str, *, insecure: bool = False, stream: Literal[False] = False,
                   timeout: Any = NOT_GIVEN) -> ProgressResponse: ...
    @overload
    async def pull(self, model: str, *, insecure: bool = False, stream: Literal[True],
                   timeout: Any = NOT_GIVEN) -> Stream[ProgressResponse]: ...
    async def pull(self, model: str, *, insecure: bool = False, stream: bool = False,
                   timeout: Any = NOT_GIVEN) -> ProgressResponse | Stream[ProgressResponse]:
        """Download a model (``/api/pull``); with ``stream=True``, progress lines up to ``success``."""
        body = {"model": P.check_model(model), "stream": bool(stream), "insecure": bool(insecure)}
        return await self._progress("/api/pull", body, stream, timeout)

    @overload
    async def push(self, model: str, *, insecure: bool = False, stream: Literal[False] = False,
                   timeout: Any = NOT_GIVEN) -> ProgressResponse: ...
    @overload
    async def push(self, model: str, *, insecure: bool = False, stream: Literal[True],
                   timeout: Any = NOT_GIVEN) -> Stream[ProgressResponse]: ...
    async def push(self, model: str, *, insecure: bool = False, stream: bool = False,
                   timeout: Any = NOT_GIVEN) -> ProgressResponse | Stream[ProgressResponse]:
        """Upload a model to its registry (``/api/push``)."""
        body = {"model": P.check_model(model), "stream": bool(stream), "insecure": bool(insecure)}
        return await self._progress("/api/push", body, stream, timeout)

    @overload
    async def create(
        self, model: str, quantize: str | None = None, from_: str | None = None,
        files: Mapping[str, str] | None = None, adapters: Mapping[str, str] | None = None,
        template: str | None = None, license: str | Sequence[str] | None = None, system: str | None = None,
        parameters: OptionsArg = None, messages: Sequence[MessageArg] | None = None, *,
        stream: Literal[False] = False, timeout: Any = NOT_GIVEN,
    ) -> ProgressResponse: ...
    @overload
    async def create(
        self, model: str, quantize: str | None = None, from_: str | None = None,
        files: Mapping[str, str] | None = None, adapters: Mapping[str, str] | None = None,
        template: str | None = None, license: str | Sequence[str] | None = None, system: str | None = None,
        parameters: OptionsArg = None, messages: Sequence[MessageArg] | None = None, *,
        stream: Literal[True], timeout: Any = NOT_GIVEN,
    ) -> Stream[ProgressResponse]: ...
    async def create(
        self, model: str, quantize: str | None = None, from_: str | None = None,
        files: Mapping[str, str] | None = None, adapters: Mapping[str, str] | None = None,
        template: str | None = None, license: str | Sequence[str] | None = None, system: str | None = None,
        parameters: OptionsArg = None, messages: Sequence[MessageArg] | None = None, *,
        stream: bool = False, timeout: Any = NOT_GIVEN,
    ) -> ProgressResponse | Stream[ProgressResponse]:
        """Create a model from another one or from uploaded blobs (``/api/create``)."""
        body = P.create_body(
            model, stream=stream, quantize=quantize, from_=from_, files=files, adapters=adapters,
            template=template, license=license, system=system, parameters=parameters, messages=messages,
        )
        return await self._progress("/api/create", body, stream, timeout)

    async def create_blob(self, path: str | os.PathLike[str], *, timeout: Any = NOT_GIVEN) -> str:
        """Upload a file as a blob and return its digest (``sha256:<hex>``).

        The file is hashed and uploaded in 1 MiB pieces, never read whole into memory; a blob the
        server already has is not uploaded again (checked with ``HEAD`` first). A ``HEAD`` that
        answers an error other than 404 (a proxy without ``HEAD`` support: 405, 501, ...) is not
        an answer: the file is uploaded, and the upload's own status decides.
        """
        file = Path(path)
        if not await anyio.Path(file).is_file():
            raise RequestError(f"no such file: {str(file)!r}", field="path")
        digest = await anyio.to_thread.run_sync(_sha256_file, file)
        blob_path = f"/api/blobs/{digest}"
        try:
            await self._transport.request(self._call("HEAD", blob_path, timeout=timeout), _ignore_body)
            return digest
        except ResponseError:
            pass  # 404: not there yet; anything else: HEAD unsupported on the way, upload anyway

        async def chunks() -> AsyncIterator[bytes]:
            async with await anyio.open_file(file, "rb") as f:
                while chunk := await f.read(_BLOB_CHUNK):
                    yield chunk

        call = self._call("POST", blob_path, timeout=timeout)
        call.body = chunks
        await self._transport.request(call, _ignore_body)
        return digest

    async def list(self, *, timeout: Any = NOT_GIVEN) -> ListResponse:
        """The models the server has (``/api/tags``)."""
        return await self._request(self._call("GET", "/api/tags", timeout=timeout), ListResponse)

    async def show(self, model: str, *, verbose: bool | None = None, timeout: Any = NOT_GIVEN) -> ShowResponse:
        """A model's details, template, parameters and capabilities (``/api/show``)."""
        body: dict[str, Any] = {"model": P.check_model(model)}
        if verbose is not None:
            body["verbose"] = bool(verbose)
        return await self._request(self._call("POST", "/api/show", body, timeout=timeout), ShowResponse)

    async def ps(self, *, timeout: Any = NOT_GIVEN) -> ProcessResponse:
        """The models loaded now (``/api/ps``)."""
        return await self._request(self._call("GET", "/api/ps", timeout=timeout), ProcessResponse)

    async def copy(self, source: str, destination: str, *, timeout: Any = NOT_GIVEN) -> StatusResponse:
        """Copy a model under a new name (``/api/copy``)."""
        body = {"source": P.check_model(source, "source"), "destination": P.check_model(destination, "destination")}
        await self._transport.request(self._call("POST", "/api/copy", body, timeout=timeout), _ignore_body)
        return StatusResponse(status="success")

    async def delete(self, model: str, *, timeout: Any = NOT_GIVEN) -> StatusResponse:
        """Delete a model (``/api/delete``)."""
        body = {"model": P.check_model(model)}
        await self._transport.request(self._call("DELETE", "/api/delete", body, timeout=timeout), _ignore_body)
        return StatusResponse(status="success")

    async def version(self, *, timeout: Any = NOT_GIVEN) -> VersionResponse:
        """The server's version (``/api/version``)."""
        return await self._request(self._call("GET", "/api/version", timeout=timeout), VersionResponse)

    # -- ollama.com web tools (the official client's, for drop-in use) ---------------------------

    async def web_search(self, query: str, max_results: int = 3) -> WebSearchResponse:
        """Search the web through ollama.com (needs ``OLLAMA_API_KEY``)."""
        body = {"query": P._opt_str(query, "query"), "max_results": max_results}
        return await self._web("https://ollama.com/api/web_search", body, WebSearchResponse)

    async def web_fetch(self, url: str) -> WebFetchResponse:
        """Fetch a web page through ollama.com (needs ``OLLAMA_API_KEY``)."""
        return await self._web("https://ollama.com/api/web_fetch", {"url": P._opt_str(url, "url")}, WebFetchResponse)

    async def _web(self, url: str, body: dict[str, Any], cls: type[T]) -> T:
        key = api_key_from_env()
        if not key:
            raise RequestError("the ollama.com web tools need OLLAMA_API_KEY", field="OLLAMA_API_KEY")
        check_headers({"Authorization": f"Bearer {key}"})
        transport = self._transport
        transport._check_usable()
        try:
            response = await transport.http.post(
                url, content=P.dumps(body),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
        except httpx.TimeoutException as exc:
            raise OllamaTimeoutError(f"timeout calling {url}: {type(exc).__name__}", phase="read",
                                     method="POST", url=url) from exc
        except httpx.TransportError as exc:
            raise OllamaConnectionError(f"could not reach {url}: {type(exc).__name__}: {exc}",
                                        method="POST", url=url) from exc
        if response.status_code >= 400:
            raise ResponseError(response.text, response.status_code, method="POST", url=url)
        return cls.model_validate_json(response.content)
