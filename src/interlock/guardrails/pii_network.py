"""IP addresses: IPv4 dotted quads and IPv6, validated by ``ipaddress``.

Candidates are loose on purpose and ``ipaddress`` decides, so ``999.1.1.1``,
``12:30:45`` (a time) and ``00:1A:2B:3C:4D:5E`` (a MAC) are left alone.
Dotted runs that continue (``1.2.3.4.5``, an OID or a version) are not
addresses, nor are quads introduced as a version.
"""

from __future__ import annotations

import ipaddress
import re

from interlock.guardrails.spans import Span, matches_at_boundary

__all__ = ["Ipv4Detector", "Ipv6Detector"]

_IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w]|\.\d)")
_VERSION_BEFORE = re.compile(r"(?:version|ver\.?|release|build|v)\s*$", re.IGNORECASE)
# Hex groups and colons (at least two), optionally an embedded IPv4 and a zone.
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4})"
    r"(?:%[\w.]+)?(?![\w:]|\.\w)"
)


class Ipv4Detector:
    """Four octets, each at most 255 (no leading zeros)."""

    type = "IPV4"
    hints: tuple[str, ...] = ()
    trigger: tuple[str, ...] = (r"\d", r"\d\.\d{1,3}\.\d")
    tail = r"\d[\d.]*\Z"
    blank_tail = ""

    def find(self, text: str, start: int = 0) -> list[Span]:
        spans: list[Span] = []
        for m in matches_at_boundary(_IPV4, text, start, "."):
            if _VERSION_BEFORE.search(text, max(0, m.start() - 12), m.start()):
                continue
            try:
                ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            spans.append(Span(m.start(), m.end(), self.type))
        return spans


class Ipv6Detector:
    """Any form ``ipaddress.IPv6Address`` accepts, with at least one digit and two
    non-empty groups (so ``::``, ``std::map`` and ``dead::beef`` stay prose)."""

    type = "IPV6"
    hints: tuple[str, ...] = (":",)
    trigger: tuple[str, ...] = (r":[0-9A-Fa-f]{0,4}:",)  # two groups at least
    tail = r"[0-9A-Fa-f]{0,4}:[\w:.%]*\Z|[0-9A-Fa-f]{1,4}\Z"
    blank_tail = ""

    def find(self, text: str, start: int = 0) -> list[Span]:
        if "::" not in text and text.count(":") < 7:  # compressed, or all eight groups
            return []
        spans: list[Span] = []
        for m in _IPV6.finditer(text, start):
            candidate = m.group()
            address = candidate.split("%", 1)[0]
            groups = [g for g in address.split(":") if g]
            if len(groups) < 2 or not any(ch.isdigit() for ch in address):
                continue
            try:
                ipaddress.IPv6Address(address)
            except ValueError:
                continue
            spans.append(Span(m.start(), m.end(), self.type))
        return spans
