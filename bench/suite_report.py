"""The suite's figures in three columns (direct, Interlock, LiteLLM), and its report.

Every figure keeps each repetition's value per column; the table shows the
median, and Interlock/LiteLLM is the median of the ratios taken pair by pair
(Interlock's run i over LiteLLM's run i, measured back to back).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from report import Table, fmt, md_row

__all__ = ["SIDES", "Figure", "Figures", "SuiteReport", "Verdict"]

SIDES = ("direct", "interlock", "litellm")
_HEADERS = {"direct": "Direct (mock)", "interlock": "Interlock", "litellm": "LiteLLM"}


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if not math.isnan(v)]


@dataclass
class Figure:
    scenario: str
    label: str
    unit: str
    digits: int = 3
    sides: tuple[str, ...] = SIDES
    compare: bool = True  # False: an Interlock/LiteLLM ratio means nothing (error counts)
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, side: str, value: float) -> None:
        self.values.setdefault(side, []).append(value)

    def median(self, side: str) -> float:
        values = _finite(self.values.get(side, []))
        return statistics.median(values) if values else math.nan

    def ratio(self) -> float:
        """Interlock / LiteLLM, pair by pair, median of the pairs (NaN: no pair)."""
        pairs = zip(self.values.get("interlock", []), self.values.get("litellm", []), strict=False)
        ratios = _finite([a / b if b else math.nan for a, b in pairs])
        return statistics.median(ratios) if ratios else math.nan

    def cell(self, side: str) -> str:
        if side not in self.sides:
            return "—"
        value = self.median(side)
        return "n/a" if math.isnan(value) else fmt(value, self.digits)

    def runs(self, side: str) -> str:
        if side not in self.sides:
            return "—"
        values = self.values.get(side, [])
        return ", ".join("n/a" if math.isnan(v) else fmt(v, self.digits) for v in values)

    def ratio_cell(self) -> str:
        ratio = self.ratio()
        both = "interlock" in self.sides and "litellm" in self.sides
        if not (self.compare and both) or math.isnan(ratio):
            return "—"
        return f"{ratio:.3g}x"

    def name(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


class Figures:
    """Figures in the order they were declared, found again by key."""

    def __init__(self) -> None:
        self._by_key: dict[str, Figure] = {}

    def new(
        self,
        key: str,
        scenario: str,
        label: str,
        unit: str,
        digits: int = 3,
        sides: tuple[str, ...] = SIDES,
        compare: bool = True,
    ) -> Figure:
        figure = Figure(scenario, label, unit, digits, sides, compare)
        self._by_key[key] = figure
        return figure

    def __getitem__(self, key: str) -> Figure:
        return self._by_key[key]

    def __contains__(self, key: str) -> bool:
        return key in self._by_key

    def __iter__(self) -> Iterator[Figure]:
        return iter(self._by_key.values())

    def as_json(self) -> dict[str, dict[str, object]]:
        return {
            key: {"scenario": f.scenario, "label": f.label, "unit": f.unit, "values": f.values}
            for key, f in self._by_key.items()
        }


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    passed: bool | None  # None: not judged (see status)
    status: str = "not measured"  # shown when passed is None

    def cells(self) -> list[str]:
        verdict = self.status if self.passed is None else ("pass" if self.passed else "**FAIL**")
        return [self.target, self.measured, verdict]


@dataclass
class SuiteReport:
    title: str
    summary: str
    machine: list[tuple[str, str]]
    mock_alone: Table
    figures: Figures
    verdicts: list[Verdict]
    scenarios: list[str]
    notes: list[str] = field(default_factory=list)
    plot: str = ""

    def markdown(self) -> str:
        out = [f"# {self.title}", "", self.summary, ""]
        out += ["## Machine and versions", "", "| | |", "| --- | --- |"]
        out += [md_row([k, v]) for k, v in self.machine] + [""]
        out += ["## Targets", "", md_row(["Target", "Measured", "Verdict"])]
        out += [md_row(["---"] * 3)] + [md_row(v.cells()) for v in self.verdicts] + [""]
        out += ["## Results", "", *self.scenarios, "", self._main_table(), ""]
        if self.plot:
            out += [f"![Latency distributions and memory per stream]({self.plot})", ""]
        out += [self.mock_alone.markdown()]
        out += ["## Each run", "", "Values of every repetition, in order.", ""]
        out += [self._runs_table(), ""]
        out += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        return "\n".join(out)

    def _main_table(self) -> str:
        header = ["Scenario", "Figure", *(_HEADERS[s] for s in SIDES), "Interlock / LiteLLM"]
        lines = [md_row(header), md_row(["---"] * len(header))]
        for f in self.figures:
            cells = [f.scenario, f.name(), *(f.cell(s) for s in SIDES), f.ratio_cell()]
            lines.append(md_row(cells))
        return "\n".join(lines)

    def _runs_table(self) -> str:
        header = ["Scenario", "Figure", *(_HEADERS[s] for s in SIDES)]
        lines = [md_row(header), md_row(["---"] * len(header))]
        for f in self.figures:
            lines.append(md_row([f.scenario, f.name(), *(f.runs(s) for s in SIDES)]))
        return "\n".join(lines)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.markdown(), encoding="utf-8")
