"""String values inside streamed JSON, filtered however the JSON is split."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from interlock.guardrails import Guardrails, GuardrailsConfig
from interlock.guardrails.json_stream import JsonStringsFilter


class Upper:
    """A filter that shows what it was given: upper-cased, holding nothing."""

    def feed(self, delta: str) -> str:
        return delta.upper()

    def flush(self) -> str:
        return ""


def _run(text: str, splits: list[int], make: Any = Upper) -> str:
    json_filter = JsonStringsFilter(make)
    pieces = [text[a:b] for a, b in zip([0, *splits], [*splits, len(text)], strict=True)]
    return "".join(json_filter.feed(piece) for piece in pieces) + json_filter.flush()


def _every_split(text: str) -> list[list[int]]:
    """No split, every single split, one character at a time, and random ones."""
    rng = random.Random(len(text))
    random_splits = [sorted(rng.sample(range(1, len(text)), 4)) for _ in range(20)]
    return [[], *[[i] for i in range(1, len(text))], list(range(1, len(text))), *random_splits]


VALUES = {
    "to": "ann",
    "note": 'line\nbreak "quoted" back\\slash',
    "uni": "café 😀 \u2028",
    "list": ["x", 1, True, None, {"deep": "y"}],
}


@pytest.mark.parametrize(
    "text",
    [
        orjson.dumps(VALUES).decode(),
        # Escapes written every way JSON allows, and spaces between tokens.
        '{ "to" : "ann" , "uni" : "caf\\u00e9 \\ud83d\\ude00" , "s" : "a\\/b\\tc" }',
        '["x", ["y", {"k\\u0041": "z"}]]',
    ],
)
def test_values_are_filtered_and_keys_kept_however_the_text_is_split(text: str) -> None:
    def upper_values(value: Any) -> Any:
        if isinstance(value, str):
            return value.upper()
        if isinstance(value, list):
            return [upper_values(item) for item in value]
        if isinstance(value, dict):
            return {key: upper_values(item) for key, item in value.items()}
        return value

    expected = upper_values(orjson.loads(text))
    for splits in _every_split(text):
        assert orjson.loads(_run(text, splits)) == expected, splits


def _pii(**policy: Any) -> tuple[Guardrails, Any]:
    guardrails = Guardrails(GuardrailsConfig.from_mapping({"pii": policy}))
    return guardrails, guardrails.check_input


def test_redaction_inside_values_never_cuts_an_escape() -> None:
    guardrails, check = _pii(action="redact")
    decision = check({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    text = orjson.dumps({"note": "x\nann@example.com", "ann@example.com": "ok"}).decode()
    for splits in _every_split(text):
        json_filter = guardrails.output_arguments_stream(decision)
        assert json_filter is not None
        pieces = [text[a:b] for a, b in zip([0, *splits], [*splits, len(text)], strict=True)]
        out = "".join(json_filter.feed(piece) for piece in pieces) + json_filter.flush()
        # The key is not a value: kept; the value's address is redacted.
        assert orjson.loads(out) == {"note": "x\n[EMAIL]", "ann@example.com": "ok"}, splits


def test_pseudonyms_split_across_pieces_are_restored_json_escaped() -> None:
    guardrails, check = _pii(action="pseudonymize")
    key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    body = {"model": "m", "messages": [{"role": "user", "content": f"ann@example.com {key}"}]}
    decision = check(body)
    text = '{"to": "[EMAIL_1]", "body": "key: [SECRET_1]"}'
    for splits in _every_split(text):
        json_filter = guardrails.output_arguments_stream(decision)
        assert json_filter is not None
        pieces = [text[a:b] for a, b in zip([0, *splits], [*splits, len(text)], strict=True)]
        out = "".join(json_filter.feed(piece) for piece in pieces) + json_filter.flush()
        assert orjson.loads(out) == {"to": "ann@example.com", "body": f"key: {key}"}, splits


@pytest.mark.parametrize(
    "text",
    [
        '{"a": "x\x01y"}',  # a raw control character
        '{"a": "\\q"}',  # no such escape
        '{"a": "\\ud83dx"}',  # half a surrogate pair
        '{"a"} "b"',  # a key with no value
        '{"a": 1]]',  # closing what was not opened
    ],
)
def test_text_that_is_not_json_passes_as_it_came_from_where_it_breaks(text: str) -> None:
    out = _run(text, [])
    assert out.lower() == text.lower()  # only what came before the break was filtered


def test_an_unfinished_value_is_given_back_by_flush() -> None:
    json_filter = JsonStringsFilter(Upper)
    assert json_filter.feed('{"a": "par') + json_filter.flush() == '{"a": "PAR'
