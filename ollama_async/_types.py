"""Typed responses and request parts, by the official ``ollama`` package's names.

Every model here:

- tolerates fields it does not know (``extra="allow"``: a newer server's fields are kept and
  readable, never an error);
- gives attribute access and the official client's mapping access (``resp["message"]["content"]``,
  ``"key" in resp``, ``resp.get("key")``);
- is decoded straight from the response bytes by pydantic's JSON parser (one pass, no
  ``json.loads`` followed by a second validation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from pydantic import BaseModel, ByteSize, ConfigDict, Field

from ._images import Image

if TYPE_CHECKING:
    from ._format import FormatInput
    from ._observe import RequestMetrics

__all__ = [
    "ChatResponse",
    "EmbedResponse",
    "EmbeddingsResponse",
    "GenerateResponse",
    "Image",
    "ListResponse",
    "Logprob",
    "Message",
    "ModelDetails",
    "Options",
    "ProcessResponse",
    "ProgressResponse",
    "ShowResponse",
    "StatusResponse",
    "SubscriptableBaseModel",
    "TokenLogprob",
    "Tool",
    "VersionResponse",
    "WebFetchResponse",
    "WebSearchResponse",
    "WebSearchResult",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class SubscriptableBaseModel(BaseModel):
    """A pydantic model that also reads like the dict the official client's users index into."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def __getitem__(self, key: str) -> Any:
        if key in self:
            return getattr(self, key)
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        if key in self.model_fields_set:
            return True
        extra = self.__pydantic_extra__
        if extra and key in extra:
            return True
        field = type(self).model_fields.get(key)
        return field is not None and field.default is not None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if hasattr(self, key) else default

    @property
    def metrics(self) -> RequestMetrics | None:
        """What the request that produced this reply cost (:class:`~ollama_async.RequestMetrics`).

        Not a field: ``model_dump()``, ``resp["key"]`` and ``"key" in resp`` do not see it. None
        for a reply built by hand, a stream part other than the final one, or ``metrics=False``.
        """
        private = self.__pydantic_private__
        return private.get("metrics") if private else None


class Options(SubscriptableBaseModel):
    """Model options (``options=`` of generate/chat/embed). Load-time keys reload the model."""

    # load-time options
    numa: bool | None = None
    num_ctx: int | None = None
    num_batch: int | None = None
    num_gpu: int | None = None
    main_gpu: int | None = None
    low_vram: bool | None = None
    f16_kv: bool | None = None
    logits_all: bool | None = None
    vocab_only: bool | None = None
    use_mmap: bool | None = None
    use_mlock: bool | None = None
    embedding_only: bool | None = None
    num_thread: int | None = None
    # runtime options
    num_keep: int | None = None
    seed: int | None = None
    num_predict: int | None = None
    top_k: int | None = None
    top_p: float | None = None
    tfs_z: float | None = None
    typical_p: float | None = None
    min_p: float | None = None
    repeat_last_n: int | None = None
    temperature: float | None = None
    repeat_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    mirostat: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    penalize_newline: bool | None = None
    stop: Sequence[str] | None = None


class TokenLogprob(SubscriptableBaseModel):
    token: str
    logprob: float


class Logprob(TokenLogprob):
    top_logprobs: list[TokenLogprob] | None = None


class BaseGenerateResponse(SubscriptableBaseModel):
    """Fields shared by generate and chat chunks. Metrics are in nanoseconds, final chunk only."""

    model: str | None = None
    created_at: str | None = None
    done: bool | None = None
    done_reason: str | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None

    # The ``format=`` of the call, for ``parse()``. A property over ``__pydantic_private__`` rather
    # than a ``PrivateAttr``: a private attribute makes pydantic run a post-init hook on every
    # validation (twice in subclasses), ~1.7 µs of the ~4.5 µs it takes to decode a stream chunk.
    @property
    def _format(self) -> Any:
        private = self.__pydantic_private__
        return private.get("_format") if private else None

    @_format.setter
    def _format(self, value: Any) -> None:
        object.__setattr__(self, "__pydantic_private__", {**(self.__pydantic_private__ or {}), "_format": value})

    @property
    def queue_duration(self) -> int | None:
        """Nanoseconds the request waited for a slot inside the server (final chunk only).

        ``total - load - prompt_eval - eval``: the server's own measure of queueing, which tells
        a client that sends more than the server has slots.
        """
        if self.total_duration is None:
            return None
        work = (self.load_duration or 0) + (self.prompt_eval_duration or 0) + (self.eval_duration or 0)
        return max(0, self.total_duration - work)

    @property
    def tokens_per_second(self) -> float | None:
        """Generation speed from the server's metrics: eval_count / eval_duration."""
        if not self.eval_count or not self.eval_duration:
            return None
        return self.eval_count * 1e9 / self.eval_duration

    def _text(self) -> str:
        """The output text that ``parse`` reads (``response`` or ``message.content``)."""
        return ""

    @overload
    def parse(self, format: type[M]) -> M: ...
    @overload
    def parse(self, format: FormatInput = None) -> Any: ...
    def parse(self, format: Any = None) -> Any:
        """Parse the output text back into the structured type it was asked for.

        Without an argument, uses the ``format=`` of the call that produced this response (a
        pydantic model class gives an instance of it). Raises
        :class:`~ollama_async.StructuredOutputError` when the output does not validate.
        """
        from ._format import parse_output

        target = format if format is not None else self._format
        if target is None or target == "":
            target = "json"
        return parse_output(self._text(), target)


