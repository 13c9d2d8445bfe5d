"""Tool schemas: byte parity with the official client where it is lossless, complete where it is not."""

import dataclasses
import enum
import functools
import json
from typing import Annotated, Any, Literal, Optional, Union

import ollama
import pydantic
import pytest
from typing_extensions import TypedDict

from ollama_async._errors import RequestError
from ollama_async._tools import normalize_tools, parse_docstring, tool_from_callable

from ._official import official_body


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def official_tools_bytes(tools: list[Any]) -> str:
    """The "tools" value the official AsyncClient puts on the wire, re-dumped compactly (order kept)."""
    return _dumps(official_body(lambda c: c.chat("m", [{"role": "user", "content": "x"}], tools=tools))["tools"])


# ---------------------------------------------------------------------------- parity cases


def add(a: int, b: int) -> int:
    """Add two numbers.

    A longer body line.
      indented line

    Args:
        a (int): First number
        b: Second number,
            continued on the next line
    Returns:
        int: the sum
    """
    return a + b


def weather(city: str, celsius: bool, days: int | None = None, ratio: float | None = None) -> str:
    """Get the weather — für eine Stadt.

    Args:
      city: The city name
      celsius (bool): Use Celsius
      days: How many days
      ratio: The ratio
    """
    return city


def undocumented(a: int, b: str, c: float, d: bool, e: str | None = None) -> None:
    pass


def no_parameters() -> None:
    """Takes nothing.

    Raises:
        ValueError: never
    """


def only_optional(a: Optional[int] = None) -> None:  # noqa: UP045 - typing.Optional on purpose
    pass


def unannotated(x, y):  # type: ignore[no-untyped-def]
    """Unannotated parameters are strings.

    Args:
        x: the x
        y: the y
    """


PARITY_CALLABLES = [add, weather, undocumented, no_parameters, only_optional, unannotated]

PARITY_DICTS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather",
            "parameters": {
                "type": "object",
                "required": ["city"],
                "properties": {
                    "city": {"type": "string", "description": "The city"},
                    "unit": {"type": "string", "description": "Unit", "enum": ["c", "f"]},
                    "tags": {"type": "array", "items": {"type": "string"}, "description": "Tags"},
                },
            },
        },
    },
    # Keys in another order and defaults left out: official fills type/object and reorders.
    {
        "function": {
            "parameters": {
                "properties": {"n": {"description": "A number", "type": ["integer", "string"]}},
                "required": ["n"],
            },
            "description": "Do it",
            "name": "do",
        },
    },
    {"type": "function", "function": {"name": "ping"}},
    {"type": "function", "function": {"name": "f", "description": None, "parameters": {"type": "object", "properties": {}}}},
    # None is dropped at the levels the official models know, kept inside free-form values.
    {
        "type": None,
        "function": {
            "name": "g",
            "parameters": {
                "type": "object",
                "items": {"a": None},
                "$defs": {"X": {"d": None}},
                "required": None,
                "properties": {"p": {"type": None, "items": {"type": "string", "x": None}, "enum": [None, 1]}},
            },
        },
    },
    # Official models nested in a plain dict.
    {
        "type": "function",
        "function": ollama.Tool.Function(
            name="h",
            parameters=ollama.Tool.Function.Parameters.model_validate(
                {"properties": {"q": ollama.Tool.Function.Parameters.Property(type="string", description="Q")}}
            ),
        ),
    },
]


@pytest.mark.parametrize("func", PARITY_CALLABLES, ids=lambda f: f.__name__)
def test_callable_byte_parity_with_official(func: Any) -> None:
    assert _dumps(normalize_tools([func])) == official_tools_bytes([func])


@pytest.mark.parametrize("tool", PARITY_DICTS, ids=range(len(PARITY_DICTS)))
def test_dict_byte_parity_with_official(tool: dict[str, Any]) -> None:
    assert _dumps(normalize_tools([tool])) == official_tools_bytes([tool])


def test_mixed_list_and_official_tool_model_parity() -> None:
    P = ollama.Tool.Function.Parameters
    model = ollama.Tool(function=ollama.Tool.Function(
        name="m", description="via model",
        parameters=P.model_validate(
            {"required": ["a"], "properties": {"a": P.Property(type="integer", description="an int")}}
        ),
    ))
    tools: list[Any] = [add, PARITY_DICTS[0], model, weather]
    assert _dumps(normalize_tools(tools)) == official_tools_bytes(tools)


def test_none_and_empty() -> None:
    assert normalize_tools(None) == []
    assert normalize_tools([]) == []


