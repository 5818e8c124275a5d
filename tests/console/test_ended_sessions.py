"""Sessions a logout ended (``console/ended.py``): kept until they would have
expired, and what an unreachable state store means for a session."""

from __future__ import annotations

from typing import Any

import pytest

from interlock.console.ended import EndedSessions
from interlock.console.session import ConsoleSession
from interlock.state.base import StateStoreUnavailable
from interlock.state.memory import MemoryStateStore

SESSION = ConsoleSession("alice", "nonce-1", expires_at=1_000.0, csrf_token="t")


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Unreachable(MemoryStateStore):
    async def get(self, key: str) -> Any:
        raise StateStoreUnavailable("down")


async def test_an_ended_session_is_kept_until_it_would_have_expired() -> None:
    clock = Clock(400.0)
    state = MemoryStateStore(clock=clock)
    ended = EndedSessions(state, fail_closed=False, clock=clock)
    assert not await ended.ended(SESSION)
    await ended.end(SESSION)
    assert await ended.ended(SESSION)
    assert not await ended.ended(ConsoleSession("alice", "nonce-2", 1_000.0, "t"))
    clock.now = 1_001.0  # expired anyway: nothing left to keep
    assert not await ended.ended(SESSION)


@pytest.mark.parametrize("fail_closed", [True, False])
async def test_an_unreachable_store_follows_on_state_failure(fail_closed: bool) -> None:
    ended = EndedSessions(Unreachable(), fail_closed=fail_closed)
    assert await ended.ended(SESSION) is fail_closed
