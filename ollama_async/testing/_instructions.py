"""Simulated instruction following: which tools a chat request calls, with what, and JSON keys.

The simulator has no language model, so it follows a few fixed, documented rules that a real
model would also follow for the prompts frameworks' test suites send:

- **which tools**: a tool is called when the last user message names it (``get_weather``), or
  names one of the longer words of its name as a word of its own (``"what is the weather"``
  calls ``get_weather``; ``"create a customer"`` calls ``unicode_customer``);
- **arguments**: a call written out in the message, ``name(3)`` or ``name(city="Paris")``, gives
  those values (positional ones in the order of the schema's properties); otherwise quoted
  strings in the message (``'...'`` or ``"..."``) fill the string parameters in order; the rest
  are deterministic values valid for the parameter schema;
- **JSON mode** (``format: "json"``): when the message quotes identifiers (``'setup' and
  'punchline' keys``) the object has exactly those keys, otherwise ``{"response": ...}``;
- **a tool call as structured output** (a ``format`` schema of ``{"name": const, "arguments"}``
  objects, how clients force a call): the tool and arguments the rules above pick.

Everything is a pure function of the request, so tests can assert on the result.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from ._json import dumps
from ._text import Rng, schema_value, words

__all__ = ["calls_tool", "instructed_json", "last_user_text", "tool_arguments"]

#: Words of tool names that say nothing about what a tool does (``get_weather`` → ``weather``).
_GENERIC_WORDS = frozenset({"get", "set", "tool", "tools", "func", "function", "call", "make", "create", "run"})
_MIN_WORD = 4
_WORD = re.compile(r"[a-z0-9]+")
_NAME_PARTS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_QUOTED = re.compile(r"'([^'\n]+)'|\"([^\"\n]+)\"")
_IDENT = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user message of a chat body (the prompt of a generate body)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        prompt = body.get("prompt")
        return prompt if isinstance(prompt, str) else ""
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            return content if isinstance(content, str) else ""
    return ""


def calls_tool(name: str, text: str) -> bool:
    """Whether a message asks for tool ``name``: it names the tool or a telling word of its name."""
    lowered = text.lower()
    if name.lower() in lowered:
        return True
    said = set(_WORD.findall(lowered))
    parts = (p.lower() for p in _NAME_PARTS.findall(name))
    return any(len(p) >= _MIN_WORD and p not in _GENERIC_WORDS and p in said for p in parts)


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text.strip().strip("'\"")


def _written_call(name: str, text: str) -> tuple[list[Any], dict[str, Any]] | None:
    """The arguments of ``name(...)`` written in ``text``: positional values and ``key=value`` pairs."""
    match = re.search(rf"(?<![\w]){re.escape(name)}\s*\(([^()]*)\)", text)
    if match is None:
        return None
    positional: list[Any] = []
    named: dict[str, Any] = {}
    inner = match.group(1).strip()
    for part in (p for p in inner.split(",") if p.strip()) if inner else ():
        key, eq, value = part.partition("=")
        if eq and _IDENT.match(key.strip()):
            named[key.strip()] = _literal(value)
        else:
            positional.append(_literal(part))
    return positional, named


def tool_arguments(name: str, parameters: Any, text: str, rng: Rng) -> dict[str, Any]:
    """The arguments of a call to tool ``name`` asked for by ``text`` (see the module's rules)."""
    schema = parameters if isinstance(parameters, dict) else {"type": "object"}
    args = schema_value(schema, rng)
    if not isinstance(args, dict):
        args = {}
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    written = _written_call(name, text)
    if written is not None:
        positional, named = written
        args.update(zip(props, positional, strict=False))
        args.update(named)
        return args
    quoted = [a or b for a, b in _QUOTED.findall(text)]
    string_params = [p for p in args if isinstance(props.get(p), dict) and props[p].get("type") == "string"]
    args.update(zip(string_params, quoted, strict=False))
    return args


def _tool_call_options(fmt: dict[str, Any]) -> list[tuple[str, Any]] | None:
    """``(name, arguments schema)`` per option when ``fmt`` asks for one JSON-encoded tool call.

    That is an object schema with exactly ``name`` (a ``const``) and ``arguments``, or an
    ``anyOf`` of such objects: how clients force a tool call through structured output.
    """
    options = fmt.get("anyOf") if "anyOf" in fmt else [fmt]
    if not isinstance(options, list) or not options:
        return None
    found: list[tuple[str, Any]] = []
    for option in options:
        props = option.get("properties") if isinstance(option, dict) else None
        if not isinstance(props, dict) or set(props) != {"name", "arguments"}:
            return None
        name = props["name"].get("const") if isinstance(props["name"], dict) else None
        if not isinstance(name, str):
            return None
        found.append((name, props["arguments"]))
    return found


def instructed_json(body: dict[str, Any], key: int, n_words: int) -> str | None:
    """The JSON a structured-output request gets when the message says what it should hold.

    ``format: "json"`` with quoted identifiers in the message: an object with those keys. A
    schema asking for one JSON-encoded tool call: the tool the message asks for (else the first),
    with the arguments it gives (the same rules as native tool calls). Otherwise None (the
    generic schema value).
    """
    fmt = body.get("format")
    text = last_user_text(body)
    if fmt == "json":
        keys = [k for k in (a or b for a, b in _QUOTED.findall(text)) if _IDENT.match(k)]
        if not keys:
            return None
        rng = Rng(key)
        return dumps({k: words(rng, max(1, n_words // len(keys))) for k in dict.fromkeys(keys)}).decode()
    options = _tool_call_options(fmt) if isinstance(fmt, dict) else None
    if not options:
        return None
    name, schema = next((o for o in options if calls_tool(o[0], text)), options[0])
    return dumps({"name": name, "arguments": tool_arguments(name, schema, text, Rng(key))}).decode()
