"""The suite's PNG: latency distributions and memory per stream.

    python bench/plot.py [bench/results/latest.json]   # redraws latest.png from the data

Four panels: the c=1 latency CDF (direct, Interlock tuned and with its
shipped defaults, LiteLLM) and the TTFT CDF at the first stream load, RSS
against open streams while the hold run ramps up, and memory per open stream.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # after choosing the backend
from matplotlib.axes import Axes

__all__ = ["draw"]

COLORS = {
    "direct": "#7f7f7f",
    "interlock": "#1f77b4",
    "interlock-defaults": "#17becf",
    "litellm": "#d62728",
}
NAMES = {
    "direct": "direct (mock)",
    "interlock": "Interlock",
    "interlock-defaults": "Interlock, shipped defaults",
    "litellm": "LiteLLM",
}
_C1_PERCENTILES = [*range(1, 100), 99.9]


def _cdf(ax: Axes, curves: dict[str, list[float]], percentiles: list[float], title: str) -> None:
    for side, values in curves.items():
        if values:
            ax.plot(values, percentiles[: len(values)], label=NAMES[side], color=COLORS[side])
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds (log scale)")
    ax.set_ylabel("percentile")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def _ramp(samples: list[list[float]]) -> tuple[list[float], list[float]]:
    """(open streams, RSS MiB) up to the moment the most streams were open."""
    if not samples:
        return [], []
    peak_at = max(range(len(samples)), key=lambda i: samples[i][2])
    ramp = [s for s in samples[: peak_at + 1] if s[2] >= 0]
    return [s[2] for s in ramp], [s[1] for s in ramp]


def _memory(ax: Axes, memory: dict[str, list[list[float]]], title: str) -> None:
    for side, samples in memory.items():
        streams, rss = _ramp(samples)
        ax.plot(streams, rss, label=NAMES[side], color=COLORS[side], marker=".", markersize=3)
    ax.set_xlabel("streams open at the mock")
    ax.set_ylabel("server RSS (MiB)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def _per_stream(ax: Axes, figure: dict[str, Any], title: str) -> None:
    sides = [s for s in COLORS if figure["values"].get(s)]
    kib = [figure["values"][s][-1] for s in sides]
    bars = ax.bar([NAMES[s] for s in sides], kib, color=[COLORS[s] for s in sides])
    ax.bar_label(bars, fmt="%.1f KiB", fontsize=8)
    ax.set_ylabel("KiB per open stream")
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)


def draw(data: dict[str, Any], path: Path) -> None:
    curves, figures, labels = data["curves"], data["figures"], data["labels"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    _cdf(axes[0][0], curves["c1_cdf_ms"], _C1_PERCENTILES, labels["c1"])
    ttft_percentiles = [float(p) for p in range(101)]
    _cdf(axes[0][1], curves["ttft_cdf_ms"], ttft_percentiles, labels["ttft"])
    _memory(axes[1][0], curves["memory"], labels["memory"])
    if "hold.per_stream" in figures:
        _per_stream(axes[1][1], figures["hold.per_stream"], labels["per_stream"])
    fig.suptitle(labels["title"], fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else Path(__file__).parent / "results" / "latest.json"
    data = json.loads(source.read_text())
    target = source.with_suffix(".png")
    draw(data, target)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
