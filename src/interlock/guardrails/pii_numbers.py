"""Numbers with a checksum or a structure: payment cards, US SSNs, IBANs.

Each candidate must pass its check (Luhn and a known issuer prefix; SSN
area/group/serial ranges; IBAN country length and mod-97), so order numbers,
timestamps and look-alike digit runs are left alone.
"""

from __future__ import annotations

import re

from interlock.guardrails.spans import Span, matches_at_boundary

__all__ = ["CardDetector", "IbanDetector", "SsnDetector", "card_network", "iban_valid", "luhn_ok"]

_CARD = re.compile(r"\d{4}(?:[ -]?\d{2,6}){2,4}(?![\w-]|[.,]\d)")
_SSN = re.compile(r"(\d{3})-(\d{2})-(\d{4})(?![\w-]|\.\d)")
_IBAN = re.compile(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])")

# ISO 13616 registry: country -> IBAN length.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27,
    "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_network(digits: str) -> str | None:
    """The network a card number's issuer prefix and length belong to, if any."""
    n, p2, p3, p4 = len(digits), int(digits[:2]), int(digits[:3]), int(digits[:4])
    p6 = int(digits[:6])
    if digits[0] == "4":
        return "visa" if n in (13, 16, 19) else None
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return "mastercard" if n == 16 else None
    if p2 in (34, 37):
        return "amex" if n == 15 else None
    if 2200 <= p4 <= 2204:
        return "mir" if n >= 16 else None
    if 3528 <= p4 <= 3589:
        return "jcb" if n >= 16 else None
    if 300 <= p3 <= 305 or p4 == 3095 or p2 in (36, 38, 39):
        return "diners" if n >= 14 else None
    if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or 622126 <= p6 <= 622925:
        return "discover" if n >= 16 else None
    if p2 == 62:
        return "unionpay" if n >= 16 else None
    if p2 == 50 or 56 <= p2 <= 69:
        return "maestro"
    return None


def iban_valid(compact: str) -> bool:
    """Country length and the ISO 7064 mod-97 check on an IBAN without spaces."""
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


class CardDetector:
    """13-19 digits, optionally grouped by spaces or dashes, Luhn-valid, known issuer."""

    type = "CARD"
    hints: tuple[str, ...] = ()
    trigger: tuple[str, ...] = (
        r"\d",
        r"\d{4}[ -]?\d\d",
    )  # the first group and the start of the second
    tail = r"\d[\d -]*\Z"
    blank_tail = r"\d"

    def find(self, text: str, start: int = 0) -> list[Span]:
        spans: list[Span] = []
        for m in matches_at_boundary(_CARD, text, start, ".,-"):
            raw = m.group()
            if " " in raw and "-" in raw:  # one separator style per number
                continue
            digits = raw.replace(" ", "").replace("-", "")
            if 13 <= len(digits) <= 19 and luhn_ok(digits):
                network = card_network(digits)
                if network is not None:
                    spans.append(Span(m.start(), m.end(), self.type, network))
        return spans


class SsnDetector:
    """``AAA-GG-SSSS`` with an assignable area, group and serial."""

    type = "US_SSN"
    hints: tuple[str, ...] = ()
    trigger: tuple[str, ...] = (r"\d", r"\d-\d\d-\d")
    tail = r"\d[\d-]*\Z"
    blank_tail = ""

    def find(self, text: str, start: int = 0) -> list[Span]:
        spans: list[Span] = []
        for m in matches_at_boundary(_SSN, text, start, "-"):
            area, group, serial = m.groups()
            if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
                continue
            spans.append(Span(m.start(), m.end(), self.type))
        return spans


class IbanDetector:
    """Country code, check digits and BBAN, spaces allowed, mod-97 valid."""

    type = "IBAN"
    hints: tuple[str, ...] = ()
    trigger: tuple[str, ...] = (r"\d", r"[A-Z]{2}\d\d")  # country code and check digits
    tail = r"[A-Z]{1,2}\Z|[A-Z]{2}\d{1,2}[A-Z0-9 ]*\Z"
    blank_tail = r"\d"

    def find(self, text: str, start: int = 0) -> list[Span]:
        spans: list[Span] = []
        for m in matches_at_boundary(_IBAN, text, start, ""):
            raw = m.group()
            expected = _IBAN_LENGTHS.get(raw[:2])
            if expected is None:
                continue
            end = _end_of_nth_alnum(raw, expected)
            if end is None or (end < len(raw) and raw[end] != " "):
                continue  # too short, or the country length ends mid-group
            if iban_valid(raw[:end].replace(" ", "")):
                spans.append(Span(m.start(), m.start() + end, self.type, raw[:2]))
        return spans


def _end_of_nth_alnum(raw: str, n: int) -> int | None:
    seen = 0
    for i, ch in enumerate(raw):
        if ch != " ":
            seen += 1
            if seen == n:
                return i + 1
    return None
