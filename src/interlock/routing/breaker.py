"""Per-deployment circuit breaker, shared across gateway instances.

A plain policy object: the caller asks ``allow()`` before sending to a
deployment and reports the outcome with ``record_success()`` or
``record_failure()``. The caller decides what counts as a failure (upstream
faults only: a 5xx, a timeout, a reset; never the client's own 4xx).

States::

    closed ──trip──▶ open ──open_until passes──▶ half_open ──close_after successes──▶ closed
                      ▲                              │
                      └──────── probe fails ─────────┘  (longer open period)

- Trip: ``consecutive_failures`` in a row, or an error rate of at least
  ``error_rate`` over the last ``window_s`` once ``min_requests`` were seen.
  These counts are LOCAL to each instance: each sees a sample of the same
  upstream, so each reaches the same verdict, and counting locally keeps the
  store off the request path.
- Open: nothing is sent for ``open_s * 2**level`` seconds (capped at
  ``max_open_s``); ``level`` grows with each failed probe and resets on close.
- Half-open: at most ``half_open_probes`` requests probe at once across all
  instances (a counter in the store with a TTL, so a crashed instance's slot
  frees itself); ``close_after`` consecutive probe successes close it, one
  probe failure re-opens it.

SHARED: the decision (open until when, backoff level, a generation number that
changes on every transition) lives in the store under ``breaker:{deployment}``
as JSON, changed only by compare-and-set. ``open_until`` is wall-clock epoch
seconds so instances agree on it. ``allow()`` reads a cached copy refreshed at
most every ``refresh_s``, so when one instance trips, the others stop sending
within ``refresh_s`` while the store is touched about once per ``refresh_s``,
not per request. While the store is unreachable the breaker runs on its local
copy alone (logged once per outage) and offers its local decision back with
compare-and-set when the store returns.

Outcomes are matched to probes by count, not by request: while this instance
holds probe slots, the next outcome it is told about is taken as a probe's.

The states, the stored record and the rolling window live in ``breaker_state``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from interlock.routing.breaker_state import (
    STATE_GAUGE,
    BreakerRecord,
    BreakerState,
    OutcomeWindow,
)
from interlock.state.base import StateStore, StateStoreUnavailable

__all__ = ["STATE_GAUGE", "BreakerConfig", "BreakerState", "CircuitBreaker", "TransitionCallback"]

log = logging.getLogger("interlock.breaker")

TransitionCallback = Callable[[str, BreakerState, BreakerState], None]


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Thresholds; the defaults suit a deployment serving a few requests a second."""

    consecutive_failures: int = 5
    error_rate: float = 0.5
    window_s: float = 30.0
    min_requests: int = 20
    open_s: float = 5.0
    max_open_s: float = 60.0
    half_open_probes: int = 1
    close_after: int = 2
    refresh_s: float = 0.5
    # A probe slot frees itself after this long, in case its instance died mid-request.
    probe_timeout_s: float = 30.0
    # After a store failure, stay on local state this long before trying the store again,
    # so an outage costs one timeout per breaker per period, not one per request.
    store_retry_s: float = 5.0

    def __post_init__(self) -> None:
        if min(self.consecutive_failures, self.min_requests, self.half_open_probes) < 1:
            raise ValueError("failure counts, min_requests and half_open_probes must be >= 1")
        if self.close_after < 1 or not 0 < self.error_rate <= 1:
            raise ValueError("close_after must be >= 1 and error_rate in (0, 1]")
        if not 0 < self.open_s <= self.max_open_s:
            raise ValueError("need 0 < open_s <= max_open_s")
        if min(self.window_s, self.refresh_s, self.probe_timeout_s, self.store_retry_s) <= 0:
            raise ValueError("durations must be positive")

    def open_for(self, level: int) -> float:
        """The open period after ``level`` failed probes in a row."""
        return min(self.max_open_s, self.open_s * 2.0 ** min(level, 62))


