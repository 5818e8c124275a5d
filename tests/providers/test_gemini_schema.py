"""JSON Schema to Gemini Schema: pure data in, pure data out."""

from __future__ import annotations

import enum
from typing import Any, Literal

import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

from interlock.errors import InvalidRequest
from interlock.providers.gemini_schema import gemini_schema


class Unit(enum.StrEnum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Place(BaseModel):
    city: str
    country: str | None = None


class Forecast(BaseModel):
    """A weather forecast."""

    place: Place = Field(description="Where")
    unit: Unit
    highs: list[float]
    alerts: list[Place]
    backup: Place | None = None
    kind: Literal["daily"]
    days: int = Field(ge=1, le=14)


PLACE = {
    "type": "OBJECT",
    "title": "Place",
    "properties": {
        "city": {"type": "STRING", "title": "City"},
        "country": {"type": "STRING", "title": "Country", "default": None, "nullable": True},
    },
    "propertyOrdering": ["city", "country"],
    "required": ["city"],
}


def test_pydantic_model_with_nested_models_enums_optionals_and_lists() -> None:
    assert gemini_schema(Forecast.model_json_schema(), "response_format") == {
        "type": "OBJECT",
        "title": "Forecast",
        "description": "A weather forecast.",
        "properties": {
            "place": {**PLACE, "description": "Where"},
            "unit": {"type": "STRING", "title": "Unit", "enum": ["celsius", "fahrenheit"]},
            "highs": {"type": "ARRAY", "title": "Highs", "items": {"type": "NUMBER"}},
            "alerts": {"type": "ARRAY", "title": "Alerts", "items": PLACE},
            "backup": {**PLACE, "default": None, "nullable": True},
            "kind": {"type": "STRING", "title": "Kind", "enum": ["daily"]},
            "days": {"type": "INTEGER", "title": "Days", "minimum": 1, "maximum": 14},
        },
        "propertyOrdering": ["place", "unit", "highs", "alerts", "backup", "kind", "days"],
        "required": ["place", "unit", "highs", "alerts", "kind", "days"],
    }


def test_openai_strict_schema_loses_what_gemini_rejects() -> None:
    # What client.chat.completions.parse sends: additionalProperties false
    # everywhere, every field required, $defs and $ref.
    converted = gemini_schema(to_strict_json_schema(Forecast), "response_format")
    assert "additionalProperties" not in str(converted)
    assert "$ref" not in str(converted)
    assert converted["required"] == list(Forecast.model_fields)
    assert converted["properties"]["backup"]["nullable"] is True
    assert converted["properties"]["backup"]["properties"]["city"] == {
        "type": "STRING",
        "title": "City",
    }


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": ["string", "null"]}, {"type": "STRING", "nullable": True}),
        (
            {"type": ["string", "integer"]},
            {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]},
        ),
        ({"anyOf": [{"type": "null"}, {"type": "integer"}]}, {"type": "INTEGER", "nullable": True}),
        (
            {"oneOf": [{"type": "string"}, {"type": "number"}]},
            {"anyOf": [{"type": "STRING"}, {"type": "NUMBER"}]},
        ),
        ({"const": "fixed"}, {"type": "STRING", "enum": ["fixed"]}),
        ({"const": 3}, {"type": "INTEGER"}),
        ({"enum": ["a", None]}, {"type": "STRING", "enum": ["a"], "nullable": True}),
        ({"type": "integer", "enum": [1, 2]}, {"type": "INTEGER"}),
        ({"type": "string", "format": "date-time"}, {"type": "STRING", "format": "date-time"}),
        ({"type": "string", "format": "email"}, {"type": "STRING"}),
        ({"type": "integer", "format": "int64"}, {"type": "INTEGER", "format": "int64"}),
        ({"type": "string", "examples": ["x", "y"]}, {"type": "STRING", "example": "x"}),
        (
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {"a": {"type": "number", "exclusiveMinimum": 0}},
                "additionalProperties": False,
                "strict": True,
            },
            {
                "type": "OBJECT",
                "properties": {"a": {"type": "NUMBER"}},
                "propertyOrdering": ["a"],
            },
        ),
        (
            {"properties": {"a": {"type": "string"}}, "required": ["a", "ghost"]},
            {
                "type": "OBJECT",
                "properties": {"a": {"type": "STRING"}},
                "propertyOrdering": ["a"],
                "required": ["a"],
            },
        ),
        (
            {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
            {"type": "ARRAY", "items": {"anyOf": [{"type": "INTEGER"}, {"type": "STRING"}]}},
        ),
        (
            {
                "allOf": [
                    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "boolean"}}, "required": ["b"]},
                ]
            },
            {
                "type": "OBJECT",
                "properties": {"a": {"type": "STRING"}, "b": {"type": "BOOLEAN"}},
                "propertyOrdering": ["a", "b"],
                "required": ["a", "b"],
            },
        ),
        ({}, {}),
    ],
)
def test_keyword_rewrites(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert gemini_schema(schema, "tools[0].function.parameters") == expected


def test_draft7_definitions_and_described_refs() -> None:
    schema = {
        "type": "object",
        "properties": {"where": {"$ref": "#/definitions/Spot", "description": "here"}},
        "definitions": {"Spot": {"type": "string", "description": "a spot", "title": "Spot"}},
    }
    assert gemini_schema(schema, "p")["properties"]["where"] == {
        "type": "STRING",
        "title": "Spot",
        "description": "here",
    }


class Node(BaseModel):
    value: int
    children: list[Node]


@pytest.mark.parametrize(
    "schema",
    [
        Node.model_json_schema(),
        {"$ref": "#/$defs/A", "$defs": {"A": {"$ref": "#/$defs/A"}}},
    ],
)
def test_recursive_schema_is_refused_naming_the_parameter(schema: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        gemini_schema(schema, "response_format")
    assert caught.value.param == "response_format"
    assert "recursive" in caught.value.message


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "https://example.com/schema.json"},
        {"$ref": "#/$defs/Missing"},
        {"type": "object", "properties": {"a": "not a schema"}},
    ],
)
def test_unusable_schema_is_refused(schema: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        gemini_schema(schema, "tools[2].function.parameters")
    assert caught.value.param == "tools[2].function.parameters"


def test_nesting_is_bounded() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(100):
        schema = {"type": "array", "items": schema}
    with pytest.raises(InvalidRequest, match="deeper"):
        gemini_schema(schema, "response_format")
