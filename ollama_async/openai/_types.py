"""Typed ``/v1`` replies, by openai-python's names and shapes.

Every model tolerates (and keeps) fields it does not know (``extra="allow"``), so a newer server
never breaks decoding, and reads like openai-python's objects (``resp.choices[0].message.content``,
``chunk.choices[0].delta``, ``resp.usage.total_tokens``, ``resp.model_dump()``). Ollama's own
extras are typed where it sends them: ``reasoning`` (the model's thinking) on messages and
deltas.

``/v1`` replies carry no server timings. :attr:`_V1Model.total_duration` (0, a class constant, not
a field) tells the per-model limiter that a request finished normally, so the adaptive bound
learns from the request's wall time as it does for embed replies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, PrivateAttr

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "ChatCompletionMessageToolCall",
    "ChatCompletionTokenLogprob",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaToolCall",
    "ChoiceLogprobs",
    "ChunkChoice",
    "Completion",
    "CompletionChoice",
    "CompletionUsage",
    "CreateEmbeddingResponse",
    "Embedding",
    "EmbeddingUsage",
    "Function",
    "Model",
    "ModelsPage",
    "Response",
    "ResponseOutputContent",
    "ResponseOutputItem",
    "ResponseStreamEvent",
    "ResponseUsage",
    "TopLogprob",
]


class _V1Model(BaseModel):
    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    #: See the module docstring: lets the adaptive limiter learn from /v1 wall times.
    total_duration: ClassVar[int] = 0


# -- chat completions -------------------------------------------------------------------------


class Function(_V1Model):
    """A tool call's function: ``arguments`` is a JSON string, as OpenAI sends it."""

    name: str = ""
    arguments: str = ""


class ChatCompletionMessageToolCall(_V1Model):
    id: str = ""
    type: str = "function"
    function: Function = Function()
    index: int | None = None


class ChatCompletionMessage(_V1Model):
    role: str = "assistant"
    content: str | None = None
    reasoning: str | None = None  # Ollama: the model's thinking
    tool_calls: list[ChatCompletionMessageToolCall] | None = None
    refusal: str | None = None


class TopLogprob(_V1Model):
    token: str = ""
    logprob: float = 0.0
    bytes: list[int] | None = None


class ChatCompletionTokenLogprob(_V1Model):
    token: str = ""
    logprob: float = 0.0
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = []


class ChoiceLogprobs(_V1Model):
    content: list[ChatCompletionTokenLogprob] | None = None
    refusal: list[ChatCompletionTokenLogprob] | None = None


class Choice(_V1Model):
    index: int = 0
    message: ChatCompletionMessage = ChatCompletionMessage()
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class CompletionUsage(_V1Model):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatCompletion(_V1Model):
    """``/v1/chat/completions`` without streaming."""

    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    system_fingerprint: str | None = None
    choices: list[Choice] = []
    usage: CompletionUsage | None = None


class ChoiceDeltaToolCall(_V1Model):
    index: int = 0
    id: str | None = None
    type: str | None = None
    function: Function | None = None


class ChoiceDelta(_V1Model):
    role: str | None = None
    content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None
    refusal: str | None = None


class ChunkChoice(_V1Model):
    index: int = 0
    delta: ChoiceDelta = ChoiceDelta()
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(_V1Model):
    """One SSE event of a streamed chat completion; ``usage`` only on the include_usage chunk."""

    id: str = ""
    object: str = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    system_fingerprint: str | None = None
    choices: list[ChunkChoice] = []
    usage: CompletionUsage | None = None


# -- legacy completions -------------------------------------------------------------------------


class CompletionChoice(_V1Model):
    text: str = ""
    index: int = 0
    finish_reason: str | None = None
    logprobs: Any = None