class CircuitBreaker:
    """The breaker for one deployment on one gateway instance.

    Contract: every ``allow()`` that returns True is followed by exactly one
    ``record_success()``, ``record_failure()`` or ``record_ignored()``, else a
    half-open probe slot stays taken until ``probe_timeout_s``.
    """

    def __init__(
        self,
        deployment_id: str,
        store: StateStore,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_transition: TransitionCallback | None = None,
    ):
        self.deployment_id = deployment_id
        self.config = config or BreakerConfig()
        self._store = store
        self._clock = clock
        self._wall = wall
        self._on_transition = on_transition
        self._key = f"breaker:{deployment_id}"
        self._record = BreakerRecord()
        self._raw: bytes | None = None  # the stored bytes behind _record: our CAS base
        self._fetched_at = -math.inf
        self._decisions = 0  # bumped by each local decision; see _adopt
        self._reported = BreakerState.CLOSED
        # Local counts for the trip decision.
        self._consecutive = 0
        self._window = OutcomeWindow(self.config.window_s)
        # Probe slots this instance holds: (generation, taken in the store?).
        self._probes: deque[tuple[int, bool]] = deque()
        self._local_successes = (0, 0)  # (generation, count) while the store is down
        # Store health: local-only until _down_until; a decision made meanwhile is
        # offered back to the store (CAS from _sync_base) when it returns.
        self._down_until = -math.inf
        self._store_down = False
        self._unsynced = False
        self._sync_base: bytes | None = None

    @property
    def state(self) -> BreakerState:
        """This instance's current view (at most ``refresh_s`` behind the store)."""
        return self._record.state_at(self._wall())

    async def allow(self) -> bool:
        """May a request go to this deployment now? In half-open this takes a probe slot."""
        if self._clock() - self._fetched_at >= self.config.refresh_s:
            await self._refresh()
        state = self.state
        if state is BreakerState.CLOSED:
            allowed = True
        elif state is BreakerState.OPEN:
            allowed = False
        else:
            allowed = await self._take_probe()
            state = self.state
        self._observe(state)
        return allowed

    async def record_success(self) -> None:
        """An attempt allowed by ``allow()`` succeeded."""
        gen = await self._finish_probe()
        if gen is not None:
            if await self._count_probe_success(gen) >= self.config.close_after:
                await self._transition(lambda r: BreakerRecord(None, 0, r.gen + 1), gen)
            self._observe()
        elif self._record.open_until is None:
            self._consecutive = 0
            self._window.add(self._clock(), failed=False)

    async def record_ignored(self) -> None:
        """An allowed attempt ended telling nothing about the upstream (e.g. the
        client went away first): frees its probe slot, counts nothing."""
        await self._finish_probe()

    async def record_failure(self) -> None:
        """An attempt allowed by ``allow()`` failed with an upstream fault."""
        gen = await self._finish_probe()
        if gen is not None:
            await self._transition(self._reopened, gen)
        elif self._record.open_until is None:
            now = self._clock()
            self._consecutive += 1
            self._window.add(now, failed=True)
            if self._should_trip(now):
                await self._transition(self._tripped, None)
        self._observe()

    async def _finish_probe(self) -> int | None:
        """Free this instance's oldest probe slot, if it holds one.

        Returns the probe's generation when its outcome still matters: None when
        no probe was held, or the record moved on (another instance decided).
        """
        if not self._probes:
            return None
        gen, shared = self._probes.popleft()
        if shared and self._store_usable():
            try:
                await self._store.incr(f"{self._key}:probes:{gen}", -1, self.config.probe_timeout_s)
            except StateStoreUnavailable as exc:
                self._store_lost(exc)  # the slot's TTL frees it
        return gen if gen == self._record.gen else None

    def _should_trip(self, now: float) -> bool:
        cfg = self.config
        requests, failures = self._window.counts(now)
        return self._consecutive >= cfg.consecutive_failures or (
            requests >= cfg.min_requests and failures >= cfg.error_rate * requests
        )

    def _tripped(self, base: BreakerRecord) -> BreakerRecord:
        return BreakerRecord(self._wall() + self.config.open_for(0), 0, base.gen + 1)

    def _reopened(self, base: BreakerRecord) -> BreakerRecord:
        cfg = self.config
        level = base.level + 1 if cfg.open_for(base.level) < cfg.max_open_s else base.level
        return BreakerRecord(self._wall() + cfg.open_for(level), level, base.gen + 1)

    async def _transition(
        self, make: Callable[[BreakerRecord], BreakerRecord], gen: int | None
    ) -> None:
        """Move the shared record with ``make``, by compare-and-set.

        ``gen`` pins the generation the move is about (a probe's); None means
        "from closed" (a trip). If another instance moved the record first and
        the move no longer applies, adopt theirs instead.
        """
        base_raw, base = self._raw, self._record
        started = self._decisions
        for _ in range(3):
            if (base.gen != gen) if gen is not None else (base.open_until is not None):
                break
            new = make(base)
            if not self._store_usable():
                self._apply_locally(new)
                return
            try:
                if await self._store.compare_and_set(self._key, base_raw, new.dump()):
                    self._unsynced = False  # ours is now the shared record
                    self._decide(new)
                    return
                started = self._decisions
                base_raw = await self._store.get(self._key)
            except StateStoreUnavailable as exc:
                self._store_lost(exc)
                self._apply_locally(new)
                return
            base = BreakerRecord.load(base_raw)
        self._adopt(base_raw, started)

    async def _refresh(self) -> None:
        # Claim the refresh first: concurrent callers keep using the cached copy.
        self._fetched_at = self._clock()
        if not self._store_usable():
            return
        started = self._decisions
        try:
            if self._unsynced and self._raw is not None:
                # Offer the decision made while the store was away; if another
                # instance moved the record meanwhile, theirs wins (read below).
                await self._store.compare_and_set(self._key, self._sync_base, self._raw)
                self._unsynced = False
            raw = await self._store.get(self._key)
        except StateStoreUnavailable as exc:
            self._store_lost(exc)
            return
        self._store_back()
        self._adopt(raw, started)

    def _decide(self, record: BreakerRecord) -> None:
        """Take a record this instance just decided on (and stored, if it could)."""
        self._decisions += 1
        self._adopt(record.dump(), self._decisions)

    def _adopt(self, raw: bytes | None, read_at: int) -> None:
        """Take ``raw`` as the current record; a new generation restarts local counts.

        ``read_at`` is the decision count when the read began: a read that
        overlapped one of our own decisions may predate it, so it is dropped
        (the next refresh reads again).
        """
        if read_at != self._decisions:
            return
        self._fetched_at = self._clock()
        if raw == self._raw:
            return
        record = BreakerRecord.load(raw)
        if record.gen != self._record.gen:
            self._consecutive = 0
            self._window.clear()
        self._record, self._raw = record, raw

    def _apply_locally(self, new: BreakerRecord) -> None:
        if not self._unsynced:
            self._unsynced, self._sync_base = True, self._raw
        self._decide(new)

    async def _take_probe(self) -> bool:
        gen, limit = self._record.gen, self.config.half_open_probes
        if self._store_usable():
            key, ttl = f"{self._key}:probes:{gen}", self.config.probe_timeout_s
            try:
                if await self._store.incr(key, 1, ttl) <= limit:
                    self._probes.append((gen, True))
                    return True
                await self._store.incr(key, -1, ttl)
                return False
            except StateStoreUnavailable as exc:
                self._store_lost(exc)
        # Local only: bound this instance's probes, the most we can promise alone.
        if len(self._probes) >= limit:
            return False
        self._probes.append((gen, False))
        return True

    async def _count_probe_success(self, gen: int) -> int:
        """Consecutive probe successes in generation ``gen``, across instances."""
        if self._store_usable():
            ttl = self.config.probe_timeout_s * (self.config.close_after + 1)
            try:
                return await self._store.incr(f"{self._key}:successes:{gen}", 1, ttl)
            except StateStoreUnavailable as exc:
                self._store_lost(exc)
        seen_gen, count = self._local_successes
        self._local_successes = (gen, count + 1 if seen_gen == gen else 1)
        return self._local_successes[1]

    def _store_usable(self) -> bool:
        return self._clock() >= self._down_until

    def _store_lost(self, exc: StateStoreUnavailable) -> None:
        self._down_until = self._clock() + self.config.store_retry_s
        if not self._store_down:
            self._store_down = True
            msg = "breaker %s: state store unavailable, using local state: %s"
            log.warning(msg, self.deployment_id, exc)

    def _store_back(self) -> None:
        if self._store_down:
            self._store_down = False
            log.info("breaker %s: state store reachable again", self.deployment_id)

    def _observe(self, state: BreakerState | None = None) -> None:
        """Report a change of this instance's view to ``on_transition``."""
        state = state or self.state
        if state is not self._reported:
            previous, self._reported = self._reported, state
            if self._on_transition is not None:
                self._on_transition(self.deployment_id, previous, state)
