"""``client.openai``: Ollama's OpenAI-compatible ``/v1`` routes with openai-python's shapes.

``client.openai.chat.completions.create(...)`` takes the arguments ``AsyncOpenAI`` takes and
returns the same shapes, so code moves over by swapping the client object. Every call is a
:class:`~ollama_async._transport.Call` with its ``model`` set, handed to the client's
:class:`~ollama_async._transport.Transport`: the same connection pool, the same per-model slot
(``/v1`` and native traffic to one model share its bound), the same retries and error types.

Streams (``stream=True``) are :class:`V1Stream` objects: nothing is sent until the first
``async for`` step (as with the native streams), failures before the first event are retried,
and the connection and slot are given back the moment the caller stops (``break``, an
exception, ``aclose()``/``close()``, leaving ``async with``). A stream that ends without its
``[DONE]`` (or ``response.completed``) raises :class:`~ollama_async.IncompleteStreamError`; an
``{"error": ...}`` event raises :class:`~ollama_async.StreamError`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, overload
from urllib.parse import quote, urlencode

from typing_extensions import TypedDict, Unpack

from .._errors import RequestError
from .._payloads import check_model
from .._streaming import Stream, iter_parts
from .._transport import NOT_GIVEN, Call
from . import _params as P
from ._decode import DONE, ErrorEvent, Marker, b64_matrix, loads, sse_decoder, stream_error
from ._decode import numpy as _numpy
from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    CreateEmbeddingResponse,
    Embedding,
    EmbeddingUsage,
    Model,
    ModelsList,
    ModelsPage,
    Response,
    ResponseStreamEvent,
)

if TYPE_CHECKING:
    from .._client import AsyncClient

__all__ = ["ChatParams", "CompletionParams", "OpenAILayer", "ResponseParams", "V1Stream"]

T = TypeVar("T")

_RESPONSE_FINAL = frozenset({"response.completed", "response.failed", "response.incomplete"})


class V1Stream(Stream[T]):
    """The events of one streamed ``/v1`` reply; :meth:`close` is openai-python's name for
    :meth:`aclose`."""

    async def close(self) -> None:
        await self.aclose()


def _check_keys(params: Mapping[str, Any], spec: type) -> None:
    """A keyword the method does not take is a TypeError, as with a plain signature."""
    unknown = params.keys() - spec.__annotations__.keys()
    if unknown:
        raise TypeError(f"got unexpected keyword arguments: {', '.join(sorted(unknown))}")


def _is_done(part: object) -> bool:
    return part is DONE


def _response_final(part: object) -> bool:
    return isinstance(part, ResponseStreamEvent) and part.type in _RESPONSE_FINAL


class _Base:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None, model: str | None,
              params: Mapping[str, Any]) -> Call:
        query = params.get("extra_query")
        if query:
            path += "?" + urlencode(dict(query), doseq=True)
        call = self._client._call(method, path, body, model=model, timeout=params.get("timeout", NOT_GIVEN))
        headers = params.get("extra_headers")
        if headers:
            call.headers = dict(headers)
        return call

    async def _create(self, path: str, body: dict[str, Any], model: str, params: Mapping[str, Any], stream: bool,
                      whole: type[Any], part: type[Any], is_final: Callable[[Any], bool]) -> Any:
        """POST ``body``: the reply as ``whole``, or with ``stream`` a stream of ``part``."""
        call = self._call("POST", path, body, model, params)
        if stream:
            return self._stream(call, part, is_final)
        return await self._request(call, whole.model_validate_json)

    async def _request(self, call: Call, decode: Callable[[bytes], T]) -> T:
        return await self._client._transport.request(call, decode)

    def _stream(self, call: Call, cls: type[Any], is_final: Callable[[Any], bool]) -> V1Stream[Any]:
        transport = self._client._transport
        decode = sse_decoder(cls.__pydantic_validator__.validate_json)
        where = {"method": call.method, "url": transport.url(call.path), "model": call.model}

        async def events() -> AsyncGenerator[Any, None]:
            handed = 0
            parts = iter_parts(transport, call, decode, is_final)
            async with contextlib.aclosing(parts):
                async for part in parts:
                    if isinstance(part, Marker):
                        if isinstance(part, ErrorEvent):
                            raise stream_error(part, handed, **where)
                        continue
                    if cls is ResponseStreamEvent and part.type == "error":  # {"type":"error","message",...}
                        detail = {k: v for k, v in part.model_dump().items() if k in ("message", "code", "param")}
                        raise stream_error(ErrorEvent(json.dumps({"error": {**detail, "type": "error"}})), handed,
                                           **where)
                    handed += 1
                    yield part

        return V1Stream(events)


# -- chat -------------------------------------------------------------------------------------


class RequestOptions(TypedDict, total=False):
    """What every call also takes: ``extra_headers``, ``extra_query`` (added to the URL),
    ``extra_body`` (merged into the JSON body) and ``timeout`` (seconds or an ``httpx.Timeout``
    for this request)."""

    extra_headers: Mapping[str, str]
    extra_query: Mapping[str, Any]
    extra_body: Mapping[str, Any]
    timeout: Any


class ChatParams(RequestOptions, total=False):
    """The optional arguments of ``chat.completions.create`` (openai-python's names)."""

    frequency_penalty: float
    logprobs: bool
    max_completion_tokens: int  # sent as max_tokens: the one Ollama reads
    max_tokens: int
    n: int
    parallel_tool_calls: bool
    presence_penalty: float
    reasoning_effort: str
    response_format: Any
    seed: int
    stop: str | Sequence[str]
    stream_options: Mapping[str, Any]
    temperature: float
    tool_choice: str
    tools: Sequence[Any]
    top_logprobs: int
    top_p: float
    user: str


class ChatCompletions(_Base):
    """``client.openai.chat.completions``."""

    @overload
    async def create(self, *, messages: Sequence[Any], model: str, stream: Literal[False] = False,
                     **params: Unpack[ChatParams]) -> ChatCompletion: ...
    @overload
    async def create(self, *, messages: Sequence[Any], model: str, stream: Literal[True],
                     **params: Unpack[ChatParams]) -> V1Stream[ChatCompletionChunk]: ...
    async def create(self, *, messages: Sequence[Any], model: str, stream: bool = False,
                     **params: Unpack[ChatParams]) -> ChatCompletion | V1Stream[ChatCompletionChunk]:
        """``POST /v1/chat/completions``: a :class:`ChatCompletion`, or with ``stream=True`` a
        :class:`V1Stream` of :class:`ChatCompletionChunk` (``stream_options={"include_usage": True}``
        adds a last chunk with ``usage`` and no choices). The arguments are openai-python's
        (:class:`ChatParams`), plus ``extra_headers``, ``extra_body`` and ``timeout``.

        ``tools`` also takes Python callables and native tool dicts (converted as
        :meth:`AsyncClient.chat` does); ``response_format`` also takes a pydantic model class.
        ``reasoning_effort`` (``"none"``..``"max"``) sets the model's thinking, returned as
        ``message.reasoning``.
        """
        _check_keys(params, ChatParams)
        body = P.chat_body(model, messages, bool(stream), params)
        reply = await self._create("/v1/chat/completions", body, model, params, stream, ChatCompletion,
                                   ChatCompletionChunk, _is_done)
        return cast("ChatCompletion | V1Stream[ChatCompletionChunk]", reply)


class Chat:
    """``client.openai.chat``."""

    def __init__(self, client: AsyncClient) -> None:
        self.completions = ChatCompletions(client)


# -- legacy completions ---------------------------------------------------------------------------


class CompletionParams(RequestOptions, total=False):
    """The optional arguments of ``completions.create``."""

    frequency_penalty: float
    logprobs: int
    max_tokens: int
    n: int
    presence_penalty: float
    seed: int
    stop: str | Sequence[str]
    stream_options: Mapping[str, Any]
    suffix: str
    temperature: float
    top_p: float
    user: str


class Completions(_Base):
    """``client.openai.completions`` (the legacy text completion route)."""

    @overload
    async def create(self, *, model: str, prompt: str, stream: Literal[False] = False,
                     **params: Unpack[CompletionParams]) -> Completion: ...
    @overload
    async def create(self, *, model: str, prompt: str, stream: Literal[True],
                     **params: Unpack[CompletionParams]) -> V1Stream[Completion]: ...
    async def create(self, *, model: str, prompt: str, stream: bool = False,
                     **params: Unpack[CompletionParams]) -> Completion | V1Stream[Completion]:
        """``POST /v1/completions``: a :class:`Completion`, or a stream of them."""
        _check_keys(params, CompletionParams)
        body = P.completion_body(model, prompt, bool(stream), params)
        reply = await self._create("/v1/completions", body, model, params, stream, Completion, Completion, _is_done)
        return cast("Completion | V1Stream[Completion]", reply)


# -- embeddings ------------------------------------------------------------------------------------


def decode_embeddings(encoding: str, as_arrays: bool) -> Callable[[bytes], CreateEmbeddingResponse]:
    """The decoder of a ``/v1/embeddings`` reply.

    base64 with numpy: one float32 matrix; each ``embedding`` is a row of it (``as_arrays``) or
    that row as ``list[float]`` (what openai-python returns when no format was asked for).
    """
    if encoding != "base64" or (as_arrays and _numpy is None):
        return CreateEmbeddingResponse.model_validate_json

    def decode(body: bytes) -> CreateEmbeddingResponse:
        obj = loads(body)
        if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
            raise ValueError("no 'data' list in the reply")
        matrix = b64_matrix(obj["data"])
        rows = list(matrix) if as_arrays else (matrix.tolist() if _numpy is not None else matrix)
        data = [Embedding.model_construct(object="embedding", embedding=row, index=i) for i, row in enumerate(rows)]
        usage = obj.get("usage")
        result = CreateEmbeddingResponse.model_construct(
            object=obj.get("object", "list"), data=data, model=obj.get("model", ""),
            usage=EmbeddingUsage.model_validate(usage) if isinstance(usage, dict) else None,
        )
        if _numpy is not None:
            result._matrix = matrix
        return result

    return decode


class Embeddings(_Base):
    """``client.openai.embeddings``."""

    async def create(
        self, *, input: str | Sequence[str], model: str, dimensions: int | None = None,
        encoding_format: Literal["float", "base64"] | None = None, user: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> CreateEmbeddingResponse:
        """``POST /v1/embeddings``.

        - ``encoding_format`` not given: as openai-python, base64 goes over the wire (a quarter of
          the bytes) and each ``embedding`` is a ``list[float]``;
        - ``"base64"``: with numpy, each ``embedding`` is a float32 row of one ``(n, dim)`` matrix
          (``response.vectors()``), decoded without parsing a single float; without numpy, the
          base64 string as openai-python gives it;
        - ``"float"``: JSON floats, ``list[float]``.
        """
        if encoding_format is not None and encoding_format not in ("float", "base64"):
            raise RequestError(f"must be 'float' or 'base64', not {encoding_format!r}", field="encoding_format")
        _check_keys(options, RequestOptions)
        wire = encoding_format or "base64"
        body = P.embedding_body(model, input, user=user, dimensions=dimensions, encoding_format=wire,
                                extra_body=options.get("extra_body"))
        call = self._call("POST", "/v1/embeddings", body, model, options)
        return await self._request(call, decode_embeddings(wire, as_arrays=encoding_format == "base64"))


# -- models ---------------------------------------------------------------------------------------------


class Models(_Base):
    """``client.openai.models``."""

    def list(self, **options: Unpack[RequestOptions]) -> ModelsList:
        """``GET /v1/models``: ``await`` it for a :class:`ModelsPage` (``.data``), or ``async for``
        over it for each :class:`Model`, as with openai-python's paginator."""
        _check_keys(options, RequestOptions)
        call = self._call("GET", "/v1/models", None, None, options)
        return ModelsList(lambda: self._request(call, ModelsPage.model_validate_json))

    async def retrieve(self, model: str, **options: Unpack[RequestOptions]) -> Model:
        """``GET /v1/models/{model}``; an unknown model raises :class:`ModelNotFoundError`."""
        path = "/v1/models/" + quote(check_model(model), safe=":/")
        _check_keys(options, RequestOptions)
        call = self._call("GET", path, None, None, options)
        return await self._request(call, Model.model_validate_json)


# -- responses ---------------------------------------------------------------------------------------------


class ResponseParams(RequestOptions, total=False):
    """The optional arguments of ``responses.create`` that Ollama implements (the stateful ones,
    ``background``, ``conversation``, ``previous_response_id``, are refused with a RequestError)."""

    background: bool
    conversation: Any
    include: Sequence[str]
    instructions: str
    max_output_tokens: int
    metadata: Mapping[str, Any]
    parallel_tool_calls: bool
    previous_response_id: str
    reasoning: Mapping[str, Any]
    store: bool
    temperature: float
    text: Mapping[str, Any]
    tool_choice: str
    tools: Sequence[Any]
    top_p: float
    truncation: str
    user: str


class Responses(_Base):
    """``client.openai.responses`` (as far as Ollama implements the Responses API: no stored state)."""

    @overload
    async def create(self, *, input: Any, model: str, stream: Literal[False] = False,
                     **params: Unpack[ResponseParams]) -> Response: ...
    @overload
    async def create(self, *, input: Any, model: str, stream: Literal[True],
                     **params: Unpack[ResponseParams]) -> V1Stream[ResponseStreamEvent]: ...
    async def create(self, *, input: Any, model: str, stream: bool = False,
                     **params: Unpack[ResponseParams]) -> Response | V1Stream[ResponseStreamEvent]:
        """``POST /v1/responses``: a :class:`Response` (``.output_text``), or with ``stream=True`` a
        :class:`V1Stream` of :class:`ResponseStreamEvent` ending with ``response.completed``."""
        _check_keys(params, ResponseParams)
        body = P.response_body(model, input, bool(stream), params)
        reply = await self._create("/v1/responses", body, model, params, stream, Response, ResponseStreamEvent,
                                   _response_final)
        return cast("Response | V1Stream[ResponseStreamEvent]", reply)


class OpenAILayer:
    """``client.openai``: ``chat.completions``, ``completions``, ``embeddings``, ``models``,
    ``responses``, on this client's pool, limits and retries."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self.chat = Chat(client)
        self.completions = Completions(client)
        self.embeddings = Embeddings(client)
        self.models = Models(client)
        self.responses = Responses(client)
