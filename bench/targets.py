"""The issue's benchmark targets, judged from the suite's figures (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from suite_report import Figures, Verdict

__all__ = ["HoldGoal", "verdicts"]

HOLD_TARGET = 10_000
RSS_LIMIT_MIB = 1024.0


def _median(figures: Figures, key: str, side: str = "interlock") -> float:
    return figures[key].median(side) if key in figures else math.nan


def _judge(target: str, value: float, text: Callable[[float], str], ok: bool) -> Verdict:
    if math.isnan(value):
        return Verdict(target, "not measured in this run", None)
    return Verdict(target, text(value), ok)


def _latency(figures: Figures, prefix: str = "c1.", setup: str = "") -> list[Verdict]:
    """(1)'s two targets: for the tuned gateway, or (``prefix`` "c1.defaults_",
    ``setup`` saying so) for the one run with its shipped defaults."""
    p50, p99 = _median(figures, f"{prefix}added_p50"), _median(figures, f"{prefix}added_p99")
    ms = "{:.3f} ms".format
    return [
        _judge(f"(1) added latency at c=1{setup}, median ≤ 0.5 ms", p50, ms, p50 <= 0.5),
        _judge(f"(1) added latency at c=1{setup}, p99 ≤ 1.5 ms", p99, ms, p99 <= 1.5),
    ]


def _throughput(figures: Figures) -> list[Verdict]:
    ratio = figures["c32.rps"].ratio() if "c32.rps" in figures else math.nan
    share = _median(figures, "c32.share")
    rps, direct = _median(figures, "c32.rps"), _median(figures, "c32.rps", "direct")

    def share_text(value: float) -> str:
        return f"{value:.1f} % ({rps:.0f} vs {direct:.0f} req/s direct)"

    return [
        _judge("(2) throughput at c=32 ≥ 20x LiteLLM's", ratio, "{:.1f}x".format, ratio >= 20),
        _judge(
            "(2) throughput at c=32 ≥ 1/3 of the mock's served directly",
            share,
            share_text,
            share >= 100 / 3,
        ),
    ]


def _streaming(figures: Figures) -> list[Verdict]:
    over99 = _median(figures, "s100.over_p99")
    gap, direct_gap = _median(figures, "s100.gap_p50"), _median(figures, "s100.gap_p50", "direct")
    glued = _median(figures, "s100.coalesced")
    direct_glued = _median(figures, "s100.coalesced", "direct")
    forwarded = abs(gap - direct_gap) <= 1.0 and glued <= direct_glued + 1.0

    def gap_text(value: float) -> str:
        return (
            f"gap p50 {value:.2f} ms (direct {direct_gap:.2f}); "
            f"{glued:.1f} % of chunks coalesced (direct {direct_glued:.1f} %)"
        )

    return [
        _judge(
            "(3) TTFT overhead p99 ≤ 2 ms at 100 streams", over99, "{:.3f} ms".format, over99 <= 2
        ),
        _judge(
            "(3) chunks forwarded as they arrive (gap p50 within 1 ms of direct, "
            "≤ 1 point more chunks coalesced)",
            gap,
            gap_text,
            forwarded,
        ),
    ]


@dataclass(frozen=True)
class HoldGoal:
    """Scenario (4): how many streams were held, and why fewer than the target, if so."""

    streams: int
    reason: str = ""


def _hold(figures: Figures, goal: HoldGoal) -> list[Verdict]:
    errors, open_ = _median(figures, "hold.errors"), _median(figures, "hold.peak_open")
    peak, idle = _median(figures, "hold.rss_peak"), _median(figures, "hold.rss_idle")
    per_stream_kib = _median(figures, "hold.per_stream")
    projected = idle + per_stream_kib * HOLD_TARGET / 1024
    rss = peak if goal.streams >= HOLD_TARGET else projected
    held = errors == 0 and open_ >= goal.streams
    scaled = "" if goal.streams >= HOLD_TARGET else f" ({goal.reason})"

    def held_text(value: float) -> str:
        return f"{value:.0f} errors, {open_:.0f} of {goal.streams} open at once{scaled}"

    def rss_text(value: float) -> str:
        if goal.streams >= HOLD_TARGET:
            return f"{value:.0f} MiB at peak"
        return (
            f"{peak:.0f} MiB at {goal.streams} streams; {value:.0f} MiB projected at "
            f"{HOLD_TARGET} ({per_stream_kib:.1f} KiB per stream)"
        )

    count = _judge(f"(4) {HOLD_TARGET} open streams, zero errors", errors, held_text, held)
    if scaled and count.passed:  # held all it could ask for, but that is not the target
        count = Verdict(
            count.target, count.measured, None, f"pass at {goal.streams}; {HOLD_TARGET} not run"
        )
    return [
        count,
        _judge(
            f"(4) RSS ≤ 1 GiB with {HOLD_TARGET} open streams", rss, rss_text, rss <= RSS_LIMIT_MIB
        ),
    ]


def _cache(figures: Figures, note: str) -> Verdict:
    """(5) has no target in the issue: the figures are reported, not judged."""
    target = "(5) cache-hit path (no target set)"
    if "hit.rps" not in figures:
        return Verdict(target, note, None)
    p50, rps = _median(figures, "hit.p50"), _median(figures, "hit.rps")
    gain = _median(figures, "hit.gain")
    measured = f"c=1 p50 {p50:.3f} ms; c=32 {rps:.0f} req/s, {gain:.2f}x the uncached path"
    return Verdict(target, measured, None, status="reported")


def _pipeline(figures: Figures, note: str) -> Verdict:
    target = "full pipeline costs ≤ 30 % throughput against the bare proxy path"
    if "pipe.cost" not in figures:
        return Verdict(target, note, None)
    cost, full = _median(figures, "pipe.cost"), _median(figures, "pipe.full")
    bare = _median(figures, "pipe.bare")
    measured = f"{cost:.1f} % ({full:.0f} vs {bare:.0f} req/s at c=32)"
    return Verdict(target, measured, cost <= 30)


def verdicts(
    figures: Figures, goal: HoldGoal, pipeline_note: str, cache_note: str = ""
) -> list[Verdict]:
    """Every target; the notes say why the pipeline cost and (5) are not measured, if not."""
    return [
        *_latency(figures),
        *_latency(figures, "c1.defaults_", " with the shipped defaults"),
        *_throughput(figures),
        *_streaming(figures),
        *_hold(figures, goal),
        _cache(figures, cache_note or "not measured: this gateway has no response cache"),
        _pipeline(figures, pipeline_note),
    ]
