from __future__ import annotations

from typing import Any

import pytest

from interlock.guardrails.validation import InputLimits, check_limits

LIMITS = InputLimits(
    max_messages=4,
    max_message_chars=50,
    max_total_chars=120,
    max_tokens=1000,
    allowed_roles=frozenset({"system", "user", "assistant"}),
    allowed_content_types=frozenset({"text"}),
)


def _body(*contents: Any, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": c} for c in contents], **extra}


def test_within_limits() -> None:
    assert (
        check_limits(_body("hi", [{"type": "text", "text": "there"}], max_tokens=5), LIMITS) is None
    )


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (_body(*["x"] * 5), "too_many_messages", "messages"),
        (_body("ok", "y" * 51), "message_too_long", "messages[1].content"),
        (
            _body("ok", [{"type": "text", "text": "z" * 51}]),
            "message_too_long",
            "messages[1].content",
        ),
        (_body("a" * 50, "b" * 50, "c" * 21), "input_too_long", "messages"),
        (
            {"messages": [{"role": "user", "content": "x"}, {"role": "wizard", "content": "y"}]},
            "invalid_role",
            "messages[1].role",
        ),
        (
            _body("a", "b", "c", [{"type": "text", "text": "x"}, {"type": "image_url"}]),
            "unsupported_content_type",
            "messages[3].content[1].type",
        ),
        (_body("a", max_tokens=1001), "max_tokens_too_large", "max_tokens"),
        (_body("a", max_completion_tokens=0), "invalid_max_tokens", "max_completion_tokens"),
        (_body("a", max_tokens=True), "invalid_max_tokens", "max_tokens"),
        (_body("a", max_tokens="9"), "invalid_max_tokens", "max_tokens"),
        ({"messages": "hi"}, "invalid_messages", "messages"),
        ({"messages": ["hi"]}, "invalid_messages", "messages[0]"),
        (_body(42), "invalid_content", "messages[0].content"),
        ({"input": ["a" * 100, "b" * 21]}, "input_too_long", "input"),
        ({"prompt": "p" * 121}, "input_too_long", "prompt"),
    ],
)
def test_violation_names_the_param(body: dict[str, Any], code: str, param: str) -> None:
    block = check_limits(body, LIMITS)
    assert block is not None
    assert (block.check, block.code, block.param) == ("limits", code, param)
    error = block.error()
    assert error.status_code == 400 and error.param == param and error.code == code


def test_no_limits_accepts_anything_well_formed() -> None:
    assert check_limits(_body(*["x" * 10_000] * 50, max_tokens=10**6), InputLimits()) is None


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_messages"):
        InputLimits(max_messages=0)
