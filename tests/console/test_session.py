"""Console sessions: signed cookies that expire, tied to the admin key, and
the CSRF token that goes with each. An injected clock: no sleeping."""

from __future__ import annotations

import hashlib

from interlock.console.session import SessionSigner
from tests.support.clock import FakeClock

DIGEST = hashlib.sha256(b"sk-admin").digest()


def test_a_session_round_trips_with_its_actor_and_csrf_token() -> None:
    signer = SessionSigner(DIGEST, lifetime_s=60, clock=FakeClock(1_000_000.0))
    cookie, issued = signer.issue("  alice  ")
    found = signer.verify(cookie)
    assert found is not None
    assert found.actor == "alice"
    assert found.csrf_token == issued.csrf_token
    assert signer.csrf_ok(found, issued.csrf_token)
    assert not signer.csrf_ok(found, None)
    assert not signer.csrf_ok(found, issued.csrf_token[:-1] + "x")


def test_a_session_ends_at_its_expiry() -> None:
    clock = FakeClock(1_000_000.0)
    signer = SessionSigner(DIGEST, lifetime_s=60, clock=clock)
    cookie, _ = signer.issue("alice")
    clock.now += 59
    assert signer.verify(cookie) is not None
    clock.now += 1
    assert signer.verify(cookie) is None


def test_each_session_has_its_own_csrf_token() -> None:
    signer = SessionSigner(DIGEST, clock=FakeClock(1_000_000.0))
    _, first = signer.issue("alice")
    second_cookie, second = signer.issue("alice")
    assert first.csrf_token != second.csrf_token
    found = signer.verify(second_cookie)
    assert found is not None and not signer.csrf_ok(found, first.csrf_token)


def test_a_forged_or_altered_cookie_is_refused() -> None:
    clock = FakeClock(1_000_000.0)
    signer = SessionSigner(DIGEST, lifetime_s=60, clock=clock)
    cookie, _ = signer.issue("alice")
    expires, nonce, actor, mac = cookie.split(".")
    later = f"{int(expires) + 86_400}.{nonce}.{actor}.{mac}"
    assert signer.verify(later) is None
    assert signer.verify(cookie + "x") is None
    for junk in ("", ".", "a.b.c.d", "x" * 600, None):
        assert signer.verify(junk) is None


def test_another_admin_key_ends_every_session() -> None:
    clock = FakeClock(1_000_000.0)
    cookie, _ = SessionSigner(DIGEST, clock=clock).issue("alice")
    other = SessionSigner(hashlib.sha256(b"sk-admin-rotated").digest(), clock=clock)
    assert other.verify(cookie) is None
    # And any instance with the same admin key accepts it: no sticky sessions.
    assert SessionSigner(DIGEST, clock=clock).verify(cookie) is not None


def test_the_actor_is_printable_and_bounded() -> None:
    signer = SessionSigner(DIGEST, clock=FakeClock(1_000_000.0))
    cookie, _ = signer.issue("eve\x00\n" + "x" * 200)
    found = signer.verify(cookie)
    assert found is not None
    assert found.actor.isprintable() and len(found.actor) == 64
    assert signer.issue("")[1].actor == "admin"
