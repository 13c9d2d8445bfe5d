"""Tool definitions: Python callables, dicts and ``Tool`` models to the wire format of ``/api/chat``.

The server expects ``{"type": "function", "function": {"name", "description", "parameters"}}``
with ``parameters`` a JSON schema. The official client builds that schema through pydantic models
that keep only ``type``, ``items``, ``description`` and ``enum`` per property, so a nested object
loses its ``properties``, a ``Union`` becomes the string ``"string, integer"`` (in set order) and a
``Literal`` loses its values. This module produces the same bytes as the official client wherever
the official output is lossless (scalar parameters, Google docstrings, simple dict tools) and a
complete schema where it is not:

- callables get the JSON schema of every parameter (pydantic's, with ``$ref`` inlined because the
  server does not resolve references, titles removed, ``Optional`` folded away, scalar unions as a
  ``type`` list and the official key order);
- dict tools and ``Tool`` models keep every key the caller gave (the official client drops unknown
  keys); the keys the official models know are emitted in the official order and ``None`` values at
  those levels are dropped, as the official ``exclude_none`` does.

Deliberate differences from the official client, all where its output is wrong or lossy:

- a parameter with a default is not ``required`` (the official client lists every parameter that is
  not ``Optional`` as required) and a JSON-serialisable non-``None`` default is sent as ``default``;
- ``Arguments:``/``Parameters:`` Google sections, NumPy and Sphinx docstrings are understood, and a
  continuation line containing a colon stays part of its argument's description;
- ``Annotated[X, Field(description=...)]`` and nested pydantic field descriptions are kept;
- string annotations (``from __future__ import annotations``) are resolved in the function's module
  (the official client fails on ``"Optional[int]"`` with "not fully defined");
- a pydantic model class used as a tool keeps its fields' descriptions and constraints.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, TypeAlias

import pydantic
import pydantic_core
from pydantic.fields import FieldInfo

from ollama_async._errors import RequestError

__all__ = ["ToolInput", "normalize_tools", "tool_from_callable"]

ToolInput: TypeAlias = Mapping[str, Any] | Callable[..., Any] | pydantic.BaseModel
"""A tool as callers may give it: a dict, a ``Tool`` model instance or a Python callable."""

JsonSchema: TypeAlias = dict[str, Any]

# Official key orders (the field order of ollama._types.Tool and its nested models).
_TOOL_KEYS = ("type", "function")
_FUNCTION_KEYS = ("name", "description", "parameters")
_PARAMETERS_KEYS = ("type", "items", "required", "properties")  # then unknown keys, then "$defs"
_PROPERTY_KEYS = ("type", "items", "description", "enum")  # then everything else

_SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean"})

# JSON-schema keywords whose value is a schema, a list of schemas or a name -> schema mapping.
_SUBSCHEMA_KEYS = frozenset(
    {"items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else"}
)
_SUBSCHEMA_LIST_KEYS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_SUBSCHEMA_MAP_KEYS = frozenset({"properties", "patternProperties", "dependentSchemas"})


# --------------------------------------------------------------------------------------------
# dict tools and Tool models


def normalize_tools(tools: Sequence[ToolInput] | None) -> list[dict[str, Any]]:
    """Return the list to send under ``"tools"``; ``[]`` for ``None`` (as the official client sends).

    Each entry may be a dict, a pydantic model instance shaped like ``ollama.Tool`` (dumped with
    ``exclude_none`` and aliases) or a callable (see :func:`tool_from_callable`). Errors are
    :class:`RequestError` with ``field`` naming the entry, e.g. ``tools[1].function.name``.
    """
    if tools is None:
        return []
    if isinstance(tools, (Mapping, str, bytes, pydantic.BaseModel)) or callable(tools):
        raise RequestError(
            f"must be a list of tools, not a single {type(tools).__name__}; wrap it in a list",
            field="tools",
        )
    try:
        items = list(tools)
    except TypeError:
        raise RequestError(f"must be a list of tools, not {type(tools).__name__}", field="tools") from None
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(items):
        field = f"tools[{i}]"
        if isinstance(tool, Mapping):
            out.append(_normalize_tool_mapping(tool, field))
        elif isinstance(tool, pydantic.BaseModel):
            dumped = tool.model_dump(mode="json", exclude_none=True, by_alias=True)
            if "function" not in dumped:
                raise RequestError(
                    f"a tool model needs 'type' and 'function' fields like ollama.Tool; "
                    f"{type(tool).__name__} has none",
                    field=field,
                )
            out.append(_normalize_tool_mapping(dumped, field))
        elif callable(tool):
            out.append(tool_from_callable(tool, field=field))
        else:
            raise RequestError(
                f"a tool must be a dict, a Tool model or a Python function, not {type(tool).__name__}",
                field=field,
            )
    return out


def _as_mapping(value: Any) -> Any:
    """A pydantic model nested in a tool dict (``ollama.Tool.Function``, a ``Property``) as a dict."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", exclude_none=True, by_alias=True)
    return value


