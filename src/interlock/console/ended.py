"""Console sessions ended before their time: a logout ends the session it
came from, on every instance.

A session is a signed cookie that every instance accepts until it expires
(``session.py``); deleting the cookie ends it in that browser only, and a
copy of it (a stolen cookie, another tab's) would live on. So a logout also
writes the session's nonce to the state store until the session would have
expired, and every request checks it there: one read per console request,
none on the API's hot path. With the state store unreachable the check
follows ``admission.on_state_failure``: ``fail_closed`` ends the session,
``fail_open`` keeps it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from interlock.console.session import ConsoleSession
from interlock.state.base import StateStore, StateStoreUnavailable

__all__ = ["EndedSessions"]

log = logging.getLogger("interlock.console")

_PREFIX = "console:ended:"


class EndedSessions:
    def __init__(
        self, state: StateStore, fail_closed: bool, clock: Callable[[], float] = time.time
    ):
        self._state = state
        self._fail_closed = fail_closed
        self._clock = clock

    async def end(self, session: ConsoleSession) -> None:
        """Ends ``session`` everywhere; raises ``StateStoreUnavailable``."""
        left = session.expires_at - self._clock()
        if left > 0:
            await self._state.set(_PREFIX + session.nonce, b"1", ttl_s=left)

    async def ended(self, session: ConsoleSession) -> bool:
        try:
            return await self._state.get(_PREFIX + session.nonce) is not None
        except StateStoreUnavailable:
            log.warning(
                "console session check: the state store is unreachable",
                extra={"fail_closed": self._fail_closed},
            )
            return self._fail_closed