class GenerateResponse(BaseGenerateResponse):
    """One ``/api/generate`` reply, or one chunk of its stream."""

    response: str | None = None
    thinking: str | None = None
    context: list[int] | None = None
    logprobs: list[Logprob] | None = None
    image: str | None = None
    completed: int | None = None
    total: int | None = None

    def _text(self) -> str:
        return self.response or ""


class Message(SubscriptableBaseModel):
    """A chat message (request or response)."""

    role: str
    content: str | None = None
    thinking: str | None = None
    images: Sequence[Image | str | bytes] | None = None
    tool_name: str | None = None

    class ToolCall(SubscriptableBaseModel):
        """A tool call the model asks for; ``id`` and ``function.index`` are kept when sent."""

        class Function(SubscriptableBaseModel):
            name: str
            arguments: Mapping[str, Any]

        function: Function

    tool_calls: Sequence[ToolCall] | None = None


class ChatResponse(BaseGenerateResponse):
    """One ``/api/chat`` reply, or one chunk of its stream."""

    message: Message
    logprobs: list[Logprob] | None = None

    def _text(self) -> str:
        return self.message.content or ""


class Tool(SubscriptableBaseModel):
    """A tool definition, in the official client's shape."""

    type: str | None = "function"

    class Function(SubscriptableBaseModel):
        name: str | None = None
        description: str | None = None

        class Parameters(SubscriptableBaseModel):
            type: Literal["object"] | None = "object"
            defs: Any | None = Field(None, alias="$defs")
            items: Any | None = None
            required: Sequence[str] | None = None

            class Property(SubscriptableBaseModel):
                model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

                type: str | Sequence[str] | None = None
                items: Any | None = None
                description: str | None = None
                enum: Sequence[Any] | None = None

            properties: Mapping[str, Property] | None = None

        parameters: Parameters | None = None

    function: Function | None = None


class EmbedResponse(BaseGenerateResponse):
    """``/api/embed``: one vector per input, in input order."""

    embeddings: list[list[float]]


class EmbeddingsResponse(SubscriptableBaseModel):
    """Legacy ``/api/embeddings``: one vector."""

    embedding: list[float]


class StatusResponse(SubscriptableBaseModel):
    status: str | None = None


class ProgressResponse(StatusResponse):
    """A pull/push/create status line; ``completed``/``total`` in bytes where given."""

    completed: int | None = None
    total: int | None = None
    digest: str | None = None


class ModelDetails(SubscriptableBaseModel):
    parent_model: str | None = None
    format: str | None = None
    family: str | None = None
    families: Sequence[str] | None = None
    parameter_size: str | None = None
    quantization_level: str | None = None
    context_length: int | None = None
    embedding_length: int | None = None


class ListResponse(SubscriptableBaseModel):
    """``/api/tags``: the models the server has."""

    class Model(SubscriptableBaseModel):
        model: str | None = None
        name: str | None = None
        modified_at: datetime | None = None
        digest: str | None = None
        size: ByteSize | None = None
        details: ModelDetails | None = None
        capabilities: list[str] | None = None
        host: str | None = None  # several hosts: which server has it (not in the server's reply)

    models: list[Model]


class ShowResponse(SubscriptableBaseModel):
    """``/api/show``. ``model_info`` may be absent (the official client then fails; we don't)."""

    modified_at: datetime | None = None
    template: str | None = None
    modelfile: str | None = None
    license: str | None = None
    details: ModelDetails | None = None
    modelinfo: Mapping[str, Any] | None = Field(default=None, alias="model_info")
    parameters: str | None = None
    system: str | None = None
    capabilities: list[str] | None = None


class ProcessResponse(SubscriptableBaseModel):
    """``/api/ps``: the models loaded now."""

    class Model(SubscriptableBaseModel):
        model: str | None = None
        name: str | None = None
        digest: str | None = None
        expires_at: datetime | None = None
        size: ByteSize | None = None
        size_vram: ByteSize | None = None
        details: ModelDetails | None = None
        context_length: int | None = None
        host: str | None = None  # several hosts: which server has it loaded (not in the server's reply)

    models: list[Model]


class VersionResponse(SubscriptableBaseModel):
    """``/api/version``."""

    version: str


class WebSearchResult(SubscriptableBaseModel):
    content: str | None = None
    title: str | None = None
    url: str | None = None


class WebSearchResponse(SubscriptableBaseModel):
    """ollama.com web search results."""

    results: list[WebSearchResult]


class WebFetchResponse(SubscriptableBaseModel):
    """An ollama.com web fetch result."""

    title: str | None = None
    content: str | None = None
    links: list[str] | None = None
