from __future__ import annotations

import pytest

from interlock.admission.keys import KeyRing, Principal
from interlock.config import KeyConfig, Secret
from interlock.errors import AuthenticationFailed

RING = KeyRing(
    [KeyConfig(name="alice", key=Secret("sk-a")), KeyConfig(name="bob", key=Secret("sk-b"))]
)


def test_bearer_key_resolves_to_its_principal() -> None:
    assert RING.authenticate("Bearer sk-a") == Principal("alice")
    assert RING.authenticate("bearer sk-b") == Principal("bob")


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_api_key"),
        ("", "missing_api_key"),
        ("Basic sk-a", "invalid_api_key"),
        ("Bearer", "invalid_api_key"),
        ("Bearer sk-c", "invalid_api_key"),
    ],
)
def test_bad_credentials_are_401(header: str | None, code: str) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        RING.authenticate(header)
    assert info.value.status_code == 401 and info.value.code == code
