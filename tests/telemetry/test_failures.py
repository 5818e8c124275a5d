"""The recent failed requests: bounded, forgotten after the window, newest
first, and found by id together with the slow ones. Fake clocks; no sleeps."""

from __future__ import annotations

from interlock.config import TelemetryConfig
from interlock.telemetry.failures import RecentFailures
from interlock.telemetry.health import HealthBoard
from interlock.telemetry.hub import Telemetry
from interlock.telemetry.metrics import Metrics
from interlock.telemetry.record import RequestRecord
from tests.state.harness import FakeClock


def record(request_id: str, status: int, duration_s: float = 0.01) -> RequestRecord:
    done = RequestRecord(request_id, "POST", "/v1/chat/completions", status=status)
    done.duration_s = duration_s
    done.stages["upstream"] = duration_s / 2
    return done


def ids(entries: list[dict[str, object]]) -> list[object]:
    return [entry["request_id"] for entry in entries]


def test_only_failures_are_kept_as_access_log_lines_with_stages() -> None:
    failures = RecentFailures()
    for request_id, status in (("a", 200), ("b", 302), ("c", 400), ("d", 401), ("e", 503)):
        failures.offer(record(request_id, status))
    assert ids(failures.recent()) == ["e", "d", "c"]
    newest = failures.recent()[0]
    assert newest["status"] == 503 and newest["stages_ms"] == {"upstream": 5.0}


def test_newest_first_and_bounded_by_capacity_and_limit() -> None:
    failures = RecentFailures(capacity=3)
    for i in range(5):
        failures.offer(record(f"r{i}", 500))
    assert ids(failures.recent()) == ["r4", "r3", "r2"]
    assert ids(failures.recent(limit=2)) == ["r4", "r3"]
    assert failures.find("r1") is None  # pushed out


def test_failures_are_forgotten_after_the_window() -> None:
    clock = FakeClock()
    failures = RecentFailures(window_s=60, clock=clock)
    failures.offer(record("old", 500))
    clock.advance(30)
    failures.offer(record("new", 502))
    clock.advance(30.5)
    assert ids(failures.recent()) == ["new"]
    assert failures.find("old") is None
    assert failures.find("new") is not None
    clock.advance(30)
    assert failures.recent() == [] and failures.find("new") is None


def test_find_answers_the_newest_entry_for_a_repeated_id() -> None:
    failures = RecentFailures()
    failures.offer(record("same", 500))
    failures.offer(record("same", 429))
    found = failures.find("same")
    assert found is not None and found["status"] == 429


def test_the_hub_keeps_failures_and_finds_failed_and_slow_requests() -> None:
    config = TelemetryConfig(slow_requests_kept=1)
    telemetry = Telemetry(config, Metrics(), HealthBoard({}))
    slow = RequestRecord("slow-ok", "GET", "/v1/models", status=200)
    slow.started -= 5  # began five seconds ago: the slowest by far
    for done in (
        RequestRecord("ok", "GET", "/v1/models", status=200),
        RequestRecord("bad", "GET", "/v1/models", status=500),
        slow,
    ):
        telemetry.finish(done)
    assert ids(telemetry.failures.recent()) == ["bad"]
    assert ids(telemetry.slow.slowest()) == ["slow-ok"]
    failed = telemetry.find_request("bad")
    assert failed is not None and failed["status"] == 500 and "stages_ms" in failed
    found_slow = telemetry.find_request("slow-ok")
    assert found_slow is not None and found_slow["duration_ms"] >= 5000
    assert telemetry.find_request("ok") is None  # neither failed nor among the slowest
