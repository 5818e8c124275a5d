"""Who an anonymous visitor is behind the operator's load balancers."""

from __future__ import annotations

import pytest

from interlock.config import ConfigError, parse_config
from interlock.search.client_address import ClientAddress
from tests.conftest import TEST_KEY, simulator_config

BALANCERS = ClientAddress(["10.0.0.0/8", "2001:db8::1"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("198.51.100.7", "203.0.113.9", "198.51.100.7"),  # not a proxy: its header is ignored
        ("10.0.0.2", "203.0.113.9", "203.0.113.9"),
        ("10.0.0.2", "192.0.2.1, 203.0.113.9, 10.0.0.3", "203.0.113.9"),  # rightmost untrusted
        ("10.0.0.2", None, "10.0.0.2"),
        ("10.0.0.2", "10.0.0.4, 10.0.0.3", "10.0.0.2"),  # every hop trusted
        ("10.0.0.2", "203.0.113.9, not-an-address", "10.0.0.2"),
        ("2001:db8::1", "2001:db8::99", "2001:db8::99"),
        (None, "203.0.113.9", None),
    ],
)
def test_the_client_is_the_first_untrusted_hop_from_the_right(
    peer: str | None, forwarded: str | None, client: str | None
) -> None:
    assert BALANCERS.resolve(peer, forwarded) == client


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert ClientAddress().resolve("10.0.0.2", "203.0.113.9") == "10.0.0.2"


def test_a_bad_trusted_proxy_is_a_config_error() -> None:
    raw = {**simulator_config(), "search": {"anonymous": {"trusted_proxies": ["nope"]}}}
    with pytest.raises(ConfigError, match="not an address or network"):
        parse_config(raw, env={"TEST_KEY": TEST_KEY})
