from __future__ import annotations

import pytest

from interlock.guardrails.pii_contact import EmailDetector, PhoneDetector


def _values(detector: EmailDetector | PhoneDetector, text: str) -> list[str]:
    return [text[s.start : s.end] for s in detector.find(text)]


@pytest.mark.parametrize(
    "email",
    ["john.doe@example.com", "a@b.co", "first+tag@mail.example.org", "X_Y-9@sub.dom-ain.io"],
)
def test_email_found(email: str) -> None:
    assert _values(EmailDetector(), f"Write to {email}, thanks.") == [email]


@pytest.mark.parametrize(
    "text",
    [
        "user@localhost is not routable",
        "see @mention on twitter",
        "version 1.2@3",
        "foo@bar.c1 is no domain",
        "git@",
    ],
)
def test_email_look_alikes_ignored(text: str) -> None:
    assert _values(EmailDetector(), text) == []


def test_email_excludes_sentence_dot() -> None:
    assert _values(EmailDetector(), "Mail me at ann@corp.example.") == ["ann@corp.example"]


@pytest.mark.parametrize(
    "phone",
    [
        "(415) 555-2671",
        "415-555-2671",
        "415.555.2671",
        "+1 415 555 2671",
        "+1-415-555-2671",
        "+14155552671",
        "+44 20 7946 0958",
        "+44 (0)20 7946 0958",
        "+33 1 23 45 67 89",
        "+49 30 901820",
        "+91 98765 43210",
    ],
)
def test_phone_found(phone: str) -> None:
    assert _values(PhoneDetector(), f"Call me on {phone} tomorrow.") == [phone]


@pytest.mark.parametrize(
    "text",
    [
        "Released on 2023-10-15.",
        "Meet 10.15.2023 at noon",
        "Upgrade to 3.11.4 and 1.2.3",
        "Order #415-555-2671 shipped",
        "invoice number 415-555-2671",
        "ticket: 415 555 2671",
        "area code 123-555-2671 is not valid",
        "exchange 415-155-2671 is not valid",
        "call 911-555-2671",
        "415-555-26711 has too many digits",
        "415-555.2671 mixes separators",
        "+12 345 is too short",
        "+1234567890123456789 is too long",
        "192.168.100.200",
        "ISBN 978-3-16-148410-0",
        "4155552671 without separators",
    ],
)
def test_phone_look_alikes_ignored(text: str) -> None:
    assert _values(PhoneDetector(), text) == []
