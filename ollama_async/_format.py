"""Structured output: the ``format`` argument on the way out and the model's text on the way back.

``format`` is ``"json"`` or a JSON schema on the wire. :func:`normalize_format` also takes a
pydantic model class (sent as its ``model_json_schema()``) and refuses anything else with a
:class:`~ollama_async.RequestError` before a request is sent; the official client only checks the
type through pydantic. A schema dict is sent as given (same key order, ``None`` values kept), as
the official client does.

:func:`parse_output` turns the output text back into data: an instance of the model class, or the
parsed JSON checked against the schema dict. Output that does not parse or validate raises
:class:`~ollama_async.StructuredOutputError` with the raw text and the errors. Models sometimes wrap
their JSON in a Markdown code fence (```` ```json ... ``` ````) although the grammar should prevent
it: one leading and one trailing fence are stripped before parsing (JSON can never start or end
with a backtick, so this cannot change valid output).
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Literal, TypeAlias, TypeVar, overload

import pydantic

from ollama_async._errors import RequestError, StructuredOutputError

__all__ = ["FormatInput", "normalize_format", "parse_output", "strip_code_fence"]

FormatInput: TypeAlias = Literal["", "json"] | Mapping[str, Any] | type[pydantic.BaseModel] | None
"""What ``format=`` accepts: ``"json"``, ``""`` (no format), a JSON schema dict or a pydantic model class."""

M = TypeVar("M", bound=pydantic.BaseModel)

_EXPECTED = "must be 'json', a JSON schema dict or a pydantic model class"
_MAX_ERRORS_SHOWN = 3
_EXCERPT_CHARS = 200
_OPENING_FENCE = re.compile(r"\A\s*```[ \t]*[\w+.-]*[ \t]*(?:\r?\n|\Z)")
_CLOSING_FENCE = re.compile(r"\s*```\s*\Z")
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "null": (type(None),),
}


def normalize_format(format: FormatInput, *, field: str = "format") -> str | dict[str, Any] | None:
    """Return what goes on the wire under ``"format"`` (``None``: send nothing).

    ``None``, ``""`` and ``"json"`` pass through (the official client sends ``""`` as given); a
    dict is returned unchanged (the same object), another mapping as an equal dict; a pydantic
    model class gives its ``model_json_schema()``.
    """
    if format is None:
        return None
    if isinstance(format, str):
        if format in ("", "json"):
            return format
        raise RequestError(f"{_EXPECTED}, not str {_excerpt(format, 60)}{_string_hint(format)}", field=field)
    if isinstance(format, dict):
        return format
    if isinstance(format, Mapping):
        return dict(format)
    if isinstance(format, type) and issubclass(format, pydantic.BaseModel):
        try:
            return format.model_json_schema()
        except pydantic.PydanticUserError as exc:
            raise RequestError(f"cannot build the JSON schema of {format.__name__}: {exc}", field=field) from exc
    if isinstance(format, pydantic.BaseModel):
        name = type(format).__name__
        raise RequestError(f"{_EXPECTED}, not an instance of {name}; pass the class {name} itself", field=field)
    if isinstance(format, type):
        raise RequestError(f"{_EXPECTED}, not the class {format.__name__}", field=field)
    raise RequestError(f"{_EXPECTED}, not {type(format).__name__}", field=field)


def _string_hint(format: str) -> str:
    if format.strip().lower() == "json":
        return "; did you mean 'json'?"
    if format.lstrip().startswith("{"):
        try:
            parsed = json.loads(format)
        except ValueError:
            return ""
        if isinstance(parsed, dict):
            return "; it looks like a JSON schema: pass the dict, json.loads(...) of it"
    return ""


@overload
def parse_output(text: str, model: type[M], *, field: str = "format") -> M: ...
@overload
def parse_output(text: str, model: Mapping[str, Any] | str, *, field: str = "format") -> Any: ...
def parse_output(text: str, model: type[M] | Mapping[str, Any] | str, *, field: str = "format") -> M | Any:
    """Parse the model's output ``text`` as the structured type that ``model`` names.

    - a pydantic model class: ``model.model_validate_json(text)``;
    - ``"json"``: ``json.loads(text)``;
    - a JSON schema dict: ``json.loads(text)``, then validated with ``jsonschema`` if it is
      installed; otherwise only the top-level ``type`` and, for objects, ``required`` are checked;
    - ``""`` (no format was requested): the text itself.

    One Markdown code fence around the text is stripped first. Failures raise
    :class:`StructuredOutputError` (``.text`` is the raw output, ``.errors`` the validation errors
    as pydantic shapes them); a ``model`` of another kind raises :class:`RequestError`.
    """
    if not isinstance(text, str):
        raise RequestError(f"the output to parse must be a str, not {type(text).__name__}", field=field)
    if isinstance(model, type) and issubclass(model, pydantic.BaseModel):
        try:
            return model.model_validate_json(strip_code_fence(text))
        except pydantic.ValidationError as exc:
            errors: list[Any] = exc.errors(include_url=False)
            raise StructuredOutputError(_message(model.__name__, errors, text), text=text, errors=errors) from exc
    if isinstance(model, str):
        if model == "json":
            return _loads(text, "JSON")
        if model == "":
            return text
        raise RequestError(f"{_EXPECTED}, not str {_excerpt(model, 60)}", field=field)
    if isinstance(model, Mapping):
        data = _loads(text, "the JSON schema")
        _validate(data, model, text, field)
        return data
    raise RequestError(f"{_EXPECTED}, not {type(model).__name__}", field=field)


def strip_code_fence(text: str) -> str:
    """Remove one leading ```` ```lang ```` line and one trailing ```` ``` ```` if present."""
    opening = _OPENING_FENCE.match(text)
    if opening is None:
        return text
    text = text[opening.end():]
    closing = _CLOSING_FENCE.search(text)
    return text[: closing.start()] if closing else text


def _loads(text: str, against: str) -> Any:
    try:
        return json.loads(strip_code_fence(text))
    except ValueError as exc:
        msg = f"Invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}" if isinstance(
            exc, json.JSONDecodeError) else f"Invalid JSON: {exc}"
        errors = [{"type": "json_invalid", "loc": (), "msg": msg, "input": text}]
        raise StructuredOutputError(_message(against, errors, text), text=text, errors=errors) from exc


def _jsonschema() -> ModuleType | None:
    try:
        return importlib.import_module("jsonschema")
    except ImportError:
        return None


def _validate(data: Any, schema: Mapping[str, Any], text: str, field: str) -> None:
    errors: list[dict[str, Any]] = []
    js = _jsonschema()
    if js is not None:
        validator_cls = js.validators.validator_for(schema)
        try:
            validator_cls.check_schema(schema)
        except js.exceptions.SchemaError as exc:
            raise RequestError(f"invalid JSON schema: {exc.message}", field=field) from exc
        for err in validator_cls(schema).iter_errors(data):
            errors.append({"type": str(err.validator), "loc": tuple(err.absolute_path), "msg": err.message,
                           "input": err.instance})
    else:
        expected = schema.get("type")
        if expected is not None and not _type_matches(data, expected):
            errors.append({"type": f"{expected}_type", "loc": (), "msg": f"Input should be of type {expected}",
                           "input": data})
        elif isinstance(data, dict) and isinstance(schema.get("required"), list):
            errors.extend({"type": "missing", "loc": (key,), "msg": "Field required", "input": data}
                          for key in schema["required"] if key not in data)
    if errors:
        raise StructuredOutputError(_message("the JSON schema", errors, text), text=text, errors=errors)


def _type_matches(data: Any, expected: Any) -> bool:
    names = [expected] if isinstance(expected, str) else list(expected) if isinstance(expected, list) else []
    for name in names:
        types = _JSON_TYPES.get(name)
        if types is None:
            return True  # an unknown type name: not ours to judge
        if isinstance(data, bool) and name in ("number", "integer"):
            continue
        if isinstance(data, types) or (name == "integer" and isinstance(data, float) and data.is_integer()):
            return True
    return not names


def _message(against: str, errors: list[Any], text: str) -> str:
    shown = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())) or '(root)'}: {e.get('msg', e)}"
        for e in errors[:_MAX_ERRORS_SHOWN]
    )
    more = f" (and {len(errors) - _MAX_ERRORS_SHOWN} more)" if len(errors) > _MAX_ERRORS_SHOWN else ""
    count = f"{len(errors)} error{'s' if len(errors) != 1 else ''}"
    return f"the model's output does not validate against {against} ({count}): {shown}{more}; output: {_excerpt(text)}"


def _excerpt(text: str, limit: int = _EXCERPT_CHARS) -> str:
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} chars)"
