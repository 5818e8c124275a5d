from __future__ import annotations

import re

import pytest

from interlock.guardrails.scanner import PII_TYPES, PiiScanner
from interlock.guardrails.spans import Span, prefix_pattern, resolve


def test_redact_every_type_in_one_text() -> None:
    text = (
        "Ann <ann@example.com>, +44 20 7946 0958, card 4111 1111 1111 1111, SSN 123-45-6789, "
        "from 10.1.2.3 / 2001:db8::1, IBAN GB82 WEST 1234 5698 7654 32, key AKIAIOSFODNN7EXAMPLE."
    )
    assert PiiScanner.for_types().redact(text) == (
        "Ann <[EMAIL]>, [PHONE], card [CARD], SSN [US_SSN], from [IPV4] / [IPV6], "
        "IBAN [IBAN], key [SECRET]."
    )


def test_only_configured_types_are_found() -> None:
    scanner = PiiScanner.for_types(["email"])
    assert scanner.types == frozenset({"EMAIL"})
    assert scanner.redact("a@b.co 4111 1111 1111 1111") == "[EMAIL] 4111 1111 1111 1111"


def test_unknown_type_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="PASSPORT"):
        PiiScanner.for_types(["EMAIL", "PASSPORT"])


def test_all_types_known() -> None:
    assert set(PII_TYPES) == {
        "EMAIL", "PHONE", "CARD", "US_SSN", "IPV4", "IPV6", "IBAN", "SECRET",
    }  # fmt: skip


def test_resolve_prefers_leftmost_then_priority_then_longest() -> None:
    spans = [
        Span(5, 9, "PHONE"),
        Span(0, 6, "PHONE"),
        Span(10, 20, "PHONE"),
        Span(10, 20, "SECRET"),
        Span(10, 14, "EMAIL"),
    ]
    assert resolve(spans) == [Span(0, 6, "PHONE"), Span(10, 20, "SECRET")]


def test_text_without_values_is_returned_as_is() -> None:
    text = "Nothing personal here, version 1.2.3 on 2024-01-05."
    assert PiiScanner.for_types().redact(text) is text


def test_hold_from_finds_a_growing_suffix() -> None:
    scanner = PiiScanner.for_types(["CARD"])
    assert scanner.hold_from("pay 4111 11", 0) == 4
    assert scanner.hold_from("pay now. ", 0) == len("pay now. ")


def test_prefix_pattern_matches_each_prefix() -> None:
    pattern = re.compile(prefix_pattern("-BEGIN") + r"\Z")
    assert all(pattern.search("x" + "-BEGIN"[:n]) for n in range(1, 7))
    assert pattern.search("x-BEGX") is None
