from __future__ import annotations

from typing import Any

import pytest

from interlock.guardrails.config import GuardrailsConfig, InjectionPolicy, PiiPolicy
from interlock.guardrails.content import DEFAULT_WORDS
from interlock.guardrails.validation import InputLimits

RAW: dict[str, Any] = {
    "pii": {"action": "pseudonymize", "types": ["email", "PHONE"]},
    "injection": {"action": "block", "threshold": 0.8},
    "content": {"action": "flag", "extra_words": ["darn"]},
    "limits": {"max_messages": 10, "max_tokens": 4096, "allowed_roles": ["user"]},
}


def test_full_shape() -> None:
    config = GuardrailsConfig.from_mapping(RAW)
    assert config.pii == PiiPolicy(action="pseudonymize", types=("EMAIL", "PHONE"))
    assert config.injection == InjectionPolicy(action="block", threshold=0.8)
    assert config.content is not None and config.content.words == (*DEFAULT_WORDS, "darn")
    assert config.limits == InputLimits(
        max_messages=10, max_tokens=4096, allowed_roles=frozenset({"user"})
    )
    assert config.enabled


def test_missing_sections_are_off() -> None:
    config = GuardrailsConfig.from_mapping({"pii": {}})
    assert config.pii == PiiPolicy()
    assert (config.injection, config.content, config.limits) == (None, None, None)
    assert not GuardrailsConfig.from_mapping(None).enabled


def test_override_field_by_field_and_switch_off() -> None:
    base = GuardrailsConfig.from_mapping(RAW)
    group = base.override({"pii": {"action": "block"}, "content": None})
    assert group.pii is not None and group.pii.action == "block"
    assert group.pii.types == ("EMAIL", "PHONE")  # kept from the base
    assert group.content is None
    assert group.injection == base.injection


def test_output_mode_defaults() -> None:
    assert PiiPolicy(action="redact").output_mode == "redact"
    assert PiiPolicy(action="pseudonymize").output_mode == "off"
    assert PiiPolicy(action="block", output="redact").output_mode == "redact"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"pii": {"action": "scramble"}}, "guardrails.pii.action: must be one of"),
        ({"pii": {"types": ["EMAIL", "DNA"]}}, "guardrails.pii.types: unknown types"),
        ({"pii": {"colour": "red"}}, "guardrails.pii: unknown fields"),
        ({"injection": {"threshold": 1.5}}, "guardrails.injection.threshold"),
        ({"injection": {"threshold": True}}, "guardrails.injection.threshold"),
        ({"limits": {"max_messages": 0}}, "guardrails.limits.max_messages"),
        ({"content": {"words": "darn"}}, "guardrails.content.words"),
        ({"content": "on"}, "guardrails.content: must be a mapping"),
        ({"pi": {}}, "unknown sections"),
    ],
)
def test_mistakes_name_the_path(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GuardrailsConfig.from_mapping(raw)


def test_override_path_is_named() -> None:
    with pytest.raises(ValueError, match=r"keys\[k1\]\.guardrails\.pii\.action"):
        GuardrailsConfig().override({"pii": {"action": "x"}}, where="keys[k1].guardrails")
