from __future__ import annotations

import pytest

from interlock.guardrails.pii_network import Ipv4Detector, Ipv6Detector


def _v4(text: str) -> list[str]:
    return [text[s.start : s.end] for s in Ipv4Detector().find(text)]


def _v6(text: str) -> list[str]:
    return [text[s.start : s.end] for s in Ipv6Detector().find(text)]


@pytest.mark.parametrize("ip", ["192.168.1.10", "10.0.0.1", "255.255.255.255", "8.8.8.8"])
def test_ipv4_found(ip: str) -> None:
    assert _v4(f"host {ip}.") == [ip]


@pytest.mark.parametrize(
    "text",
    [
        "999.1.1.1",
        "256.1.1.1",
        "1.2.3",
        "1.2.3.4.5",
        "OID 1.3.6.1.4.1",
        "version 1.2.3.4",
        "v1.2.3.4",
        "01.02.03.04",
        "pi 3.14159",
    ],
)
def test_ipv4_look_alikes_ignored(text: str) -> None:
    assert _v4(text) == []


@pytest.mark.parametrize(
    "ip",
    [
        "2001:db8::8a2e:370:7334",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "fe80::1",
        "fe80::1ff:fe23:4567:890a%eth0",
        "::ffff:192.0.2.128",
    ],
)
def test_ipv6_found(ip: str) -> None:
    assert _v6(f"peer {ip} connected") == [ip]


@pytest.mark.parametrize(
    "text",
    [
        "meet at 12:30:45",
        "mac 00:1A:2B:3C:4D:5E",
        "std::vector<int>",
        "dead::beef",
        "a ratio of 2:1",
        "::",
        "1:2:3:4:5:6:7:8:9",
    ],
)
def test_ipv6_look_alikes_ignored(text: str) -> None:
    assert _v6(text) == []
