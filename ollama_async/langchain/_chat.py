"""``ChatOllamaAsync``: a LangChain chat model on this library's :class:`~ollama_async.AsyncClient`.

Every call goes through the client's pool, its per-model in-flight limiter and its retries, so
LangChain traffic and the rest of an application share one server's slots instead of
overloading it behind the client's back. ``abatch``/``batch`` fan out as LangChain does (each
input one call), and the limiter bounds them: the excess waits in the client, not in the server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import JsonOutputKeyToolsParser, JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import PydanticToolsParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel
from pydantic.v1 import BaseModel as BaseModelV1

from .._client import AsyncClient
from .._errors import RequestError
from ._messages import StreamState, ai_message, chunk_message, to_ollama_messages
from ._options import ClientSettings
from ._tool_choice import plan_tools

__all__ = ["ChatOllamaAsync"]

StructuredMethod = Literal["json_schema", "function_calling", "json_mode"]


class _Request:
    """One call's ``AsyncClient.chat`` arguments, and whether its tool call is forced."""

    __slots__ = ("chat", "forced")

    def __init__(self, chat: dict[str, Any], forced: bool) -> None:
        self.chat = chat
        self.forced = forced


class ChatOllamaAsync(ClientSettings, BaseChatModel):
    """A LangChain chat model for an Ollama server, through :class:`ollama_async.AsyncClient`.

    Pass ``client=`` to share one client (its pool and per-model limits) between many models,
    chains and plain calls; otherwise the model creates its own from ``base_url`` and the other
    connection settings. ``invoke``/``stream``/``batch`` work outside an event loop: they run on
    the client's loop thread (see the package docs). ``bind_tools``, ``with_structured_output``
    (JSON schema through Ollama's ``format``, tool calling, or JSON mode), usage metadata, and
    tool-call chunks in streams are supported.

    Example::

        from ollama_async import AsyncClient
        from ollama_async.langchain import ChatOllamaAsync

        client = AsyncClient(concurrency=4)
        llm = ChatOllamaAsync(model="llama3.2", client=client, temperature=0)
        print((await llm.ainvoke("Hello")).content)
    """

    model: str
    """The Ollama model name (``llama3.2``, ``qwen3:8b``, ...)."""
    temperature: float | None = None
    max_tokens: int | None = None
    """The most tokens to generate (Ollama's ``num_predict``)."""
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    num_ctx: int | None = None
    """Context window; a load-time option (changing it reloads the model)."""
    stop: list[str] | None = None
    options: dict[str, Any] | None = None
    """Other Ollama options; the fields above take precedence."""
    reasoning: bool | str | None = None
    """Ollama's ``think``: ``True``/``False`` or a level (``"low"``, ``"medium"``, ``"high"``)."""
    format: str | dict[str, Any] | None = None
    """``"json"`` or a JSON schema for every call (``with_structured_output`` sets it per call)."""
    keep_alive: float | str | None = None
    streaming: bool = False
    """Let ``invoke`` stream (callbacks get each token)."""

    # -- LangChain plumbing ---------------------------------------------------------------------

    @property
    def _llm_type(self) -> str:
        return "ollama-async"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "base_url": self.base_url, **self._options()}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(ls_provider="ollama", ls_model_name=kwargs.get("model") or self.model,
                                 ls_model_type="chat")
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if ls_stop := stop or self.stop:
            params["ls_stop"] = ls_stop
        return params

    # -- requests -------------------------------------------------------------------------------

    def _options(self, stop: list[str] | None = None) -> dict[str, Any]:
        options = dict(self.options or {})
        fields = {"temperature": self.temperature, "num_predict": self.max_tokens, "top_p": self.top_p,
                  "top_k": self.top_k, "seed": self.seed, "num_ctx": self.num_ctx}
        options.update({k: v for k, v in fields.items() if v is not None})
        stops = stop if stop is not None else self.stop
        if stops:
            options["stop"] = list(stops)
        return options

    def _request(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> _Request:
        """The arguments of ``AsyncClient.chat`` for one call (``kwargs``: the call's and bound ones)."""
        kwargs = dict(kwargs)
        options = self._options(stop)
        options.update(kwargs.pop("options", None) or {})
        tools = kwargs.pop("tools", None)
        tool_choice = kwargs.pop("tool_choice", None)
        fmt = kwargs.pop("format", self.format)
        forced = False
        if tools:
            plan = plan_tools(tools, tool_choice)
            tools, forced = plan.tools, plan.forced
            if forced:
                if fmt is not None:
                    raise RequestError("a forced tool_choice is sent as format=, so it cannot be combined "
                                       "with another format", field="format")
                fmt = plan.format
        chat: dict[str, Any] = {
            "model": kwargs.pop("model", None) or self.model,
            "messages": to_ollama_messages(messages),
            "tools": tools or None,
            "format": fmt,
            "think": kwargs.pop("reasoning", self.reasoning),
            "options": options or None,
            "keep_alive": kwargs.pop("keep_alive", self.keep_alive),
            **self._call_timeout(),
        }
        kwargs.pop("stream", None)
        kwargs.pop("strict", None)  # OpenAI's strict schemas: Ollama's format is always enforced
        chat.update(kwargs)  # logprobs, top_logprobs, timeout: as AsyncClient.chat takes them
        return _Request(chat, forced)

    async def _reply(self, client: AsyncClient, request: _Request) -> ChatResult:
        chat = request.chat
        response = await client.chat(**chat, stream=False)
        message = ai_message(response, chat["model"], forced=request.forced)
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _chunks(self, client: AsyncClient, request: _Request) -> AsyncIterator[ChatGenerationChunk]:
        chat = request.chat
        state = StreamState(forced=request.forced)
        stream = await client.chat(**chat, stream=True)
        async with stream:
            async for part in stream:
                yield ChatGenerationChunk(message=chunk_message(part, chat["model"], state))

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any,
    ) -> ChatResult:
        request = self._request(messages, stop, kwargs)
        return self.clients.run(lambda client: self._reply(client, request))

    async def _agenerate(
        self, messages: list[BaseMessage], stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any,
    ) -> ChatResult:
        request = self._request(messages, stop, kwargs)
        return await self._reply(self.clients.current(), request)

    def _stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        request = self._request(messages, stop, kwargs)
        for chunk in self.clients.iterate(lambda client: self._chunks(client, request)):
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self, messages: list[BaseMessage], stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        request = self._request(messages, stop, kwargs)
        async for chunk in self._chunks(self.clients.current(), request):
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    # -- tools and structured output ------------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer ``tools`` (anything ``convert_to_openai_tool`` takes) on every call.

        ``tool_choice``: ``None``/``"auto"`` lets the model decide; ``"any"``/``"required"``/
        ``True`` or a tool's name force a call, sent as a ``format`` schema that only such a call
        satisfies (Ollama's API has no ``tool_choice``; see ``_tool_choice.py``); ``"none"``
        offers no tools. An unknown name is a :class:`~ollama_async.RequestError` now.
        """
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            plan_tools(formatted, tool_choice)  # check it now, not at the first call
            kwargs["tool_choice"] = tool_choice
        return super().bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: StructuredMethod = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Answers parsed into ``schema`` (a pydantic class, a TypedDict or a JSON schema).

        ``method="json_schema"`` (default) constrains decoding with Ollama's ``format``: the
        output always matches. ``"function_calling"`` offers the schema as the only tool;
        ``"json_mode"`` asks for any JSON (``format="json"``) and leaves the keys to the prompt.
        ``include_raw=True`` gives ``{"raw", "parsed", "parsing_error"}``.
        """
        if kwargs:
            raise RequestError(f"unexpected arguments {sorted(kwargs)}", field="with_structured_output")
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        if schema is None and method != "json_mode":
            raise RequestError("a schema is needed unless method='json_mode'", field="schema")
        parser: Runnable[Any, Any]
        if method == "function_calling":
            tool = convert_to_openai_tool(schema)  # type: ignore[arg-type]
            name = tool["function"]["name"]
            llm = self.bind_tools([schema], tool_choice=name,  # type: ignore[list-item]
                                  ls_structured_output_format={"kwargs": {"method": method}, "schema": tool})
            parser = (PydanticToolsParser(tools=[schema], first_tool_only=True) if is_pydantic  # type: ignore[list-item]
                      else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True))
        elif method == "json_mode":
            llm = self.bind(format="json", ls_structured_output_format={"kwargs": {"method": method}, "schema": schema})
            parser = PydanticOutputParser(pydantic_object=schema) if is_pydantic else JsonOutputParser()  # type: ignore[arg-type]
        elif method == "json_schema":
            if is_pydantic:
                model_class: Any = schema
                json_schema = (model_class.schema() if issubclass(model_class, BaseModelV1)
                               else model_class.model_json_schema())
                llm = self.bind(format=json_schema,
                                ls_structured_output_format={"kwargs": {"method": method}, "schema": schema})
                parser = PydanticOutputParser(pydantic_object=schema)  # type: ignore[arg-type]
            else:
                json_schema = schema if isinstance(schema, dict) else convert_to_json_schema(schema)  # type: ignore[arg-type]
                llm = self.bind(format=json_schema,
                                ls_structured_output_format={"kwargs": {"method": method}, "schema": json_schema})
                parser = JsonOutputParser()
        else:
            raise RequestError(f"must be 'json_schema', 'function_calling' or 'json_mode', not {method!r}",
                               field="method")
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        fallback = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks([fallback], exception_key="parsing_error")