# ---------------------------------------------------------------------------- where official is lossy


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(pydantic.BaseModel):
    """A postal address."""

    street: str = pydantic.Field(description="Street and number")
    zip: str | None = None
    color: Color = Color.RED


class Person(pydantic.BaseModel):
    name: str
    addresses: list[Address] = []


class Node(pydantic.BaseModel):
    value: int
    children: list["Node"] = []


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0


class Movie(TypedDict):
    title: str
    year: int


def _props(func: Any) -> dict[str, Any]:
    props: dict[str, Any] = tool_from_callable(func)["function"]["parameters"]["properties"]
    return props


def test_nested_pydantic_model_is_inlined_with_its_properties() -> None:
    def save(person: Person) -> None:
        """Save a person.

        Args:
            person: Who to save
        """

    prop = _props(save)["person"]
    assert prop["type"] == "object"
    assert prop["description"] == "Who to save"
    assert prop["required"] == ["name"]
    address = prop["properties"]["addresses"]["items"]
    assert address["type"] == "object"
    assert address["description"] == "A postal address."
    assert address["properties"]["street"] == {"type": "string", "description": "Street and number"}
    assert address["properties"]["zip"] == {"type": "string"}  # Optional folded, default None dropped
    assert address["properties"]["color"] == {"type": "string", "enum": ["red", "green"], "default": "red"}
    assert address["required"] == ["street"]
    dumped = _dumps(prop)
    assert "$ref" not in dumped
    assert "$defs" not in dumped
    assert "title" not in dumped


def test_undocumented_model_parameter_takes_the_model_docstring() -> None:
    def ship(to: Address) -> None: ...

    assert _props(ship)["to"]["description"] == "A postal address."


def test_recursive_model_is_cut_where_it_recurs() -> None:
    def walk(tree: Node) -> None: ...

    tree = _props(walk)["tree"]
    assert tree["properties"]["value"] == {"type": "integer"}
    assert tree["properties"]["children"]["items"] == {"type": "object"}


def test_dataclass_and_typeddict_are_inlined() -> None:
    def plot(p: Point, m: Movie) -> None: ...

    props = _props(plot)
    assert props["p"]["properties"] == {"x": {"type": "number"}, "y": {"type": "number", "default": 0.0}}
    assert props["p"]["required"] == ["x"]
    assert props["m"]["properties"] == {"title": {"type": "string"}, "year": {"type": "integer"}}
    assert props["m"]["required"] == ["title", "year"]


