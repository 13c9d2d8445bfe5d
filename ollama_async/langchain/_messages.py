"""LangChain messages to Ollama chat messages, and Ollama replies back to LangChain messages.

Requests: human/AI/system/tool/chat messages become ``{role, content, images?, tool_calls?,
tool_name?, thinking?}``; content blocks may be text, inline images (``image_url`` with a
``data:`` URL or base64, ``image`` blocks with base64) and, on AI messages, ``tool_use`` /
``thinking`` / ``reasoning`` blocks (kept as tool calls and thinking). Anything else (image URLs
to fetch, files, audio) is a :class:`~ollama_async.RequestError` naming the block: Ollama takes
inline images only, and a silently dropped block would change what the model sees.

Replies: a whole :class:`~ollama_async.ChatResponse` becomes an ``AIMessage`` and each stream
chunk an ``AIMessageChunk``, with tool calls (ids kept when the server sends them), thinking in
``additional_kwargs["reasoning_content"]``, token usage from ``prompt_eval_count``/``eval_count``
and the server's metadata (model name, done reason, durations) in ``response_metadata``. When a
tool call was forced (``_tool_choice.py``), the reply's content is the call and is read as one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, cast

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call, tool_call_chunk

from .._errors import RequestError
from .._types import ChatResponse, Message
from ._tool_choice import forced_call

__all__ = ["StreamState", "ai_message", "chunk_message", "to_ollama_messages"]

_METADATA_FIELDS = (
    "done_reason", "total_duration", "load_duration", "prompt_eval_duration", "eval_duration", "created_at",
)


_ROLES: tuple[tuple[type[BaseMessage], str], ...] = (
    (HumanMessage, "user"), (AIMessage, "assistant"), (SystemMessage, "system"), (ToolMessage, "tool"),
)


def _role(message: BaseMessage, field: str) -> str:
    if isinstance(message, ChatMessage):
        return message.role
    for cls, role in _ROLES:
        if isinstance(message, cls):
            return role
    raise RequestError(f"unsupported message type {type(message).__name__}", field=field)


def _image_from_block(block: Mapping[str, Any], field: str) -> str:
    """The base64 (or ``data:`` URL, stripped by the client) of an inline image block."""
    if block.get("type") == "image_url":
        url = block.get("image_url")
        url = url.get("url") if isinstance(url, Mapping) else url
        if isinstance(url, str) and (url.startswith("data:") or "://" not in url):
            return url
        raise RequestError("Ollama takes inline images only: a data: URL or base64, not a URL to fetch",
                           field=field)
    data = block.get("base64") or (block.get("data") if block.get("source_type") == "base64" else None)
    source = block.get("source")
    if data is None and isinstance(source, Mapping) and source.get("type") == "base64":
        data = source.get("data")
    if isinstance(data, str) and data:
        return data
    raise RequestError("Ollama takes inline images only (base64 data), not an image URL or file id", field=field)


def _content(message: BaseMessage, out: dict[str, Any], field: str) -> None:
    """Fill ``content``/``images``/``thinking`` of ``out`` from the message's content."""
    content = message.content
    if isinstance(content, str):
        out["content"] = content
        return
    texts: list[str] = []
    images: list[str] = []
    for i, block in enumerate(content):
        where = f"{field}.content[{i}]"
        if isinstance(block, str):
            texts.append(block)
            continue
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind in ("image_url", "image"):
            images.append(_image_from_block(block, where))
        elif kind in ("thinking", "reasoning") and isinstance(message, AIMessage):
            thought = block.get("thinking") or block.get("reasoning")
            if isinstance(thought, str) and thought:
                out.setdefault("thinking", thought)
        elif kind in ("tool_use", "tool_call") and isinstance(message, AIMessage):
            continue  # the same calls are in message.tool_calls
        else:
            raise RequestError(f"a {kind!r} content block cannot be sent to Ollama (text and inline images only)",
                               field=where)
    out["content"] = "\n".join(texts)
    if images:
        out["images"] = images


