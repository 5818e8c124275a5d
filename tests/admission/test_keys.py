from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from interlock.admission.keys import KeyRing
from interlock.config import KeyConfig, KeyLimits, Secret, TierConfig
from interlock.errors import AuthenticationFailed, PermissionDenied
from interlock.store import open_store

RING = KeyRing(
    [KeyConfig(name="alice", key=Secret("sk-a")), KeyConfig(name="bob", key=Secret("sk-b"))]
)


def test_bearer_key_resolves_to_its_principal() -> None:
    assert RING.authenticate("Bearer sk-a").name == "alice"
    assert RING.authenticate("bearer sk-b").name == "bob"
    assert RING.authenticate("Bearer sk-a").key_id is None  # a config-file key


def test_tier_defaults_and_key_overrides() -> None:
    tiers = {"standard": TierConfig(limits=KeyLimits(rpm=600, tpm=1000), priority=1)}
    ring = KeyRing(
        [KeyConfig(name="ci", key=Secret("sk-ci"), tier="standard", limits=KeyLimits(rpm=60))],
        tiers,
    )
    principal = ring.authenticate("Bearer sk-ci")
    assert principal.limits == KeyLimits(rpm=60, tpm=1000)
    assert principal.priority == 1


async def test_store_keys_revocation_and_expiry(tmp_path: Path) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path}/keys.db")
    try:
        ring = KeyRing([], {}, store.keys, clock=lambda: now[0])
        record, plain = await store.keys.create("svc", "standard", allowed_models=["m1"])
        _, soon_plain = await store.keys.create(
            "brief", "standard", expires_at=now[0] + timedelta(hours=1)
        )
        with pytest.raises(AuthenticationFailed):
            ring.authenticate(f"Bearer {plain}")  # not loaded yet
        await ring.refresh()
        principal = ring.authenticate(f"Bearer {plain}")
        assert principal.key_id == record.id and principal.may_use("m1")
        assert not principal.may_use("m2")
        await store.keys.revoke(record.id)
        await ring.refresh()
        with pytest.raises(PermissionDenied) as revoked:
            ring.authenticate(f"Bearer {plain}")
        assert revoked.value.code == "key_revoked"
        ring.authenticate(f"Bearer {soon_plain}")
        now[0] += timedelta(hours=2)
        with pytest.raises(PermissionDenied) as expired:
            ring.authenticate(f"Bearer {soon_plain}")
        assert expired.value.code == "key_expired"
    finally:
        await store.aclose()


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