class Completion(_V1Model):
    """``/v1/completions``, whole or one streamed chunk (the same shape, as in openai-python)."""

    id: str = ""
    object: str = "text_completion"
    created: int = 0
    model: str = ""
    system_fingerprint: str | None = None
    choices: list[CompletionChoice] = []
    usage: CompletionUsage | None = None


# -- embeddings ---------------------------------------------------------------------------------


class Embedding(_V1Model):
    """One vector: ``list[float]``, or a float32 numpy row when base64 was asked for."""

    object: str = "embedding"
    embedding: Any = None
    index: int = 0


class EmbeddingUsage(_V1Model):
    prompt_tokens: int = 0
    total_tokens: int = 0


class CreateEmbeddingResponse(_V1Model):
    """``/v1/embeddings``. :meth:`vectors` gives all of them as one ``(n, dim)`` float32 array."""

    object: str = "list"
    data: list[Embedding] = []
    model: str = ""
    usage: EmbeddingUsage | None = None
    _matrix: Any = PrivateAttr(default=None)

    def vectors(self) -> Any:
        """Every embedding as one float32 numpy matrix (needs numpy).

        With ``encoding_format="base64"`` this is the array the reply was decoded into (no copy);
        otherwise it is built from the float lists.
        """
        if self._matrix is not None:
            return self._matrix
        import numpy

        return numpy.asarray([d.embedding for d in self.data], dtype=numpy.float32)


# -- models ---------------------------------------------------------------------------------------


class Model(_V1Model):
    id: str = ""
    object: str = "model"
    created: int = 0
    owned_by: str = ""


class ModelsPage(_V1Model):
    """``/v1/models``: ``.data`` holds the models; iterating the page yields them."""

    object: str = "list"
    data: list[Model] = []

    def __iter__(self) -> Iterator[Model]:  # type: ignore[override]
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


class ModelsList:
    """What ``models.list()`` returns, as openai-python's paginator: ``await`` it for the page,
    or ``async for`` over it for the models (nothing is sent until one of the two)."""

    def __init__(self, fetch: Callable[[], Awaitable[ModelsPage]]) -> None:
        self._fetch = fetch

    def __await__(self) -> Generator[Any, None, ModelsPage]:
        return self._fetch().__await__()

    async def __aiter__(self) -> AsyncIterator[Model]:
        page = await self._fetch()
        for model in page.data:
            yield model


# -- responses ------------------------------------------------------------------------------------


class ResponseOutputContent(_V1Model):
    type: str = "output_text"
    text: str = ""
    annotations: list[Any] = []
    logprobs: list[Any] | None = None


class ResponseOutputItem(_V1Model):
    """An output item: ``type`` is ``message``, ``function_call`` or ``reasoning``."""

    id: str = ""
    type: str = ""
    status: str | None = None
    role: str | None = None
    content: list[ResponseOutputContent] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    summary: list[Any] | None = None
    encrypted_content: str | None = None


class ResponseUsage(_V1Model):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class Response(_V1Model):
    """``/v1/responses``; :attr:`output_text` joins the text of every message, as in openai-python."""

    id: str = ""
    object: str = "response"
    created_at: float = 0
    status: str | None = None
    model: str = ""
    output: list[ResponseOutputItem] = []
    usage: ResponseUsage | None = None
    error: Any = None
    incomplete_details: Any = None
    instructions: Any = None

    @property
    def output_text(self) -> str:
        return "".join(
            c.text
            for item in self.output
            if item.type == "message"
            for c in item.content or ()
            if c.type == "output_text"
        )


class ResponseStreamEvent(_V1Model):
    """One event of a streamed response (``type`` says which: ``response.output_text.delta``, ...).

    The fields each kind carries are typed where common (``delta``, ``text``, ``item``,
    ``response``); the rest stay readable as extras.
    """

    type: str = ""
    sequence_number: int | None = None
    delta: str | None = None
    text: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    content_index: int | None = None
    arguments: str | None = None
    item: ResponseOutputItem | None = None
    response: Response | None = None