def to_ollama_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """The ``messages`` of an ``/api/chat`` request for a LangChain conversation."""
    tool_names: dict[str, str] = {}
    result: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        field = f"messages[{index}]"
        out: dict[str, Any] = {"role": _role(message, field)}
        _content(message, out, field)
        if isinstance(message, AIMessage):
            calls = []
            for call in message.tool_calls:
                entry: dict[str, Any] = {"function": {"name": call["name"], "arguments": call["args"]}}
                call_id = call.get("id")
                if call_id:
                    entry["id"] = call_id
                    tool_names[call_id] = call["name"]
                calls.append(entry)
            if calls:
                out["tool_calls"] = calls
            thinking = message.additional_kwargs.get("reasoning_content")
            if isinstance(thinking, str) and thinking:
                out["thinking"] = thinking
        elif isinstance(message, ToolMessage):
            name = message.name or tool_names.get(message.tool_call_id)
            if name:
                out["tool_name"] = name
        result.append(out)
    return result


def _arguments(raw: Any) -> dict[str, Any]:
    """Tool-call arguments as a dict (some models send them as a JSON string)."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return {"input": raw}
        return parsed if isinstance(parsed, dict) else {"input": parsed}
    return {}


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _call_id(call: Message.ToolCall) -> str:
    given = call.get("id")
    return given if isinstance(given, str) and given else _new_call_id()


def usage(part: ChatResponse) -> UsageMetadata:
    """Token usage from the server's counts (absent counts are 0: a cached prompt reports none)."""
    prompt = part.prompt_eval_count or 0
    output = part.eval_count or 0
    return cast(UsageMetadata, {"input_tokens": prompt, "output_tokens": output, "total_tokens": prompt + output})


def response_metadata(part: ChatResponse, model: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"model_name": part.model or model, "model_provider": "ollama"}
    for name in _METADATA_FIELDS:
        value = getattr(part, name)
        if value is not None:
            meta[name] = value
    return meta


def _thinking(message: Message) -> dict[str, Any]:
    return {"reasoning_content": message.thinking} if message.thinking else {}


def ai_message(response: ChatResponse, model: str, *, forced: bool = False) -> AIMessage:
    """A whole reply as an ``AIMessage``; a forced tool call's content is read as the call."""
    message = response.message
    calls = [
        tool_call(name=c.function.name, args=_arguments(c.function.arguments), id=_call_id(c))
        for c in message.tool_calls or ()
    ]
    content = message.content or ""
    invalid: list[Any] = []
    if forced and not calls:
        calls, invalid = forced_call(content, _new_call_id())
        content = ""
    return AIMessage(
        content=content,
        tool_calls=calls,
        invalid_tool_calls=invalid,
        additional_kwargs=_thinking(message),
        usage_metadata=usage(response),
        response_metadata=response_metadata(response, model),
    )


class StreamState:
    """What the chunks of one stream share: the running index of its tool calls and, when the
    call is forced, the content so far (it is the call, read when the stream ends)."""

    __slots__ = ("forced", "held", "native_calls", "tool_calls")

    def __init__(self, forced: bool = False) -> None:
        self.forced = forced
        self.held: list[str] = []
        self.native_calls = False
        self.tool_calls = 0


def chunk_message(part: ChatResponse, model: str, state: StreamState) -> AIMessageChunk:
    """One stream chunk as an ``AIMessageChunk``; the final one carries usage and metadata."""
    message = part.message
    content = message.content or ""
    chunks = []
    for c in message.tool_calls or ():
        chunks.append(tool_call_chunk(name=c.function.name, args=json.dumps(_arguments(c.function.arguments)),
                                      id=_call_id(c), index=state.tool_calls))
        state.tool_calls += 1
        state.native_calls = True
    if state.forced:
        state.held.append(content)
        content = ""
        if part.done and not state.native_calls:
            calls, invalid = forced_call("".join(state.held), _new_call_id())
            chunks += [tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=state.tool_calls)
                       for c in calls]
            chunks += [tool_call_chunk(name=None, args=c["args"], id=c["id"], index=state.tool_calls)
                       for c in invalid]
    if part.done:
        return AIMessageChunk(
            content=content, tool_call_chunks=chunks, additional_kwargs=_thinking(message),
            usage_metadata=usage(part), response_metadata=response_metadata(part, model), chunk_position="last",
        )
    return AIMessageChunk(content=content, tool_call_chunks=chunks, additional_kwargs=_thinking(message))
