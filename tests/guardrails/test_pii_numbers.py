from __future__ import annotations

import pytest

from interlock.guardrails.pii_numbers import (
    CardDetector,
    IbanDetector,
    SsnDetector,
    card_network,
    iban_valid,
    luhn_ok,
)

Detector = CardDetector | IbanDetector | SsnDetector


def _values(detector: Detector, text: str) -> list[str]:
    return [text[s.start : s.end] for s in detector.find(text)]


def test_luhn() -> None:
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")
    assert luhn_ok("378282246310005")


@pytest.mark.parametrize(
    ("card", "network"),
    [
        ("4111 1111 1111 1111", "visa"),
        ("4111-1111-1111-1111", "visa"),
        ("4111111111111111", "visa"),
        ("5555 5555 5555 4444", "mastercard"),
        ("2221 0000 0000 0009", "mastercard"),
        ("3782 822463 10005", "amex"),
        ("6011 1111 1111 1117", "discover"),
        ("3530 1113 3330 0000", "jcb"),
        ("3056 9309 0259 04", "diners"),
    ],
)
def test_card_found_with_network(card: str, network: str) -> None:
    spans = CardDetector().find(f"card: {card}, exp 12/27")
    assert [s.label for s in spans] == [network]
    assert _values(CardDetector(), f"pay with {card}.") == [card]


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # Luhn fails
        "1234 5678 9012 3452",  # Luhn passes, but no issuer starts with 1
        "Order 1700000000005 shipped",  # a timestamp-like id
        "4111 1111-1111 1111",  # mixed separators
        "41111111111111111111",  # 20 digits
        "pi is 3.1415926535897932",
        "amount 4111111111111111.50",
        "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
    ],
)
def test_card_look_alikes_ignored(text: str) -> None:
    assert _values(CardDetector(), text) == []


def test_card_network_needs_matching_length() -> None:
    assert card_network("4111111111111111") == "visa"
    assert card_network("411111111111111") is None  # 15-digit Visa does not exist
    assert card_network("9111111111111111") is None


@pytest.mark.parametrize("ssn", ["123-45-6789", "078-05-1121", "899-99-9999"])
def test_ssn_found(ssn: str) -> None:
    assert _values(SsnDetector(), f"SSN {ssn} on file") == [ssn]


@pytest.mark.parametrize(
    "text",
    [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "987-65-4321",
        "123-00-4567",
        "123-45-0000",
        "2023-10-15",
        "123-45-67890",
        "call 415-555-2671",
    ],
)
def test_ssn_invalid_ranges_ignored(text: str) -> None:
    assert _values(SsnDetector(), text) == []


@pytest.mark.parametrize(
    "iban",
    [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91 ABNA 0417 1643 00",
        "NO93 8601 1117 947",
    ],
)
def test_iban_found(iban: str) -> None:
    assert _values(IbanDetector(), f"IBAN: {iban} (EUR)") == [iban]


def test_iban_stops_at_country_length() -> None:
    text = "DE89 3704 0044 0532 0130 00 1234 is the ref"
    assert _values(IbanDetector(), text) == ["DE89 3704 0044 0532 0130 00"]


@pytest.mark.parametrize(
    "text",
    [
        "DE88 3704 0044 0532 0130 00",  # bad check digits
        "GB82 WEST 1234 5698 7654 33",
        "ZZ12 3456 7890 1234 56",  # no such country
        "DE89 3704 0044 0532 0130",  # too short for DE
        "AB12CD34EF56GH78",
    ],
)
def test_iban_bad_checksum_ignored(text: str) -> None:
    assert _values(IbanDetector(), text) == []


def test_iban_valid_helper() -> None:
    assert iban_valid("GB82WEST12345698765432")
    assert not iban_valid("GB82WEST12345698765431")
