"""The connection caps as plain data: opens and closes in, refusals out."""

from __future__ import annotations

from interlock.api.connections import ConnectionCaps
from interlock.errors import Overloaded, TooManyRequests


def test_the_connection_over_the_global_cap_is_refused_503() -> None:
    caps = ConnectionCaps(max_total=2)
    assert caps.open("10.0.0.1") is None
    assert caps.open("10.0.0.2") is None
    refusal = caps.open("10.0.0.3")
    assert isinstance(refusal, Overloaded)
    assert refusal.status_code == 503 and refusal.retry_after_s == 1


def test_a_closed_connection_frees_its_place() -> None:
    caps = ConnectionCaps(max_total=1)
    assert caps.open("10.0.0.1") is None
    assert caps.open("10.0.0.1") is not None
    caps.close("10.0.0.1")
    caps.close("10.0.0.1")
    assert caps.total == 0
    assert caps.open("10.0.0.2") is None


def test_the_per_client_cap_counts_each_address_apart() -> None:
    caps = ConnectionCaps(max_total=100, max_per_client=2)
    assert caps.open("10.0.0.1") is None
    assert caps.open("10.0.0.1") is None
    assert caps.open("10.0.0.2") is None
    refusal = caps.open("10.0.0.1")
    assert isinstance(refusal, TooManyRequests)
    assert refusal.status_code == 429 and refusal.code == "too_many_connections"


def test_an_address_leaves_the_table_with_its_last_connection() -> None:
    caps = ConnectionCaps(max_total=100, max_per_client=2)
    for _ in range(3):
        caps.open("10.0.0.1")
    for _ in range(3):
        caps.close("10.0.0.1")
    assert caps.per_client == {}
    assert caps.open("10.0.0.1") is None


def test_without_a_per_client_cap_no_address_is_kept() -> None:
    caps = ConnectionCaps(max_total=100)
    for _ in range(50):
        assert caps.open("127.0.0.1") is None
    assert caps.per_client == {}


def test_a_unix_socket_peer_counts_only_towards_the_global_cap() -> None:
    caps = ConnectionCaps(max_total=1, max_per_client=1)
    assert caps.open(None) is None
    assert isinstance(caps.open(None), Overloaded)
    caps.close(None)
    caps.close(None)
    assert caps.total == 0