def _ordered(src: Mapping[str, Any], known: Sequence[str], skip: Sequence[str] = ()) -> dict[str, Any]:
    """Known keys first in ``known`` order, then the others in the caller's order; ``None`` dropped."""
    out = {k: src[k] for k in known if src.get(k) is not None}
    out.update((k, v) for k, v in src.items() if k not in known and k not in skip and v is not None)
    return out


def _normalize_tool_mapping(tool: Mapping[str, Any], field: str) -> dict[str, Any]:
    function = _as_mapping(tool.get("function"))
    if function is None:
        if "name" in tool:
            raise RequestError(
                "a tool dict must nest its name, description and parameters under 'function': "
                '{"type": "function", "function": {"name": ..., "parameters": {...}}}; '
                "a flat tool with a top-level 'name' is not supported",
                field=field,
            )
        raise RequestError("a tool dict needs a 'function' object with at least a 'name'", field=field)
    if not isinstance(function, Mapping):
        raise RequestError(f"must be a dict, not {type(function).__name__}", field=f"{field}.function")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        got = "missing" if name is None else repr(name)
        raise RequestError(f"a tool needs a non-empty string name ({got})", field=f"{field}.function.name")
    description = function.get("description")
    if description is not None and not isinstance(description, str):
        raise RequestError(
            f"must be a string, not {type(description).__name__}", field=f"{field}.function.description"
        )

    # The official Tool model defaults "type" to "function" when it is absent.
    out = _ordered({"type": "function", **tool}, _TOOL_KEYS)
    fn = _ordered(function, _FUNCTION_KEYS)
    parameters = _as_mapping(function.get("parameters"))
    if parameters is not None:
        fn["parameters"] = _normalize_parameters(parameters, f"{field}.function.parameters")
    out["function"] = fn
    return out


def _normalize_parameters(parameters: Any, field: str) -> dict[str, Any]:
    if not isinstance(parameters, Mapping):
        raise RequestError(f"must be a JSON schema dict, not {type(parameters).__name__}", field=field)
    # The official Parameters model defaults "type" to "object" and moves "$defs" last.
    out = _ordered({"type": "object", **parameters}, _PARAMETERS_KEYS, skip=("$defs",))
    required = parameters.get("required")
    if required is not None:
        if isinstance(required, (str, bytes)) or not isinstance(required, Sequence):
            raise RequestError(f"must be a list of names, not {type(required).__name__}", field=f"{field}.required")
        if not all(isinstance(r, str) for r in required):
            raise RequestError("must be a list of strings", field=f"{field}.required")
        out["required"] = list(required)
    properties = parameters.get("properties")
    if properties is not None:
        if not isinstance(properties, Mapping):
            raise RequestError(
                f"must be a dict of name -> schema, not {type(properties).__name__}", field=f"{field}.properties"
            )
        props: dict[str, Any] = {}
        for key, prop in properties.items():
            prop = _as_mapping(prop)
            if not isinstance(prop, Mapping):
                raise RequestError(
                    f"must be a JSON schema dict, not {type(prop).__name__}", field=f"{field}.properties.{key}"
                )
            props[key] = _ordered(prop, _PROPERTY_KEYS)
        out["properties"] = props
    if parameters.get("$defs") is not None:
        out["$defs"] = parameters["$defs"]
    return out


# --------------------------------------------------------------------------------------------
# callables


