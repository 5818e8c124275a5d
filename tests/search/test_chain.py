"""The backend chain: fallback in order, retries, a breaker per backend.

The chain's boundary is the ``SearchBackend`` interface, so most tests give
it scripted backends; the last runs it over real adapters and fake services.
Nothing sleeps: the breakers' clocks are fakes, the backoff's sleep is recorded.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import TypeAlias

import pytest

from interlock.config import Secret
from interlock.config.search import (
    BackendSettings,
    BraveBackendConfig,
    SearchConfig,
    SearxngBackendConfig,
)
from interlock.search.backends.base import BackendError, SearchResult
from interlock.search.chain import BackendChain, CircuitOpen, NoBackendAnswered, build_backends
from interlock.state.memory import MemoryStateStore
from tests.search.fakes import BRAVE_PATH, Doc, FakeSearchService
from tests.state.harness import FakeClock
from tests.support.servers import FakeUpstream

Outcome: TypeAlias = list[SearchResult] | BackendError


def hit(source: str) -> list[SearchResult]:
    return [SearchResult("t", "https://example.org/", "s", source, 1)]


class ScriptedBackend:
    """A backend that answers from a script, one outcome per search, the last
    one repeated; counts its calls."""

    def __init__(self, name: str, *outcomes: Outcome):
        self.name = name
        self.outcomes = list(outcomes) or [hit(name)]
        self.calls = 0
        self.closed = False

    async def search(
        self, query: str, num_results: int, *, safe_search: bool
    ) -> list[SearchResult]:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if isinstance(outcome, BackendError):
            raise outcome
        return outcome

    async def close(self) -> None:
        self.closed = True


def down(name: str, *, retryable: bool = True) -> BackendError:
    return BackendError(name, "upstream failed (500)", retryable=retryable)


class World:
    """One fake clock for the breakers and a record of the backoff waits."""

    def __init__(self) -> None:
        self.clock = FakeClock(1_700_000_000.0)
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def chain(self, *members: tuple[ScriptedBackend, BackendSettings]) -> BackendChain:
        return BackendChain(
            members,
            store=MemoryStateStore(self.clock),
            clock=self.clock,
            wall=self.clock,
            sleep=self.sleep,
            rng=random.Random(7),
        )


def settings(retries: int = 0, threshold: int = 3, cooldown_s: float = 30.0) -> BackendSettings:
    return BackendSettings(retries=retries, failure_threshold=threshold, cooldown_s=cooldown_s)


@pytest.fixture
def world() -> World:
    return World()


async def test_the_first_backend_answers(world: World) -> None:
    a, b = ScriptedBackend("a"), ScriptedBackend("b")
    chain = world.chain((a, settings()), (b, settings()))

    answer = await chain.search("q", 5, safe_search=False)

    assert (answer.backend, answer.tried, answer.results) == ("a", [], hit("a"))
    assert b.calls == 0


async def test_falls_through_to_the_next_and_says_which_answered(world: World) -> None:
    refused = down("a", retryable=False)
    a, b = ScriptedBackend("a", refused), ScriptedBackend("b")
    chain = world.chain((a, settings(retries=2)), (b, settings()))

    answer = await chain.search("q", 5, safe_search=False)

    assert answer.backend == "b"
    assert answer.tried == [("a", refused)]
    assert a.calls == 1  # not retryable: not asked again


async def test_an_empty_list_is_an_answer(world: World) -> None:
    a, b = ScriptedBackend("a", []), ScriptedBackend("b")
    chain = world.chain((a, settings()), (b, settings()))

    answer = await chain.search("q", 5, safe_search=False)

    assert (answer.backend, answer.results) == ("a", [])
    assert b.calls == 0


async def test_retryable_errors_are_retried_with_jittered_backoff(world: World) -> None:
    a = ScriptedBackend("a", down("a"), down("a"), hit("a"))
    chain = world.chain((a, settings(retries=2)))

    answer = await chain.search("q", 5, safe_search=False)

    assert (answer.backend, a.calls) == ("a", 3)
    assert len(world.slept) == 2
    assert all(0 <= s <= 0.5 for s in world.slept)


async def test_retries_are_bounded_then_the_next_backend_answers(world: World) -> None:
    a, b = ScriptedBackend("a", down("a")), ScriptedBackend("b")
    chain = world.chain((a, settings(retries=2, threshold=10)), (b, settings()))

    answer = await chain.search("q", 5, safe_search=False)

    assert a.calls == 3
    assert answer.backend == "b"
    assert [name for name, _ in answer.tried] == ["a"]


async def test_the_breaker_opens_after_failure_threshold_and_skips(world: World) -> None:
    a, b = ScriptedBackend("a", down("a")), ScriptedBackend("b")
    chain = world.chain((a, settings(threshold=2)), (b, settings()))

    for _ in range(2):
        await chain.search("q", 5, safe_search=False)
    answer = await chain.search("q", 5, safe_search=False)

    assert a.calls == 2  # the third search skipped it
    assert answer.backend == "b"
    ((name, error),) = answer.tried
    assert name == "a" and isinstance(error, CircuitOpen)


async def test_the_breaker_half_opens_after_cooldown(world: World) -> None:
    a, b = ScriptedBackend("a", down("a"), down("a"), hit("a")), ScriptedBackend("b")
    chain = world.chain((a, settings(threshold=2, cooldown_s=30)), (b, settings()))
    for _ in range(2):
        await chain.search("q", 5, safe_search=False)

    world.clock.advance(29)
    assert (await chain.search("q", 5, safe_search=False)).backend == "b"
    world.clock.advance(2)
    probed = await chain.search("q", 5, safe_search=False)

    assert probed.backend == "a"  # one probe, and it succeeded: closed again
    assert a.calls == 3
    assert (await chain.search("q", 5, safe_search=False)).backend == "a"


async def test_a_failed_probe_opens_the_breaker_again(world: World) -> None:
    a, b = ScriptedBackend("a", down("a")), ScriptedBackend("b")
    chain = world.chain((a, settings(threshold=2, cooldown_s=30)), (b, settings()))
    for _ in range(2):
        await chain.search("q", 5, safe_search=False)

    world.clock.advance(31)
    await chain.search("q", 5, safe_search=False)  # the probe fails
    await chain.search("q", 5, safe_search=False)

    assert a.calls == 3


async def test_a_breaker_opening_mid_retries_stops_them(world: World) -> None:
    failure = down("a")
    a = ScriptedBackend("a", failure)
    chain = world.chain((a, settings(retries=5, threshold=2)))

    with pytest.raises(NoBackendAnswered) as caught:
        await chain.search("q", 5, safe_search=False)

    assert a.calls == 2
    assert caught.value.failures == [("a", failure)]  # the real reason, not "circuit open"


async def test_all_failing_raises_no_backend_answered_with_each_reason(world: World) -> None:
    a = ScriptedBackend("a", BackendError("a", "timed out after 5s"))
    b = ScriptedBackend("b", BackendError("b", "upstream rejected (401)", retryable=False))
    chain = world.chain((a, settings()), (b, settings()))

    with pytest.raises(NoBackendAnswered) as caught:
        await chain.search("q", 5, safe_search=False)

    assert isinstance(caught.value, BackendError)
    assert [name for name, _ in caught.value.failures] == ["a", "b"]
    assert "a: timed out after 5s" in str(caught.value)
    assert "b: upstream rejected (401)" in str(caught.value)


async def test_only_asks_just_the_named_backend(world: World) -> None:
    a, b = ScriptedBackend("a"), ScriptedBackend("b", down("b"))
    chain = world.chain((a, settings()), (b, settings()))

    with pytest.raises(NoBackendAnswered) as caught:
        await chain.search("q", 5, safe_search=False, only="b")

    assert a.calls == 0
    assert [name for name, _ in caught.value.failures] == ["b"]
    assert chain.names == ["a", "b"]
    with pytest.raises(ValueError, match="no search backend named 'c'"):
        await chain.search("q", 5, safe_search=False, only="c")


async def test_results_are_cut_to_num_results(world: World) -> None:
    many = [SearchResult("t", f"https://e/{i}", "s", "a", i) for i in range(1, 9)]
    chain = world.chain((ScriptedBackend("a", many), settings()))

    answer = await chain.search("q", 3, safe_search=False)

    assert [r.rank for r in answer.results] == [1, 2, 3]


async def test_close_closes_every_backend(world: World) -> None:
    a, b = ScriptedBackend("a"), ScriptedBackend("b")
    chain = world.chain((a, settings()), (b, settings()))

    await chain.close()

    assert a.closed and b.closed


@pytest.fixture
def serve(fake_upstream: Callable[..., FakeUpstream]) -> Iterator[Callable[..., str]]:
    started: list[FakeSearchService] = []

    def start(fake: FakeSearchService) -> str:
        started.append(fake)
        return str(fake_upstream(fake.app()).url)

    yield start
    for fake in started:
        fake.release()


async def test_over_real_adapters_a_failing_service_falls_through(
    world: World, serve: Callable[..., str]
) -> None:
    searxng = FakeSearchService(kind="searxng", mode="500")
    brave = FakeSearchService(kind="brave", docs=[Doc("Brave", "https://b.example/", "hi")])
    config = SearchConfig(
        backends=[
            SearxngBackendConfig(type="searxng", url=serve(searxng), retries=1),
            BraveBackendConfig(type="brave", url=serve(brave) + BRAVE_PATH, api_key=Secret("k1")),
        ]
    )
    backends = build_backends(config, environ={})
    chain = BackendChain(
        list(zip(backends, config.backends, strict=True)),
        store=MemoryStateStore(world.clock),
        clock=world.clock,
        wall=world.clock,
        sleep=world.sleep,
    )
    try:
        answer = await chain.search("q", 5, safe_search=True)
    finally:
        await chain.close()

    assert answer.backend == "brave"
    assert [r.url for r in answer.results] == ["https://b.example/"]
    ((name, error),) = answer.tried
    assert name == "searxng" and error.retryable and "500" in str(error)
    assert len(searxng.requests) == 2  # one retry
