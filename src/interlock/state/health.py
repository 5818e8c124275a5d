"""One health latch per Redis, shared by every user of it.

Each user of Redis already degrades when a call fails: the cache misses and
keeps to its local tier, breakers decide locally, the limiter enforces
per-instance limits. But a Redis that accepts connections and never answers
(stopped, swapping, behind a black-holed network) fails a call only when its
timeout runs out, so without a latch every request pays that timeout, once
per call it makes. The latch makes an outage cost a few timeouts in all::

    available ──trip_after failures in a row──▶ latched ──a probe answers──▶ available
                                                  │  ▲
                                                  └──┘ a probe fails: wait twice as long,
                                                       at most probe_max_s

- Only timeouts and connection failures count (``failed``); any answer, an
  error reply included, resets the count (``succeeded``).
- While latched, ``available`` is False: callers refuse at once, without
  asking Redis, and each user takes its degraded path. That attribute is
  all a call checks while Redis is healthy.
- One prober at a time (``claim_probe``) sends one PING at a time: the first
  ``probe_after_s`` after the trip, then after a doubling wait, bounded by
  ``probe_max_s``. Only a probe lifts the latch. Outcomes of calls that were
  already under way when it tripped are ignored, so a Redis that answers
  some calls and times out others does not flap.

A plain policy: no I/O, time from the injected clock. ``RedisGuard``
(``interlock.state.redis_guard``) runs the calls and the probes; every Redis
client of one gateway (state store, rate limiter) shares one ``StoreHealth``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["HealthListener", "StoreHealth"]

log = logging.getLogger("interlock.state")

# Told ``available`` on every transition.
HealthListener = Callable[[bool], None]


class StoreHealth:
    """Whether to ask Redis at all, and when to probe it while not."""

    def __init__(
        self,
        *,
        trip_after: int = 3,
        probe_after_s: float = 0.5,
        probe_max_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if trip_after < 1:
            raise ValueError("trip_after must be at least 1")
        if not 0 < probe_after_s <= probe_max_s:
            raise ValueError("need 0 < probe_after_s <= probe_max_s")
        self.trip_after = trip_after
        self.probe_after_s = probe_after_s
        self.probe_max_s = probe_max_s
        self._clock = clock
        self.available = True
        self._failures = 0  # in a row, while available
        self._probing = False
        self._wait_s = probe_after_s  # before the next probe
        self._next_probe = 0.0
        self._since = 0.0  # when the latch tripped
        self._listeners: list[HealthListener] = []

    def on_change(self, listener: HealthListener) -> None:
        """Call ``listener(available)`` on every transition, in order of registration."""
        self._listeners.append(listener)

    # -- what calls report -----------------------------------------------------

    def succeeded(self) -> None:
        """A call got an answer (an error reply counts)."""
        self._failures = 0

    def failed(self, reason: str) -> None:
        """A call timed out or could not connect; trips the latch after ``trip_after``."""
        if not self.available:
            return  # a call from before the trip; the latch already knows
        self._failures += 1
        if self._failures >= self.trip_after:
            self._trip(reason)

    # -- probing while latched ------------------------------------------------------

    def claim_probe(self) -> bool:
        """True when the caller is now the prober: latched, and nobody else probes.

        The prober waits ``probe_wait_s()``, pings, reports ``probe_finished``,
        and repeats until available; then (or when it stops early) it calls
        ``release_probe``.
        """
        if self.available or self._probing:
            return False
        self._probing = True
        return True

    def probe_wait_s(self) -> float:
        """Seconds until the next probe is due (0 while available)."""
        return 0.0 if self.available else max(0.0, self._next_probe - self._clock())

    def probe_finished(self, answered: bool) -> None:
        """One probe's outcome: an answer lifts the latch, silence doubles the wait."""
        if self.available:
            return
        if answered:
            self._recover()
            return
        self._wait_s = min(self._wait_s * 2, self.probe_max_s)
        self._next_probe = self._clock() + self._wait_s

    def release_probe(self) -> None:
        """The prober stopped: the next refused call may start another."""
        self._probing = False

    # -- transitions ------------------------------------------------------------------

    def _trip(self, reason: str) -> None:
        now = self._clock()
        self.available = False
        self._since = now
        self._wait_s = self.probe_after_s
        self._next_probe = now + self._wait_s
        log.warning(
            "Redis unavailable after %d failures in a row (%s): calls to it are refused "
            "at once, each user degrades, and a PING probes it in the background",
            self._failures,
            reason,
        )
        self._notify()

    def _recover(self) -> None:
        self.available = True
        self._failures = 0
        log.warning(
            "Redis answers again after %.1f s unavailable; calls to it resume",
            self._clock() - self._since,
        )
        self._notify()

    def _notify(self) -> None:
        for listener in self._listeners:
            listener(self.available)
