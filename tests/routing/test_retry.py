"""Retry policy and retry budget: fixed seeds, a fake clock."""

from __future__ import annotations

import random

import pytest

from interlock.routing.retry import RETRYABLE_KINDS, RetryBudget, RetryPolicy
from tests.support.clock import FakeClock


def policy(**kwargs: float) -> RetryPolicy:
    return RetryPolicy(**kwargs, rng=random.Random(1))  # type: ignore[arg-type]


# --- RetryPolicy ------------------------------------------------------------------


@pytest.mark.parametrize("attempt", range(1, 9))
def test_backoff_is_full_jitter_under_the_exponential_cap(attempt: int) -> None:
    p = policy(base_s=0.1, max_backoff_s=2.0)
    cap = min(2.0, 0.1 * 2 ** (attempt - 1))
    delays = [p.backoff(attempt) for _ in range(2000)]
    assert all(0.0 <= d <= cap for d in delays)
    # Full jitter: the whole [0, cap] range is used, centred on cap / 2.
    assert min(delays) < 0.05 * cap and max(delays) > 0.95 * cap
    assert sum(delays) / len(delays) == pytest.approx(cap / 2, rel=0.05)


def test_backoff_survives_absurd_attempt_numbers() -> None:
    p = policy(base_s=0.1, max_backoff_s=2.0)
    assert 0.0 <= p.backoff(10_000) <= 2.0
    assert 0.0 <= p.backoff(0) <= 0.1


@pytest.mark.parametrize("kind", ["client_error", "something_new", ""])
def test_client_errors_and_unknown_kinds_are_never_retried(kind: str) -> None:
    assert kind not in RETRYABLE_KINDS


def test_upstream_auth_is_retried_as_a_deployment_fault() -> None:
    assert "upstream_auth" in RETRYABLE_KINDS


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"base_s": -1}, {"max_backoff_s": -1}])
def test_policy_rejects_bad_limits(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        policy(**kwargs)


# --- RetryBudget ------------------------------------------------------------------


def storm(budget: RetryBudget, clock: FakeClock, seconds: float, rps: int) -> tuple[int, int]:
    """Every request fails and asks for a retry; return (requests, retries granted)."""
    requests = granted = 0
    for _ in range(int(seconds * rps)):
        clock.now += 1 / rps
        budget.record_request()
        requests += 1
        granted += budget.try_spend()
    return requests, granted


def test_budget_admits_about_ratio_times_requests_under_a_storm() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, min_per_s=1.0, window_s=10, clock=clock)
    _, granted = storm(budget, clock, seconds=10, rps=100)
    # 20 % of 1000 requests plus the floor of 10 retries per window.
    assert 190 <= granted <= 215


def test_budget_holds_the_ratio_over_a_long_storm() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, min_per_s=1.0, window_s=10, clock=clock)
    storm(budget, clock, seconds=10, rps=100)  # reach the steady state
    requests, granted = storm(budget, clock, seconds=60, rps=100)
    assert granted / requests == pytest.approx(0.21, abs=0.02)


def test_budget_floor_lets_quiet_traffic_retry() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, min_per_s=0.5, window_s=10, clock=clock)
    assert [budget.try_spend() for _ in range(6)] == [True] * 5 + [False]


def test_budget_recovers_after_the_window() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, min_per_s=0.3, window_s=10, clock=clock)
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]
    clock.now += 5
    assert not budget.try_spend()
    clock.now += 5.5
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]


def test_budget_forgets_old_counts_slot_by_slot() -> None:
    clock = FakeClock()  # starts at t=1000; ten one-second slots
    budget = RetryBudget(ratio=0.5, min_per_s=0.0, window_s=10, clock=clock)
    for _ in range(10):
        budget.record_request()
    clock.now = 1009.5
    assert sum(budget.try_spend() for _ in range(3)) == 3
    clock.now = 1010.5  # the ten requests have left the window; the three retries have not
    assert not budget.try_spend()
    for _ in range(10):
        budget.record_request()
    assert sum(budget.try_spend() for _ in range(5)) == 2
    clock.now = 1019.6  # now the three retries from t=1009.5 have left too
    assert sum(budget.try_spend() for _ in range(5)) == 3


def test_budget_tolerates_a_clock_that_steps_back() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, min_per_s=0.1, window_s=10, clock=clock)
    assert budget.try_spend()
    clock.now -= 100
    assert not budget.try_spend()


@pytest.mark.parametrize(
    "kwargs", [{"ratio": -0.1}, {"min_per_s": -1}, {"window_s": 0}, {"slots": 0}]
)
def test_budget_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryBudget(**kwargs, clock=FakeClock())  # type: ignore[arg-type]