def tool_from_callable(func: Callable[..., Any], *, field: str | None = None) -> dict[str, Any]:
    """Build the tool dict for a Python callable from its signature and docstring.

    ``name`` is the callable's ``__name__``; ``description`` the docstring text before its
    parameter section; ``parameters`` the JSON schema of the parameters, each described from the
    docstring (Google, NumPy or Sphinx style), else from ``Annotated[X, Field(description=...)]``,
    else ``""`` as the official client sends. ``*args``, ``**kwargs`` and the ``self`` of a bound
    method are skipped; an unannotated parameter is a string (as official). A parameter is required
    unless it has a default or is ``Optional``. ``$ref`` are inlined (the server does not resolve
    them); a recursive type is cut where it recurs, leaving ``{"type": "object"}`` there.

    ``field`` prefixes error locations (``normalize_tools`` passes ``tools[i]``).
    """
    where = field or "tool"
    name = _callable_name(func)
    try:
        signature = inspect.signature(func, eval_str=True)
    except (NameError, SyntaxError, TypeError) as exc:
        raise RequestError(f"cannot resolve the annotations of {name}: {exc}", field=where) from exc
    except ValueError as exc:
        raise RequestError(f"cannot read the signature of {name}: {exc}", field=where) from exc

    documented: Any = func
    while isinstance(documented, functools.partial):  # partial's own docstring is about partial
        documented = documented.func
    description, arg_docs = parse_docstring(inspect.getdoc(documented))

    # A pydantic model class as a tool: its fields' FieldInfo carry descriptions and constraints
    # that its synthesised signature does not.
    model_fields: dict[str, FieldInfo] = {}
    if isinstance(func, type) and issubclass(func, pydantic.BaseModel):
        for fname, info in func.model_fields.items():
            model_fields[fname] = info
            if isinstance(info.alias, str):
                model_fields[info.alias] = info

    properties: dict[str, Any] = {}
    required: list[str] = []
    for pname, param in signature.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation: Any = str if param.annotation is param.empty else param.annotation
        finfo = model_fields.get(pname)
        if finfo is not None and finfo.annotation is not None:
            annotation = Annotated[finfo.annotation, finfo]
        has_default = param.default is not param.empty
        default = param.default
        if isinstance(default, FieldInfo):  # def f(x: int = Field(description=...))
            annotation = Annotated[annotation, default]
            has_default = not default.is_required()
            default = param.empty
        schema, nullable = _parameter_schema(annotation, f"{where}.function.parameters.properties.{pname}")
        doc = arg_docs.get(pname)
        if doc:
            schema["description"] = doc
        else:
            schema.setdefault("description", "")
        if has_default and default is not None and default is not param.empty and "default" not in schema:
            with contextlib.suppress(pydantic_core.PydanticSerializationError, TypeError, ValueError):
                schema["default"] = pydantic_core.to_jsonable_python(default)
        properties[pname] = _order_schema(schema)
        if not (has_default or nullable or "default" in schema):
            required.append(pname)

    parameters: dict[str, Any] = {"type": "object"}
    if properties:  # pydantic (hence the official client) omits "required" when there are no fields
        parameters["required"] = required
    parameters["properties"] = properties
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


def _callable_name(func: Callable[..., Any]) -> str:
    while isinstance(func, functools.partial):
        func = func.func
    name = getattr(func, "__name__", None)
    return name if isinstance(name, str) else type(func).__name__


@functools.lru_cache(maxsize=512)
def _type_adapter_schema(annotation: Any) -> JsonSchema:
    # TypeAdapter construction is the costly part (about a millisecond); tools are re-sent with
    # every chat turn, so cache by annotation (unhashable annotations bypass the cache).
    return pydantic.TypeAdapter(annotation).json_schema(mode="validation")


def _parameter_schema(annotation: Any, field: str) -> tuple[JsonSchema, bool]:
    """The cleaned, inlined schema of one annotation and whether it allowed ``None``."""
    try:
        try:
            raw = copy.deepcopy(_type_adapter_schema(annotation))  # callers may mutate the result
        except TypeError as exc:
            if "unhashable" not in str(exc):
                raise
            raw = pydantic.TypeAdapter(annotation).json_schema(mode="validation")
    except (pydantic.PydanticUserError, TypeError, ValueError, NameError) as exc:
        if isinstance(exc, pydantic.PydanticSchemaGenerationError):
            reason = (
                "pydantic cannot describe this type; annotate with JSON-able types (str, int, float, bool, "
                "list, dict, Literal, Enum, a pydantic model, a dataclass or a TypedDict)"
            )
        else:
            reason = str(exc).strip().split("\n", 1)[0]  # pydantic appends paragraphs of advice
        raise RequestError(f"cannot build a JSON schema for {annotation!r}: {reason}", field=field) from exc
    defs = raw.get("$defs", {})
    return _clean(raw, defs, ())