def test_union_is_a_deterministic_type_list_and_mixed_union_an_anyof() -> None:
    def f(a: Union[int, str], b: str | int | None, c: list[int] | str, d: int | float) -> None:  # noqa: UP007
        ...

    props = _props(f)
    assert props["a"] == {"type": ["integer", "string"], "description": ""}
    assert props["b"] == {"type": ["string", "integer"], "description": ""}
    assert props["c"] == {"description": "", "anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "string"}]}
    assert props["d"]["type"] == ["integer", "number"]
    assert tool_from_callable(f)["function"]["parameters"]["required"] == ["a", "c", "d"]


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


def test_literal_and_enum_give_enums() -> None:
    def f(mode: Literal["fast", "slow"], one: Literal["only"], mixed: Literal[1, "a"], level: Level, color: Color) -> None: ...

    props = _props(f)
    assert props["mode"] == {"type": "string", "description": "", "enum": ["fast", "slow"]}
    assert props["one"] == {"type": "string", "description": "", "enum": ["only"]}
    assert props["mixed"] == {"type": ["integer", "string"], "description": "", "enum": [1, "a"]}
    assert props["level"] == {"type": "integer", "description": "", "enum": [1, 2]}
    assert props["color"] == {"type": "string", "description": "", "enum": ["red", "green"]}


def test_containers() -> None:
    def f(a: list[int], b: tuple[str, ...], c: set[float], d: dict[str, int], e: dict[str, Any], g: list) -> None:  # type: ignore[type-arg]
        ...

    props = _props(f)
    assert props["a"] == {"type": "array", "items": {"type": "integer"}, "description": ""}
    assert props["b"] == {"type": "array", "items": {"type": "string"}, "description": ""}
    assert props["c"] == {"type": "array", "items": {"type": "number"}, "description": "", "uniqueItems": True}
    assert props["d"] == {"type": "object", "description": "", "additionalProperties": {"type": "integer"}}
    assert props["e"] == {"type": "object", "description": ""}
    assert props["g"] == {"type": "array", "description": ""}


def test_defaults_are_not_required_and_are_sent() -> None:
    def f(a: int, b: str = "x", c: int | None = None, *args: int, d: float = 1.5, **kw: Any) -> None: ...

    params = tool_from_callable(f)["function"]["parameters"]
    assert params["required"] == ["a"]
    assert list(params["properties"]) == ["a", "b", "c", "d"]  # *args / **kwargs skipped
    assert params["properties"]["b"] == {"type": "string", "description": "", "default": "x"}
    assert params["properties"]["c"] == {"type": "integer", "description": ""}


def test_annotated_field_description_and_constraints() -> None:
    def f(
        n: Annotated[int, pydantic.Field(description="How many", ge=1, le=10)],
        m: int = pydantic.Field(5, description="From a Field default"),
    ) -> None:
        """Doc.

        Args:
            m: The docstring wins
        """

    props = _props(f)
    assert props["n"] == {"type": "integer", "description": "How many", "maximum": 10, "minimum": 1}
    assert props["m"] == {"type": "integer", "description": "The docstring wins", "default": 5}
    assert tool_from_callable(f)["function"]["parameters"]["required"] == ["n"]


def test_bound_method_callable_object_and_partial() -> None:
    class Toolbox:
        def lookup(self, key: str) -> str:
            """Look a key up."""
            return key

        def __call__(self, q: int) -> None: ...

    fn = tool_from_callable(Toolbox().lookup)["function"]
    assert fn["name"] == "lookup"
    assert fn["description"] == "Look a key up."
    assert list(fn["parameters"]["properties"]) == ["key"]
    assert tool_from_callable(Toolbox())["function"]["name"] == "Toolbox"

    partial = functools.partial(add, 1)
    fn = tool_from_callable(partial)["function"]
    assert fn["name"] == "add"
    assert fn["description"].startswith("Add two numbers.")
    assert list(fn["parameters"]["properties"]) == ["b"]


def test_pydantic_model_class_as_a_tool_keeps_field_descriptions() -> None:
    class SearchQuery(pydantic.BaseModel):
        """Search the catalogue."""

        text: str = pydantic.Field(description="What to look for")
        limit: int = pydantic.Field(10, ge=1, description="How many")

    fn = tool_from_callable(SearchQuery)["function"]
    assert fn["name"] == "SearchQuery"
    assert fn["description"] == "Search the catalogue."
    assert fn["parameters"] == {
        "type": "object",
        "required": ["text"],
        "properties": {
            "text": {"type": "string", "description": "What to look for"},
            "limit": {"type": "integer", "description": "How many", "default": 10, "minimum": 1},
        },
    }


def test_string_annotations_are_resolved() -> None:
    # As under `from __future__ import annotations`. The official client fails on this function:
    # "`f` is not fully defined; you should define `Optional`".
    def f(a: "int", b: "Optional[list[int]]" = None) -> None:  # noqa: UP045
        ...

    props = _props(f)
    assert props["a"]["type"] == "integer"
    assert props["b"] == {"type": "array", "items": {"type": "integer"}, "description": ""}
    with pytest.raises(pydantic.PydanticUserError):
        official_tools_bytes([f])


class Opaque:
    pass


def test_unresolvable_or_undescribable_annotations_are_request_errors() -> None:
    def f(a: "Undefined") -> None: ...  # type: ignore[name-defined]  # noqa: F821

    def g(a: Opaque) -> None: ...

    with pytest.raises(RequestError, match="cannot resolve") as info:
        normalize_tools([f])
    assert info.value.field == "tools[0]"
    with pytest.raises(RequestError, match="pydantic cannot describe") as info:
        normalize_tools([add, g])
    assert info.value.field == "tools[1].function.parameters.properties.a"


def test_result_is_not_shared_between_calls() -> None:
    def f(a: Literal["x", "y"]) -> None: ...

    first = tool_from_callable(f)
    first["function"]["parameters"]["properties"]["a"]["enum"].append("z")
    assert tool_from_callable(f)["function"]["parameters"]["properties"]["a"]["enum"] == ["x", "y"]


# ---------------------------------------------------------------------------- docstrings


def test_google_docstring_continuation_with_colon_and_next_line_description() -> None:
    doc = """Summary.

    Example:
        >>> f(1)

    Arguments:
        a (int, optional): First: number
            see: the manual
        b:
            On the next line
        c: Third
        which wraps at the same indent
    Returns:
        nothing
    """
    import inspect

    description, args = parse_docstring(inspect.cleandoc(doc))
    assert description == "Summary.\n\nExample:\n>>> f(1)"
    assert args == {"a": "First: number see: the manual", "b": "On the next line",
                    "c": "Third which wraps at the same indent"}


def test_numpy_docstring() -> None:
    def f(a: int, b: str, c: str) -> None:
        """Numpy summary.

        More text.

        Parameters
        ----------
        a : int
            First number,
            on two lines
        b, c : str
            Both strings

        Returns
        -------
        None
        """

    fn = tool_from_callable(f)["function"]
    assert fn["description"] == "Numpy summary.\n\nMore text."
    props = fn["parameters"]["properties"]
    assert props["a"]["description"] == "First number, on two lines"
    assert props["b"]["description"] == props["c"]["description"] == "Both strings"


def test_sphinx_docstring() -> None:
    def f(a: int, b: int) -> None:
        """Sphinx summary.

        :param a: First
            continued
        :param int b: Second
        :type a: int
        :returns: nothing
        """

    fn = tool_from_callable(f)["function"]
    assert fn["description"] == "Sphinx summary."
    assert fn["parameters"]["properties"]["a"]["description"] == "First continued"
    assert fn["parameters"]["properties"]["b"]["description"] == "Second"


def test_no_docstring() -> None:
    assert parse_docstring(None) == ("", {})
    assert parse_docstring("") == ("", {})


# ---------------------------------------------------------------------------- dict tools


def test_dict_tool_keeps_what_official_drops_in_official_order() -> None:
    tool = {
        "function": {
            "strict": True,
            "parameters": {
                "$defs": {"A": {"type": "string"}},
                "additionalProperties": False,
                "properties": {
                    "where": {
                        "description": "Location",
                        "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                        "required": ["lat", "lon"],
                        "type": "object",
                        "examples": None,
                    },
                    "n": {"anyOf": [{"type": "integer"}, {"type": "string"}], "minimum": 0},
                },
                "required": ["where"],
                "type": "object",
            },
            "name": "locate",
        },
        "type": "function",
    }
    out = normalize_tools([tool])[0]
    assert _dumps(out) == _dumps({
        "type": "function",
        "function": {
            "name": "locate",
            "parameters": {
                "type": "object",
                "required": ["where"],
                "properties": {
                    "where": {
                        "type": "object",
                        "description": "Location",
                        "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                        "required": ["lat", "lon"],
                    },
                    "n": {"anyOf": [{"type": "integer"}, {"type": "string"}], "minimum": 0},
                },
                "additionalProperties": False,
                "$defs": {"A": {"type": "string"}},
            },
            "strict": True,
        },
    })
    # The official client loses the nested object's properties.
    assert '"lat"' not in official_tools_bytes([tool])


def test_tool_model_instance_of_any_pydantic_class() -> None:
    class MyFunction(pydantic.BaseModel):
        name: str
        description: str | None = None

    class MyTool(pydantic.BaseModel):
        type: str = "function"
        function: MyFunction

    assert normalize_tools([MyTool(function=MyFunction(name="x"))]) == [{"type": "function", "function": {"name": "x"}}]

    class NotATool(pydantic.BaseModel):
        a: int = 1

    with pytest.raises(RequestError, match="NotATool") as info:
        normalize_tools([NotATool()])
    assert info.value.field == "tools[0]"


@pytest.mark.parametrize(
    ("tools", "field", "match"),
    [
        ([{"type": "function", "function": {"description": "no name"}}], "tools[0].function.name", "name"),
        ([add, {"type": "function", "function": {"name": ""}}], "tools[1].function.name", "non-empty"),
        ([{"type": "function", "name": "flat", "parameters": {}}], "tools[0]", "top-level 'name'"),
        ([{"type": "function"}], "tools[0]", "'function'"),
        ([{"type": "function", "function": "f"}], "tools[0].function", "must be a dict"),
        ([42], "tools[0]", "not int"),
        ([add, "add"], "tools[1]", "not str"),
        ({"type": "function", "function": {"name": "f"}}, "tools", "wrap it in a list"),
        (add, "tools", "wrap it in a list"),
        ([{"function": {"name": "f", "parameters": ["a"]}}], "tools[0].function.parameters", "JSON schema"),
        ([{"function": {"name": "f", "parameters": {"properties": {"a": "int"}}}}],
         "tools[0].function.parameters.properties.a", "JSON schema"),
        ([{"function": {"name": "f", "parameters": {"required": "a"}}}], "tools[0].function.parameters.required", "list"),
        ([{"function": {"name": "f", "description": 3}}], "tools[0].function.description", "string"),
    ],
)
def test_bad_tools_are_request_errors(tools: Any, field: str, match: str) -> None:
    with pytest.raises(RequestError, match=match) as info:
        normalize_tools(tools)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
