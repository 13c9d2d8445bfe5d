"""``tool_choice`` on a server whose API has none: forcing a tool call through structured output.

Ollama's chat API offers tools but cannot be told to call one. A forced choice (``"any"``,
``"required"``, ``True``, or a tool's name) is therefore sent as a ``format`` JSON schema that
only a tool call satisfies: ``{"name": <const>, "arguments": <the tool's parameters>}``, one
object per allowed tool (``anyOf`` when several). Decoding is constrained to the schema, so the
reply is a call; the tools are still sent as tools, so the model's prompt describes them. The
reply's content is then read back as the call (a model that answers with a native tool call
instead is taken as it is).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import InvalidToolCall, ToolCall
from langchain_core.messages.tool import invalid_tool_call, tool_call

from .._errors import RequestError

__all__ = ["ToolPlan", "forced_call", "plan_tools"]

_FORCING = ("any", "required")


class ToolPlan:
    """What one request sends for its tools: ``tools``, and ``format`` when a call is forced."""

    __slots__ = ("format", "tools")

    def __init__(self, tools: list[dict[str, Any]] | None, format: dict[str, Any] | None) -> None:
        self.tools = tools
        self.format = format

    @property
    def forced(self) -> bool:
        return self.format is not None


def _option(tool: Mapping[str, Any]) -> dict[str, Any]:
    fn = tool["function"]
    params = fn.get("parameters") or {"type": "object", "properties": {}}
    option: dict[str, Any] = {
        "type": "object",
        "properties": {"name": {"const": fn["name"]}, "arguments": params},
        "required": ["name", "arguments"],
    }
    if fn.get("description"):
        option["description"] = fn["description"]
    return option


def _named(tools: list[dict[str, Any]], tool_choice: Any) -> list[dict[str, Any]]:
    name = tool_choice
    if isinstance(tool_choice, Mapping):
        fn = tool_choice.get("function")
        name = fn.get("name") if isinstance(fn, Mapping) else tool_choice.get("name")
    chosen = [t for t in tools if t["function"]["name"] == name]
    if not isinstance(name, str) or not chosen:
        names = [t["function"]["name"] for t in tools]
        raise RequestError(f"must be 'auto', 'any', 'required', 'none' or one of the tools {names}, not {tool_choice!r}",
                           field="tool_choice")
    return chosen


def plan_tools(tools: list[dict[str, Any]], tool_choice: Any) -> ToolPlan:
    """The tools and forcing ``format`` for ``tool_choice``; a bad choice is a ``RequestError``.

    ``None``/``"auto"``: the tools, the model decides. ``"none"``/``False``: no tools.
    ``"any"``/``"required"``/``True``: the tools, a call of one of them forced. A name (or
    ``{"function": {"name": ...}}``): only that tool, its call forced.
    """
    if tool_choice is None or tool_choice == "auto":
        return ToolPlan(tools, None)
    if tool_choice is False or tool_choice == "none":
        return ToolPlan(None, None)
    allowed = tools if tool_choice is True or tool_choice in _FORCING else _named(tools, tool_choice)
    options = [_option(t) for t in allowed]
    return ToolPlan(allowed, options[0] if len(options) == 1 else {"anyOf": options})


def forced_call(content: str, call_id: str) -> tuple[list[ToolCall], list[InvalidToolCall]]:
    """The tool call a forced reply's content holds (or why it does not hold one)."""
    try:
        obj = json.loads(content)
    except ValueError as exc:
        return [], [invalid_tool_call(name=None, args=content, id=call_id, error=f"not JSON: {exc}")]
    if isinstance(obj, dict) and isinstance(obj.get("name"), str) and isinstance(obj.get("arguments"), dict):
        return [tool_call(name=obj["name"], args=obj["arguments"], id=call_id)], []
    return [], [invalid_tool_call(name=None, args=content, id=call_id, error="not a {name, arguments} object")]