def _clean(schema: Mapping[str, Any], defs: Mapping[str, Any], stack: tuple[str, ...]) -> tuple[JsonSchema, bool]:
    """Inline refs, drop titles and ``null``, fold scalar unions; returns (schema, nullable)."""
    nullable = False
    out: JsonSchema = {}
    ref = schema.get("$ref")
    if ref is None and isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
        ref = schema["allOf"][0].get("$ref")  # older pydantic wraps a described ref in allOf
        schema = {k: v for k, v in schema.items() if k != "allOf"}
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        target = defs.get(name, {})
        if name in stack:  # recursion: stop here rather than inline forever
            out = {"type": target.get("type", "object")}
            if isinstance(target.get("description"), str):
                out["description"] = target["description"]
        else:
            out, nullable = _clean(target, defs, (*stack, name))

    for key, value in schema.items():
        if key in ("$ref", "$defs", "title", "discriminator"):
            continue
        if key in _SUBSCHEMA_KEYS and isinstance(value, Mapping):
            sub, _ = _clean(value, defs, stack)
            if key in ("items", "additionalProperties") and not sub:
                continue  # "items": {} / "additionalProperties": {} say nothing
            out[key] = sub
        elif key in _SUBSCHEMA_LIST_KEYS and isinstance(value, list):
            out[key] = [_clean(v, defs, stack)[0] if isinstance(v, Mapping) else v for v in value]
        elif key in _SUBSCHEMA_MAP_KEYS and isinstance(value, Mapping):
            out[key] = {k: _order_schema(_clean(v, defs, stack)[0]) if isinstance(v, Mapping) else v
                        for k, v in value.items()}
        elif key == "additionalProperties" and value is True:
            continue
        else:
            out[key] = value

    if "anyOf" in schema:
        members = [m for m in out.pop("anyOf") if not _is_null(m)]
        if len(members) < len(schema["anyOf"]):
            nullable = True
        if len(members) == 1:
            out = {**members[0], **out}
        elif members and all(_is_plain_scalar(m) for m in members):
            types = list(dict.fromkeys(m["type"] for m in members))
            out = {"type": types[0] if len(types) == 1 else types, **out}
        elif members:
            out["anyOf"] = members

    if isinstance(out.get("type"), list) and "null" in out["type"]:
        nullable = True
        types = [t for t in out["type"] if t != "null"]
        out["type"] = types[0] if len(types) == 1 else types
    if "const" in out and "enum" not in out:
        out["enum"] = [out.pop("const")]
    if isinstance(out.get("enum"), list):
        if None in out["enum"]:
            nullable = True
            out["enum"] = [v for v in out["enum"] if v is not None]
        if "type" not in out and out["enum"]:
            types = list(dict.fromkeys(_json_type(v) for v in out["enum"]))
            out["type"] = types[0] if len(types) == 1 else types
    if "default" in out and out["default"] is None:
        del out["default"]
    return _order_schema(out), nullable


def _is_null(schema: Any) -> bool:
    return isinstance(schema, Mapping) and schema.get("type") == "null" and len(schema) == 1


def _is_plain_scalar(schema: Any) -> bool:
    return isinstance(schema, Mapping) and set(schema) == {"type"} and schema["type"] in _SCALAR_TYPES


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    return "object"


def _order_schema(schema: Mapping[str, Any]) -> JsonSchema:
    """Official property key order (type, items, description, enum), then the rest as they came."""
    out = {k: schema[k] for k in _PROPERTY_KEYS if k in schema}
    out.update((k, v) for k, v in schema.items() if k not in _PROPERTY_KEYS)
    return out


# --------------------------------------------------------------------------------------------
# docstrings

