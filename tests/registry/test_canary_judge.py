"""The canary judge on an injected clock: when a canary is worse than the
live version by the configured margins over the window, it is reported once;
too little evidence, or a canary as good as live, is never reported."""

from __future__ import annotations

from interlock.config import CanaryConfig
from interlock.registry.canary import Breach, CanaryJudge, Roles
from tests.support.clock import FakeClock

ROLES = Roles("clf", "clf@2", "2", frozenset({"clf@1"}))


def _judge(**settings: object) -> tuple[CanaryJudge, FakeClock, list[Breach]]:
    clock, breaches = FakeClock(), []
    config = CanaryConfig.model_validate({"min_requests": 10, **settings})
    judge = CanaryJudge(config, breaches.append, clock=clock)
    judge.watch([ROLES])
    return judge, clock, breaches


def _feed(
    judge: CanaryJudge,
    clock: FakeClock,
    deployment: str,
    n: int,
    *,
    errors: int = 0,
    latency_s: float = 0.01,
) -> None:
    """``n`` outcomes, the ``errors`` among them spread evenly (as a steady
    error rate looks), 50 ms apart."""
    for i in range(n):
        failed = errors and (i * errors) // n != ((i + 1) * errors) // n
        judge.observe(deployment, ok=not failed, latency_s=latency_s)
        clock.now += 0.05


def test_a_canary_failing_more_than_the_margin_is_reported_once() -> None:
    judge, clock, breaches = _judge(error_margin=0.05)
    _feed(judge, clock, "clf@1", 40, errors=1)  # live: 2.5 %
    _feed(judge, clock, "clf@2", 20, errors=4)  # canary: 20 %
    assert [(b.model, b.version) for b in breaches] == [("clf", "2")]
    assert "error rate" in breaches[0].reason and "live version's 2.5%" in breaches[0].reason
    _feed(judge, clock, "clf@2", 20, errors=20)
    assert len(breaches) == 1


def test_a_canary_within_the_margin_holds() -> None:
    judge, clock, breaches = _judge(error_margin=0.05)
    _feed(judge, clock, "clf@1", 40, errors=2)  # 5 %
    _feed(judge, clock, "clf@2", 40, errors=3)  # 7.5 %: within 5 points
    assert breaches == []
    assert judge.verdict(ROLES) is None


def test_nothing_is_judged_on_fewer_than_min_requests() -> None:
    judge, clock, breaches = _judge(min_requests=10)
    _feed(judge, clock, "clf@1", 40)
    _feed(judge, clock, "clf@2", 9, errors=9)
    assert breaches == []
    _feed(judge, clock, "clf@2", 1, errors=1)
    judge.observe("clf@2", ok=False, latency_s=0.0)  # judged at most twice a second
    clock.now += 1
    judge.observe("clf@2", ok=False, latency_s=0.0)
    assert len(breaches) == 1


def test_a_slower_canary_is_reported_past_the_margin_and_the_floor() -> None:
    judge, clock, breaches = _judge(latency_margin=0.5, latency_floor_ms=20)
    _feed(judge, clock, "clf@1", 20, latency_s=0.050)
    _feed(judge, clock, "clf@2", 20, latency_s=0.070)  # +40 %: within the margin
    assert breaches == []
    judge2, clock2, breaches2 = _judge(latency_margin=0.5, latency_floor_ms=20)
    _feed(judge2, clock2, "clf@1", 20, latency_s=0.050)
    _feed(judge2, clock2, "clf@2", 20, latency_s=0.100)
    assert len(breaches2) == 1 and "mean latency 100 ms" in breaches2[0].reason


def test_a_fast_model_twice_as_slow_stays_under_the_floor() -> None:
    judge, clock, breaches = _judge(latency_margin=0.5, latency_floor_ms=20)
    _feed(judge, clock, "clf@1", 20, latency_s=0.002)
    _feed(judge, clock, "clf@2", 20, latency_s=0.004)
    assert breaches == []


def test_old_outcomes_leave_the_window() -> None:
    judge, clock, breaches = _judge(window_s=10, error_margin=0.05)
    _feed(judge, clock, "clf@2", 10, errors=10)
    clock.now += 60  # those failures are older than the window now
    _feed(judge, clock, "clf@1", 20)
    _feed(judge, clock, "clf@2", 20)
    assert breaches == []


def test_auto_rollback_off_reports_nothing() -> None:
    judge, clock, breaches = _judge(auto_rollback=False)
    _feed(judge, clock, "clf@1", 20)
    _feed(judge, clock, "clf@2", 20, errors=20)
    judge.breaker_opened("clf@2")
    assert breaches == []


def test_an_open_canary_breaker_is_a_breach_unless_live_fails_as_badly() -> None:
    judge, clock, breaches = _judge()
    judge.breaker_opened("clf@1")  # live's breaker: not the canary's problem
    assert breaches == []
    judge.breaker_opened("clf@2")
    assert [b.reason for b in breaches] == ["its circuit breaker opened"]

    judge, clock, breaches = _judge()
    _feed(judge, clock, "clf@1", 20, errors=15)  # live is failing too: an outage
    judge.breaker_opened("clf@2")
    assert breaches == []

    judge, clock, breaches = _judge(rollback_on_open_breaker=False)
    judge.breaker_opened("clf@2")
    assert breaches == []


def test_deployments_no_longer_watched_are_forgotten() -> None:
    judge, clock, breaches = _judge()
    _feed(judge, clock, "clf@2", 20, errors=20)
    judge.watch([])
    judge.watch([ROLES])  # the same canary set again starts from nothing
    _feed(judge, clock, "clf@1", 20)
    assert breaches == [] and judge.verdict(ROLES) is None
