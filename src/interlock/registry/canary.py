"""The canary judge: is the canary worse than the live version?

Each gateway judges on its own traffic. Outcomes go into one-second buckets
per deployment; over the last ``window_s`` the canary is compared with the
live versions of its model, once each has ``min_requests``. A canary whose
error rate exceeds the live one's by more than ``error_margin``, or whose
mean latency exceeds it by more than ``latency_margin`` (and by at least
``latency_floor_ms``), is reported once through ``on_breach``; the registry
service rolls it back. A plain policy object: the clock is injected and no
I/O happens here.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from interlock.config import CanaryConfig

__all__ = ["Breach", "CanaryJudge", "Roles"]

Clock = Callable[[], float]
# Judging is a sum over the window's buckets: at most this often per model.
_JUDGE_EVERY_S = 0.5
# The live version failing this often too: an outage, not a bad canary.
_OUTAGE_ERROR_RATE = 0.5


@dataclass(frozen=True, slots=True)
class Roles:
    """Which deployments of one model are its canary and its live versions."""

    model: str
    canary: str  # deployment id
    canary_version: str
    live: frozenset[str]


@dataclass(frozen=True, slots=True)
class Breach:
    model: str
    version: str
    reason: str


@dataclass(slots=True)
class _Bucket:
    second: int
    requests: int = 0
    errors: int = 0
    latency_s: float = 0.0  # summed over successes


@dataclass(slots=True)
class _Totals:
    requests: int = 0
    errors: int = 0
    latency_s: float = 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def mean_latency_s(self) -> float | None:
        ok = self.requests - self.errors
        return self.latency_s / ok if ok else None


class CanaryJudge:
    def __init__(
        self,
        settings: CanaryConfig,
        on_breach: Callable[[Breach], None],
        *,
        clock: Clock = time.monotonic,
    ):
        self.settings = settings
        self._on_breach = on_breach
        self._clock = clock
        self._buckets: dict[str, deque[_Bucket]] = {}
        self._roles: dict[str, Roles] = {}  # by model
        self._model_of: dict[str, str] = {}  # deployment id -> model under watch
        self._judged_at: dict[str, float] = {}
        self._reported: set[tuple[str, str]] = set()

    def watch(self, roles: list[Roles]) -> None:
        """The canaries to judge now (after each registry reload). Outcomes
        of deployments no longer watched are dropped."""
        self._roles = {r.model: r for r in roles}
        self._model_of = {}
        for r in roles:
            for deployment in (r.canary, *r.live):
                self._model_of[deployment] = r.model
        for deployment in list(self._buckets):
            if deployment not in self._model_of:
                del self._buckets[deployment]
        watched = {(r.model, r.canary_version) for r in roles}
        self._reported &= watched

    def observe(self, deployment: str, ok: bool, latency_s: float) -> None:
        model = self._model_of.get(deployment)
        if model is None or not self.settings.auto_rollback:
            return
        now = self._clock()
        second = int(now)
        buckets = self._buckets.setdefault(deployment, deque())
        if not buckets or buckets[-1].second != second:
            buckets.append(_Bucket(second))
            horizon = second - self.settings.window_s
            while buckets and buckets[0].second <= horizon:
                buckets.popleft()
        bucket = buckets[-1]
        bucket.requests += 1
        if ok:
            bucket.latency_s += latency_s
        else:
            bucket.errors += 1
        if now - self._judged_at.get(model, float("-inf")) >= _JUDGE_EVERY_S:
            self._judged_at[model] = now
            self._judge(self._roles[model], now)

    def breaker_opened(self, deployment: str) -> None:
        """A breaker opened: if it is a watched canary's, roll it back (see
        ``CanaryConfig.rollback_on_open_breaker``)."""
        model = self._model_of.get(deployment)
        settings = self.settings
        if model is None or not (settings.auto_rollback and settings.rollback_on_open_breaker):
            return
        roles = self._roles[model]
        if deployment != roles.canary or (roles.model, roles.canary_version) in self._reported:
            return
        live = self._totals(roles.live, self._clock())
        if live.requests >= settings.min_requests and live.error_rate >= _OUTAGE_ERROR_RATE:
            return
        self._reported.add((roles.model, roles.canary_version))
        self._on_breach(Breach(roles.model, roles.canary_version, "its circuit breaker opened"))

    def verdict(self, roles: Roles, now: float | None = None) -> str | None:
        """Why the canary should be rolled back, or None while it holds up
        (or either side has too few requests to tell)."""
        now = self._clock() if now is None else now
        canary = self._totals([roles.canary], now)
        live = self._totals(roles.live, now)
        settings = self.settings
        if canary.requests < settings.min_requests or live.requests < settings.min_requests:
            return None
        if canary.error_rate > live.error_rate + settings.error_margin:
            return (
                f"error rate {canary.error_rate:.1%} against the live version's "
                f"{live.error_rate:.1%} over the last {settings.window_s:g} s"
            )
        canary_latency, live_latency = canary.mean_latency_s, live.mean_latency_s
        if canary_latency is not None and live_latency is not None:
            slower = canary_latency - live_latency
            if (
                canary_latency > live_latency * (1 + settings.latency_margin)
                and slower * 1000 >= settings.latency_floor_ms
            ):
                return (
                    f"mean latency {canary_latency * 1000:.0f} ms against the live "
                    f"version's {live_latency * 1000:.0f} ms over the last "
                    f"{settings.window_s:g} s"
                )
        return None

    def _judge(self, roles: Roles, now: float) -> None:
        key = (roles.model, roles.canary_version)
        if key in self._reported:
            return
        reason = self.verdict(roles, now)
        if reason is not None:
            self._reported.add(key)
            self._on_breach(Breach(roles.model, roles.canary_version, reason))

    def _totals(self, deployments: frozenset[str] | list[str], now: float) -> _Totals:
        horizon = int(now) - self.settings.window_s
        totals = _Totals()
        for deployment in deployments:
            for bucket in self._buckets.get(deployment, ()):
                if bucket.second > horizon:
                    totals.requests += bucket.requests
                    totals.errors += bucket.errors
                    totals.latency_s += bucket.latency_s
        return totals
