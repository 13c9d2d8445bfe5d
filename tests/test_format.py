"""Structured output: ``format`` on the wire and parsing the model's text back."""

import json
import sys
import types
from typing import Any

import pydantic
import pytest

from ollama_async._errors import RequestError, StructuredOutputError
from ollama_async._format import normalize_format, parse_output, strip_code_fence

from ._official import official_body


class Country(pydantic.BaseModel):
    name: str
    capital: str
    languages: list[str]
    population: int | None = None


def official_format(format: Any) -> Any:
    """The "format" value the official AsyncClient sends (a missing key gives ``KeyError``)."""
    return official_body(lambda c: c.generate("m", "x", format=format))["format"]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------------------- normalize_format


def test_strings_and_none_pass_through() -> None:
    assert normalize_format(None) is None
    assert normalize_format("json") == "json"
    assert normalize_format("") == ""
    assert official_format("") == ""  # the official client sends "" as given


def test_schema_dict_is_sent_unchanged_like_official() -> None:
    schema = {"type": "object", "properties": {"b": {"type": "string", "default": None}, "a": {"type": "integer"}},
              "required": ["b"]}
    assert normalize_format(schema) is schema
    assert _dumps(normalize_format(schema)) == _dumps(official_format(schema))


def test_mapping_becomes_an_equal_dict() -> None:
    schema = types.MappingProxyType({"type": "object"})
    out = normalize_format(schema)
    assert out == {"type": "object"}
    assert isinstance(out, dict)


def test_model_class_gives_its_json_schema() -> None:
    assert normalize_format(Country) == Country.model_json_schema()
    # The official client needs the caller to call model_json_schema(); the bytes agree.
    assert _dumps(normalize_format(Country)) == _dumps(official_format(Country.model_json_schema()))


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("yaml", "must be 'json', a JSON schema dict or a pydantic model class, not str 'yaml'"),
        ("JSON", "did you mean 'json'"),
        ('{"type": "object"}', "pass the dict"),
        (Country(name="a", capital="b", languages=[]), "not an instance of Country; pass the class Country"),
        (int, "not the class int"),
        (["json"], "not list"),
        (True, "not bool"),
    ],
)
def test_bad_formats_are_request_errors(value: Any, match: str) -> None:
    with pytest.raises(RequestError, match=match) as info:
        normalize_format(value)
    assert info.value.field == "format"
    assert str(info.value).startswith("format: ")


# ---------------------------------------------------------------------------- parse_output


def test_parse_into_model() -> None:
    text = '{"name": "France", "capital": "Paris", "languages": ["French"]}'
    country = parse_output(text, Country)
    assert country == Country(name="France", capital="Paris", languages=["French"])


def test_model_validation_failure_says_what_and_keeps_text_and_errors() -> None:
    text = '{"name": "France", "languages": "French", "population": "many"}'
    with pytest.raises(StructuredOutputError) as info:
        parse_output(text, Country)
    err = info.value
    assert err.text == text
    assert [e["loc"] for e in err.errors] == [("capital",), ("languages",), ("population",)]
    message = str(err)
    assert "does not validate against Country" in message
    assert "3 errors" in message
    assert "capital: Field required" in message
    assert "languages: Input should be a valid array" in message
    assert "'{\"name\": \"France\"" in message  # an excerpt of the output
    assert isinstance(err, ValueError)


def test_invalid_json_for_model_and_long_excerpt() -> None:
    text = '{"name": "' + "x" * 500
    with pytest.raises(StructuredOutputError, match="Invalid JSON") as info:
        parse_output(text, Country)
    assert "(510 chars)" in str(info.value)
    assert len(str(info.value)) < 600


def test_code_fences_are_stripped() -> None:
    body = '{"name": "Peru", "capital": "Lima", "languages": ["Spanish"]}'
    for text in (f"```json\n{body}\n```", f"```\n{body}\n```\n", f"  ```JSON \r\n{body}```", f"```json\n{body}"):
        assert parse_output(text, Country).capital == "Lima"
        assert parse_output(text, "json")["name"] == "Peru"
    assert strip_code_fence(body) == body
    assert strip_code_fence("plain ``` text") == "plain ``` text"


def test_parse_json() -> None:
    assert parse_output('{"a": [1, 2]}', "json") == {"a": [1, 2]}
    assert parse_output("[1]", "json") == [1]
    with pytest.raises(StructuredOutputError, match=r"Invalid JSON: Expecting value at line 1 column 1") as info:
        parse_output("Sure! Here is", "json")
    assert info.value.text == "Sure! Here is"
    assert info.value.errors[0]["type"] == "json_invalid"


def test_empty_format_returns_the_text() -> None:
    assert parse_output("just words", "") == "just words"


def test_parse_against_schema_without_jsonschema(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jsonschema", None)  # import fails: the built-in check runs
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a", "b"]}
    assert parse_output('{"a": 1, "b": 2}', schema) == {"a": 1, "b": 2}
    with pytest.raises(StructuredOutputError, match=r"b: Field required") as info:
        parse_output('{"a": 1}', schema)
    assert info.value.errors == [{"type": "missing", "loc": ("b",), "msg": "Field required", "input": {"a": 1}}]
    with pytest.raises(StructuredOutputError, match="should be of type object"):
        parse_output("[1]", schema)
    assert parse_output("3", {"type": "integer"}) == 3
    assert parse_output("3.0", {"type": "integer"}) == 3.0
    assert parse_output("null", {"type": ["string", "null"]}) is None
    with pytest.raises(StructuredOutputError):
        parse_output("true", {"type": "number"})  # a bool is not a number in JSON schema
    with pytest.raises(StructuredOutputError):
        parse_output("1.5", {"type": "integer"})


def test_parse_against_schema_with_jsonschema(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in for the jsonschema package (not a dependency): checks that its errors are used.
    class FakeError:
        validator = "minimum"
        absolute_path = ("a",)
        message = "-1 is less than the minimum of 0"
        instance = -1

    class FakeValidator:
        @staticmethod
        def check_schema(schema: Any) -> None:
            if schema.get("type") == "bogus":
                raise fake.exceptions.SchemaError("'bogus' is not valid")

        def __init__(self, schema: Any) -> None:
            self.schema = schema

        def iter_errors(self, data: Any) -> list[FakeError]:
            return [FakeError()] if data.get("a", 0) < 0 else []

    class SchemaError(Exception):
        def __init__(self, message: str) -> None:
            super().__init__(message)
            self.message = message

    fake = types.SimpleNamespace(
        validators=types.SimpleNamespace(validator_for=lambda schema: FakeValidator),
        exceptions=types.SimpleNamespace(SchemaError=SchemaError),
    )
    monkeypatch.setitem(sys.modules, "jsonschema", fake)
    schema = {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0}}}
    assert parse_output('{"a": 1}', schema) == {"a": 1}
    with pytest.raises(StructuredOutputError, match="a: -1 is less than the minimum of 0") as info:
        parse_output('{"a": -1}', schema)
    assert info.value.errors[0]["loc"] == ("a",)
    with pytest.raises(RequestError, match="invalid JSON schema"):
        parse_output("{}", {"type": "bogus"})


@pytest.mark.parametrize(
    ("model", "match"),
    [("yaml", "not str 'yaml'"), (Country(name="a", capital="b", languages=[]), "not Country"), (3, "not int")],
)
def test_parse_output_with_a_bad_model_is_a_request_error(model: Any, match: str) -> None:
    with pytest.raises(RequestError, match=match):
        parse_output("{}", model)