_GOOGLE_PARAM_HEADER = re.compile(
    r"^(args|arguments|parameters|params|keyword args|keyword arguments|kwargs|other parameters)\s*:\s*$",
    re.IGNORECASE,
)
# A section that ends the description (the official client stops at returns/yields/raises).
_GOOGLE_END_HEADER = re.compile(r"^(returns?|yields?|raises?)\s*:", re.IGNORECASE)
# Any Google section header: ends an argument section.
_GOOGLE_ANY_HEADER = re.compile(
    r"^(args|arguments|parameters|params|keyword args|keyword arguments|kwargs|other parameters|returns?|"
    r"yields?|raises?|examples?|notes?|warnings?|see also|todo|attributes|references|methods)\s*:",
    re.IGNORECASE,
)
_GOOGLE_ENTRY = re.compile(r"^\*{0,2}(\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
_NUMPY_PARAM_SECTIONS = frozenset({"parameters", "params", "other parameters", "keyword arguments", "arguments"})
_NUMPY_ENTRY = re.compile(r"^\*{0,2}(\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?::.*)?$")
_SPHINX_FIELD = re.compile(
    r"^:(param|parameter|arg|argument|key|keyword|type|returns?|rtype|raises?|except|exception|"
    r"yields?|ytype|var|ivar|cvar|meta)\b"
)
_SPHINX_PARAM = re.compile(r"^:(?:param|parameter|arg|argument|key|keyword)\s+(?:[^:]*\s)?\*{0,2}(\w+)\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a docstring into the function description and per-argument descriptions.

    The description is the text before the first parameter/returns section, each line stripped
    and joined with newlines, leading and trailing blank lines removed: exactly what the official
    client sends for a Google docstring. Argument sections are read in Google style
    (``Args:``/``Arguments:``/``Parameters:`` with ``name: text`` or ``name (type): text``,
    continuation lines indented deeper), NumPy style (``Parameters`` underlined with dashes,
    ``name : type`` then indented text) and Sphinx style (``:param name: text``). Continuation
    lines are joined with a space.
    """
    if not doc:
        return "", {}
    lines = doc.expandtabs().splitlines()
    args: dict[str, str] = {}
    end = len(lines)
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        is_numpy_header = (
            i + 1 < len(lines)
            and stripped
            and re.fullmatch(r"-{3,}", lines[i + 1].strip()) is not None
        )
        if _GOOGLE_PARAM_HEADER.match(stripped):
            end = min(end, i)
            i = _read_google_section(lines, i, args)
            continue
        if is_numpy_header:
            if stripped.lower() in _NUMPY_PARAM_SECTIONS:
                end = min(end, i)
                i = _read_numpy_section(lines, i, args)
                continue
            if stripped.lower() in ("returns", "yields", "raises"):
                end = min(end, i)
        elif _GOOGLE_END_HEADER.match(stripped):
            end = min(end, i)
        elif _SPHINX_FIELD.match(stripped):
            end = min(end, i)
            match = _SPHINX_PARAM.match(stripped)
            if match:
                i = _read_continuation(lines, i, _indent(lines[i]), args, match.group(1), match.group(2))
                continue
        i += 1
    description = "\n".join(line.strip() for line in lines[:end]).strip()
    return description, args


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _read_continuation(lines: list[str], i: int, indent: int, args: dict[str, str], name: str, first: str | None) -> int:
    """Collect ``first`` and the following lines indented deeper than ``indent``; return next index."""
    parts = [first.strip()] if first and first.strip() else []
    i += 1
    while i < len(lines):
        line = lines[i]
        if line.strip():
            if _indent(line) <= indent:
                break
            parts.append(line.strip())
        i += 1
    args[name] = " ".join(parts)
    return i


def _read_google_section(lines: list[str], i: int, args: dict[str, str]) -> int:
    """Read the entries of a Google ``Args:`` section starting at its header; return the next index."""
    header_indent = _indent(lines[i])
    i += 1
    entry_indent: int | None = None
    parts: dict[str, list[str]] = {}
    last: str | None = None
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped:
            i += 1
            continue
        indent = _indent(lines[i])
        if indent < header_indent:
            break
        if indent == header_indent and (
            _GOOGLE_ANY_HEADER.match(stripped) or (entry_indent is not None and entry_indent > header_indent)
        ):
            break  # the next section, or plain text after this one
        if entry_indent is None:
            entry_indent = indent
        match = _GOOGLE_ENTRY.match(stripped) if indent <= entry_indent else None
        if match is not None:
            last = match.group(1)
            parts[last] = [match.group(3).strip()] if match.group(3).strip() else []
        elif last is not None:
            parts[last].append(stripped)  # continuation, even when it contains a colon
        i += 1
    args.update((name, " ".join(words)) for name, words in parts.items())
    return i


def _read_numpy_section(lines: list[str], i: int, args: dict[str, str]) -> int:
    header_indent = _indent(lines[i])
    i += 2  # header and its dashes
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
            continue
        if i + 1 < len(lines) and re.fullmatch(r"-{3,}", lines[i + 1].strip()):
            break  # next section
        indent = _indent(line)
        if indent < header_indent:
            break
        match = _NUMPY_ENTRY.match(stripped) if indent == header_indent else None
        if match is None:
            i += 1
            continue
        names = [n.strip().lstrip("*") for n in match.group(1).split(",")]
        i = _read_continuation(lines, i, indent, args, names[0], None)
        for other in names[1:]:
            args[other] = args[names[0]]
    return i
