"""Routing strategies, tested with plain data: fixed seeds, fake time, no I/O.

Traffic-split tests draw 10,000 decisions and compare shares with the
configuration; the tolerances are several standard deviations wide, so they
are deterministic under the fixed seeds yet fail if a split is wrong.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from interlock.routing.base import Candidate, DeploymentInfo, Outcome, RouteContext, Strategy
from interlock.routing.strategies import (
    STRATEGIES,
    ABTest,
    Bandit,
    Canary,
    CheapestHealthy,
    ConsistentHashPin,
    LeastBusy,
    LeastLatency,
    PriorityFailover,
    RoundRobin,
    WeightedRandom,
    build_strategy,
    stable_unit,
)

N = 10_000


def cand(id: str, *, in_flight: int = 0, latency: float | None = None, **info: Any) -> Candidate:
    return Candidate(DeploymentInfo(id, **info), in_flight=in_flight, latency_avg_s=latency)


def ids(order: Sequence[Candidate]) -> list[str]:
    return [c.id for c in order]


def first_shares(strategy: Strategy, candidates: Sequence[Candidate], n: int = N) -> Counter[str]:
    """How often each deployment comes first, over ``n`` callers c0..c{n-1}."""
    return Counter(
        strategy.choose(candidates, RouteContext(caller=f"c{i}")).order[0].id for i in range(n)
    )


# --- one suite for every strategy -------------------------------------------------

CONFIGS: dict[str, dict[str, Any]] = {
    "weighted": {},
    "priority": {},
    "round_robin": {},
    "least_busy": {},
    "least_latency": {},
    "cheapest": {},
    "pinned": {},
    "canary": {"percent": 50, "canary_version": "v2"},
    "ab": {"experiment": "exp", "arms": {"a": "d1", "b": "fast"}},
    "bandit": {},
}

MIXED = [
    cand("d1", weight=2, priority=1, input_price=3, version="v2", latency=0.5),
    cand("d2", in_flight=4, output_price=1, tags=frozenset({"fast"})),
    cand("d3", weight=0.5, priority=0, in_flight=1, latency=0.2),
    cand("d4", weight=0),
]


def test_every_config_name_is_covered() -> None:
    assert set(CONFIGS) == set(STRATEGIES)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_strategy_returns_each_candidate_exactly_once(name: str) -> None:
    strategy = build_strategy(name, CONFIGS[name], random.Random(1))
    for i in range(200):
        ctx = RouteContext(caller=f"caller-{i % 7}", pin="p" if i % 3 == 0 else None, now=i)
        decision = strategy.choose(MIXED, ctx)
        assert sorted(ids(decision.order)) == ["d1", "d2", "d3", "d4"]
        assert decision.reason
        strategy.observe(decision.order[0].id, Outcome(i % 4 != 0, 0.1 * (i % 5)))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_strategy_handles_empty_and_single_candidate_lists(name: str) -> None:
    strategy = build_strategy(name, CONFIGS[name], random.Random(1))
    assert strategy.choose([], RouteContext(caller="x")).order == []
    only = [cand("solo", version="v2")]
    assert ids(strategy.choose(only, RouteContext(caller="x")).order) == ["solo"]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_build_strategy_names_match_the_instances(name: str) -> None:
    assert build_strategy(name, CONFIGS[name], random.Random(0)).name == name


# --- weighted, priority, round robin, least busy, cheapest -------------------------


def test_weighted_splits_three_to_one() -> None:
    shares = first_shares(WeightedRandom(rng=random.Random(7)), [cand("a", weight=3), cand("b")])
    assert abs(shares["a"] / N - 0.75) < 0.02


def test_weighted_failover_order_is_sampling_without_replacement() -> None:
    # Weights 2:1:1 → each deployment is second with probability exactly 1/3.
    strategy = WeightedRandom(rng=random.Random(8))
    candidates = [cand("a", weight=2), cand("b"), cand("c")]
    seconds = Counter(strategy.choose(candidates, RouteContext()).order[1].id for _ in range(N))
    for name in "abc":
        assert abs(seconds[name] / N - 1 / 3) < 0.02


def test_zero_weight_deployment_is_only_a_last_resort() -> None:
    strategy = WeightedRandom(rng=random.Random(9))
    for _ in range(1000):
        order = strategy.choose([cand("idle", weight=0), cand("a"), cand("b")], RouteContext())
        assert order.order[-1].id == "idle"


def test_priority_orders_tiers_and_splits_a_tier_by_weight() -> None:
    strategy = PriorityFailover(rng=random.Random(10))
    candidates = [cand("backup", priority=1), cand("p1", weight=3), cand("p2")]
    firsts: Counter[str] = Counter()
    for _ in range(N):
        order = ids(strategy.choose(candidates, RouteContext()).order)
        assert order[-1] == "backup"
        firsts[order[0]] += 1
    assert abs(firsts["p1"] / N - 0.75) < 0.02


def test_priority_with_stable_ties_keeps_config_order() -> None:
    strategy = PriorityFailover(rng=random.Random(11), ties="stable")
    candidates = [cand("b2", priority=2), cand("a1", priority=1), cand("c1", priority=1)]
    for _ in range(20):
        assert ids(strategy.choose(candidates, RouteContext()).order) == ["a1", "c1", "b2"]


def test_priority_fails_over_to_the_next_tier_when_a_tier_is_gone() -> None:
    strategy = PriorityFailover(rng=random.Random(12))
    order = strategy.choose([cand("c", priority=3), cand("b", priority=2)], RouteContext())
    assert ids(order.order) == ["b", "c"]


def test_round_robin_rotates_evenly() -> None:
    strategy = RoundRobin()
    candidates = [cand("a"), cand("b"), cand("c")]
    orders = [ids(strategy.choose(candidates, RouteContext()).order) for _ in range(4)]
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]


def test_least_busy_always_picks_the_minimum() -> None:
    rng, strategy = random.Random(13), LeastBusy(rng=random.Random(14))
    for _ in range(2000):
        candidates = [cand(f"d{i}", in_flight=rng.randrange(10)) for i in range(5)]
        order = strategy.choose(candidates, RouteContext()).order
        loads = [c.in_flight for c in order]
        assert loads == sorted(loads)


def test_least_busy_breaks_ties_at_random() -> None:
    strategy = LeastBusy(rng=random.Random(15))
    shares = first_shares(
        strategy, [cand("a", in_flight=1), cand("b", in_flight=1), cand("c", in_flight=2)]
    )
    assert abs(shares["a"] / N - 0.5) < 0.02 and shares["c"] == 0


def test_cheapest_prefers_the_lowest_total_price_and_splits_ties_by_weight() -> None:
    strategy = CheapestHealthy(rng=random.Random(16))
    candidates = [
        cand("pricey", input_price=5, output_price=15),
        cand("cheap1", input_price=1, output_price=2, weight=3),
        cand("cheap2", input_price=2, output_price=1),
        cand("mid", input_price=0.5, output_price=10),
    ]
    firsts: Counter[str] = Counter()
    for _ in range(N):
        order = ids(strategy.choose(candidates, RouteContext()).order)
        assert order[2:] == ["mid", "pricey"]
        firsts[order[0]] += 1
    assert abs(firsts["cheap1"] / N - 0.75) < 0.02


# --- least latency ----------------------------------------------------------------


def test_least_latency_prefers_the_fastest_after_probing_each_once() -> None:
    strategy = LeastLatency(rng=random.Random(17), epsilon=0.0, explore_after_s=30)
    candidates = [cand("slow", latency=2.0), cand("fast", latency=0.1), cand("mid", latency=0.5)]
    probes = [strategy.choose(candidates, RouteContext(now=0)) for _ in range(2)]
    assert {d.order[0].id for d in probes} == {"slow", "mid"}
    assert all(d.reason == "explore_stale" for d in probes)
    for t in range(1, 29):
        assert ids(strategy.choose(candidates, RouteContext(now=t)).order) == [
            "fast",
            "mid",
            "slow",
        ]


def test_least_latency_explores_about_epsilon() -> None:
    strategy = LeastLatency(rng=random.Random(18), epsilon=0.05, explore_after_s=1e9)
    candidates = [cand("a", latency=1.0), cand("b", latency=0.1), cand("c", latency=0.5)]
    strategy.choose(candidates, RouteContext())  # the cold-start probes
    strategy.choose(candidates, RouteContext())
    shares = first_shares(strategy, candidates)
    assert abs(1 - shares["b"] / N - 0.05) < 0.01
    assert shares["a"] > 0 and shares["c"] > 0


def test_least_latency_learns_from_its_own_observations() -> None:
    strategy = LeastLatency(rng=random.Random(19), epsilon=0.0, explore_after_s=1e9)
    candidates = [cand("a", latency=0.1), cand("b", latency=0.5)]
    strategy.choose(candidates, RouteContext())
    for _ in range(10):
        strategy.observe("a", Outcome(True, 1.0))
        strategy.observe("b", Outcome(True, 0.2))
    assert strategy.choose(candidates, RouteContext()).order[0].id == "b"


def test_least_latency_does_not_mistake_fast_failures_for_speed() -> None:
    strategy = LeastLatency(rng=random.Random(20), epsilon=0.0, explore_after_s=1e9)
    candidates = [cand("broken"), cand("ok")]
    strategy.choose(candidates, RouteContext())
    strategy.observe("broken", Outcome(False, 0.001))
    strategy.observe("ok", Outcome(True, 1.5))
    assert strategy.choose(candidates, RouteContext()).order[0].id == "ok"


def test_least_latency_rediscovers_a_recovered_deployment() -> None:
    strategy = LeastLatency(rng=random.Random(21), epsilon=0.0, explore_after_s=30)
    candidates = [cand("a"), cand("b")]
    world = {"a": 3.0, "b": 0.5}  # a is slow until it recovers at t=100
    firsts: list[tuple[float, str]] = []
    for step in range(2000):  # 200 s, a request every 0.1 s
        now = step / 10
        if now == 100:
            world["a"] = 0.05
        pick = strategy.choose(candidates, RouteContext(now=now)).order[0].id
        strategy.observe(pick, Outcome(True, world[pick]))
        firsts.append((now, pick))
    before = [p for t, p in firsts if 10 <= t < 100]
    after = [p for t, p in firsts if t >= 131]
    assert before.count("b") / len(before) > 0.98
    assert after.count("a") / len(after) > 0.98


def test_least_latency_probes_a_stale_deployment_once_per_interval() -> None:
    strategy = LeastLatency(rng=random.Random(22), epsilon=0.0, explore_after_s=10)
    candidates = [cand("slow", latency=5.0), cand("fast", latency=0.1)]
    picks = [strategy.choose(candidates, RouteContext(now=t / 10)).order[0].id for t in range(1000)]
    # 100 s of traffic, no outcomes reported for "slow": one probe every 10 s.
    assert 9 <= picks.count("slow") <= 11


# --- consistent hashing -----------------------------------------------------------


def test_stable_unit_is_a_fixed_function_of_its_input() -> None:
    # A salted hash() would change this between processes and releases.
    assert stable_unit("pin", "alice", "d1") == pytest.approx(0.08381111231190239)
    assert stable_unit("a", "b") != stable_unit("ab")


def pins(strategy: ConsistentHashPin, candidates: Sequence[Candidate], n: int = N) -> list[str]:
    return [strategy.choose(candidates, RouteContext(pin=f"k{i}")).order[0].id for i in range(n)]


FOUR = [cand(f"d{i}") for i in range(4)]


def test_pinning_is_stable_and_even() -> None:
    first = pins(ConsistentHashPin(rng=random.Random(23)), FOUR)
    again = pins(ConsistentHashPin(rng=random.Random(99)), list(reversed(FOUR)))
    assert first == again
    for share in Counter(first).values():
        assert abs(share / N - 0.25) < 0.03


def test_adding_a_fifth_deployment_moves_about_a_fifth_of_keys_and_only_to_it() -> None:
    strategy = ConsistentHashPin(rng=random.Random(24))
    before = pins(strategy, FOUR)
    after = pins(strategy, [*FOUR, cand("d4")])
    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert 0.10 < len(moved) / N < 0.30
    assert {a for _, a in moved} == {"d4"}


def test_removing_a_deployment_moves_only_its_keys_to_their_second_choice() -> None:
    strategy = ConsistentHashPin(rng=random.Random(25))
    full = [ids(strategy.choose(FOUR, RouteContext(pin=f"k{i}")).order) for i in range(N)]
    after = pins(strategy, [c for c in FOUR if c.id != "d2"])
    for order, now in zip(full, after, strict=True):
        assert now == (order[1] if order[0] == "d2" else order[0])


def test_pinning_respects_weights() -> None:
    shares = Counter(
        pins(ConsistentHashPin(rng=random.Random(26)), [cand("a", weight=3), cand("b")])
    )
    assert abs(shares["a"] / N - 0.75) < 0.02


def test_pin_wins_over_caller_and_caller_is_the_fallback_key() -> None:
    strategy = ConsistentHashPin(rng=random.Random(27))
    by_caller = [
        strategy.choose(FOUR, RouteContext(caller=f"k{i}")).order[0].id for i in range(200)
    ]
    assert by_caller == pins(strategy, FOUR, 200)
    mixed = [
        strategy.choose(FOUR, RouteContext(caller="someone", pin=f"k{i}")).order[0].id
        for i in range(200)
    ]
    assert mixed == by_caller


def test_pinning_without_a_key_spreads_by_weight() -> None:
    strategy = ConsistentHashPin(rng=random.Random(28))
    shares = Counter(strategy.choose(FOUR, RouteContext()).order[0].id for _ in range(N))
    assert len(shares) == 4 and all(abs(s / N - 0.25) < 0.02 for s in shares.values())


# --- canary -----------------------------------------------------------------------

FLEET = [cand("old1", version="v1"), cand("old2", version="v1"), cand("new", version="v2")]


def test_canary_sends_the_configured_share_of_distinct_callers() -> None:
    strategy = Canary(10, "v2", rng=random.Random(29))
    decisions = [strategy.choose(FLEET, RouteContext(caller=f"user-{i}")) for i in range(N)]
    yes = [d for d in decisions if d.labels == {"canary": "yes"}]
    no = [d for d in decisions if d.labels == {"canary": "no"}]
    assert abs(len(yes) / N - 0.10) < 0.015 and len(yes) + len(no) == N
    assert all(d.order[0].id == "new" for d in yes)
    assert all(d.order[0].id != "new" and d.order[-1].id == "new" for d in no)


def test_canary_membership_is_sticky_and_grows_monotonically() -> None:
    ten, twenty = Canary(10, "v2", rng=random.Random(30)), Canary(20, "v2", rng=random.Random(31))
    callers = [f"user-{i}" for i in range(2000)]
    in_ten = {
        c for c in callers if ten.choose(FLEET, RouteContext(caller=c)).labels["canary"] == "yes"
    }
    for c in callers:  # asked again: the same answer
        assert (ten.choose(FLEET, RouteContext(caller=c)).labels["canary"] == "yes") == (
            c in in_ten
        )
    assert in_ten <= {c for c in callers if twenty.in_canary(c)}


def test_canary_callers_fall_back_to_stable_when_the_canary_is_down() -> None:
    strategy = Canary(100, "v2", rng=random.Random(32))
    decision = strategy.choose(FLEET[:2], RouteContext(caller="user-1"))
    assert decision.labels == {"canary": "no"} and len(decision.order) == 2
    assert decision.reason == "canary_unavailable"


def test_stable_callers_use_the_canary_only_as_a_last_resort() -> None:
    strategy = Canary(0, "v2", rng=random.Random(33))
    decision = strategy.choose(FLEET[2:], RouteContext(caller="user-1"))
    assert ids(decision.order) == ["new"] and decision.labels == {"canary": "yes"}
    assert decision.reason == "stable_unavailable"


def test_anonymous_callers_stay_on_the_stable_version() -> None:
    strategy = Canary(99, "v2", rng=random.Random(34))
    assert all(strategy.choose(FLEET, RouteContext()).labels["canary"] == "no" for _ in range(100))


# --- A/B --------------------------------------------------------------------------

AB_FLEET = [
    cand("gpt-a"),
    cand("gpt-b1", tags=frozenset({"candidate"})),
    cand("gpt-b2", tags=frozenset({"candidate"})),
]


def test_ab_split_and_labels() -> None:
    strategy = ABTest(
        "prompt-v2",
        {"control": "gpt-a", "treatment": "candidate"},
        {"control": 70, "treatment": 30},
        rng=random.Random(35),
    )
    decisions = [strategy.choose(AB_FLEET, RouteContext(caller=f"u{i}")) for i in range(N)]
    arms = Counter(d.labels["arm"] for d in decisions)
    assert abs(arms["control"] / N - 0.70) < 0.02 and arms["control"] + arms["treatment"] == N
    for d in decisions:
        assert d.labels["experiment"] == "prompt-v2"
        assert (d.order[0].id == "gpt-a") == (d.labels["arm"] == "control")


def test_ab_assignment_is_sticky_and_independent_across_experiments() -> None:
    one = ABTest("one", {"a": "gpt-a", "b": "candidate"}, rng=random.Random(36))
    two = ABTest("two", {"a": "gpt-a", "b": "candidate"}, rng=random.Random(37))
    callers = [f"u{i}" for i in range(N)]
    assert [one.assign(c) for c in callers] == [one.assign(c) for c in callers]
    both_a = sum(one.assign(c) == "a" and two.assign(c) == "a" for c in callers)
    assert abs(both_a / N - 0.25) < 0.02


def test_ab_arm_unavailable_falls_back_and_is_labelled_none() -> None:
    strategy = ABTest(
        "exp",
        {"control": "gpt-a", "treatment": "candidate"},
        {"control": 1, "treatment": 0},
        rng=random.Random(38),
    )
    decision = strategy.choose(AB_FLEET[1:], RouteContext(caller="u1"))
    assert decision.labels == {"experiment": "exp", "arm": "none"}
    assert sorted(ids(decision.order)) == ["gpt-b1", "gpt-b2"]


@pytest.mark.parametrize(
    ("arms", "split", "message"),
    [
        ({}, None, "arms"),
        ({"a": "x"}, {"b": 1}, "split names"),
        ({"a": "x", "b": "y"}, {"a": 0, "b": 0}, "positive share"),
        ({"a": "x"}, {"a": -1}, "split"),
    ],
)
def test_ab_rejects_bad_configuration(arms: Any, split: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ABTest("exp", arms, split, rng=random.Random(0))


# --- bandit -----------------------------------------------------------------------

# True behaviour: success rate and latency. "good" is best; "flaky" fails
# often; "slow" succeeds but takes long, which the reward penalises.
WORLD = {"good": (0.97, 0.4), "flaky": (0.6, 0.4), "slow": (0.97, 4.0)}


def run_bandit(
    strategy: Bandit, world: dict[str, tuple[float, float]], rounds: int, seed: int
) -> list[str]:
    rng, candidates, picks = random.Random(seed), [cand(d) for d in world], []
    for _ in range(rounds):
        pick = strategy.choose(candidates, RouteContext()).order[0].id
        success_rate, latency = world[pick]
        strategy.observe(pick, Outcome(rng.random() < success_rate, latency))
        picks.append(pick)
    return picks


def test_bandit_converges_to_the_best_deployment_but_keeps_the_floor() -> None:
    picks = run_bandit(Bandit(rng=random.Random(39), floor=0.05), WORLD, N, seed=40)
    late = Counter(picks[N // 2 :])
    assert late["good"] / (N // 2) > 0.80
    assert min(late["flaky"], late["slow"]) / (N // 2) >= 0.04


def test_bandit_moves_away_when_the_best_deployment_degrades() -> None:
    strategy = Bandit(rng=random.Random(41), memory=200)
    run_bandit(strategy, WORLD, 3000, seed=42)
    degraded = {**WORLD, "good": (0.1, 0.4)}
    late = Counter(run_bandit(strategy, degraded, 3000, seed=43)[1500:])
    assert late["good"] / 1500 < 0.15


def test_bandit_reward_formula() -> None:
    strategy = Bandit(rng=random.Random(0), latency_ref_s=2.0, cost_ref_usd=0.01)
    assert strategy.reward(Outcome(False, 0.1)) == 0.0
    assert strategy.reward(Outcome(True, 0.0)) == 1.0
    assert strategy.reward(Outcome(True, 2.0)) == pytest.approx(0.5)
    assert strategy.reward(Outcome(True, 2.0, cost_usd=0.01)) == pytest.approx(1 / 3)


# --- build_strategy ---------------------------------------------------------------


def test_build_strategy_passes_params_and_rng() -> None:
    strategy = build_strategy("canary", {"percent": 100, "canary_version": "v2"}, random.Random(0))
    assert isinstance(strategy, Canary)
    assert strategy.choose(FLEET, RouteContext(caller="u")).labels == {"canary": "yes"}


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("fastest", {}, "unknown routing strategy 'fastest'; known: ab, bandit"),
        ("weighted", {"weights": [1]}, "'weighted' does not take weights"),
        ("round_robin", {"x": 1}, "it takes: no parameters"),
        ("canary", {"percent": 5}, "'canary' needs canary_version"),
        ("canary", {"percent": "5", "canary_version": "v2"}, "percent must be a number"),
        ("canary", {"percent": 150, "canary_version": "v2"}, "between 0.0 and 100.0"),
        ("least_latency", {"epsilon": 2}, "strategy 'least_latency': epsilon"),
        ("least_latency", {"explore_after_s": 0}, "greater than 0"),
        ("priority", {"ties": "random"}, "ties must be"),
        ("bandit", {"floor": True}, "floor must be a number"),
        ("ab", {"experiment": "e", "arms": ["a"]}, "arms must be"),
    ],
)
def test_build_strategy_rejects_bad_config_with_a_clear_message(
    name: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        build_strategy(name, params, random.Random(0))
