"""Figures repeated N times, reduced to medians, written as markdown."""

from __future__ import annotations

import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "Comparison",
    "Report",
    "Runs",
    "Section",
    "Single",
    "Table",
    "fmt",
    "machine_info",
    "md_row",
]


@dataclass
class Runs:
    """One figure measured several times; reported as the median."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def spread(self, digits: int) -> str:
        return ", ".join(fmt(v, digits) for v in self.values)


@dataclass
class Comparison:
    """The same figure direct to the mock and through the gateway, same run."""

    label: str
    unit: str
    direct: Runs = field(default_factory=Runs)
    gateway: Runs = field(default_factory=Runs)
    digits: int = 3

    def cells(self) -> list[str]:
        d, g = self.direct.median, self.gateway.median
        ratio = f"{g / d:.2f}x" if d else "n/a"
        return [
            f"{self.label} ({self.unit})",
            fmt(d, self.digits),
            fmt(g, self.digits),
            fmt(g - d, self.digits, signed=True),
            ratio,
            f"{self.direct.spread(self.digits)} / {self.gateway.spread(self.digits)}",
        ]


@dataclass
class Section:
    title: str
    note: str
    columns: tuple[str, str] = ("Direct to mock", "Through gateway")
    rows: list[Comparison] = field(default_factory=list)

    def add(self, label: str, unit: str, digits: int = 3) -> Comparison:
        row = Comparison(label, unit, digits=digits)
        self.rows.append(row)
        return row

    def markdown(self) -> str:
        a, b = self.columns
        header = ["Figure", f"(a) {a}", f"(b) {b}", "b - a", "b / a", "Each run (a / b)"]
        lines = [f"### {self.title}", "", self.note, "", md_row(header), md_row(["---"] * 6)]
        lines += [md_row(r.cells()) for r in self.rows]
        return "\n".join(lines) + "\n"


@dataclass
class Single:
    """A figure with nothing to compare it with in the same table."""

    label: str
    unit: str
    runs: Runs = field(default_factory=Runs)
    digits: int = 3

    def cells(self) -> list[str]:
        digits = self.digits
        return [
            f"{self.label} ({self.unit})",
            fmt(self.runs.median, digits),
            self.runs.spread(digits),
        ]


@dataclass
class Table:
    title: str
    note: str
    rows: list[Single] = field(default_factory=list)

    def add(self, label: str, unit: str, digits: int = 3) -> Single:
        row = Single(label, unit, digits=digits)
        self.rows.append(row)
        return row

    def markdown(self) -> str:
        header = ["Figure", "Median", "Each run"]
        lines = [f"### {self.title}", "", self.note, "", md_row(header), md_row(["---"] * 3)]
        lines += [md_row(r.cells()) for r in self.rows]
        return "\n".join(lines) + "\n"


@dataclass
class Report:
    machine: list[tuple[str, str]]
    sections: list[Section | Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        out = ["# Interlock micro-benchmark", "", "| | |", "| --- | --- |"]
        out += [md_row([k, v]) for k, v in self.machine]
        out += [""] + [s.markdown() for s in self.sections]
        if self.notes:
            out += ["### Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        return "\n".join(out)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.markdown(), encoding="utf-8")


def fmt(value: float, digits: int, signed: bool = False) -> str:
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _command_output(cmd: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    # `wrk --version` prints its version and exits 1; take the first line regardless.
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def machine_info(nproc: int, layout: str, settings: str) -> list[tuple[str, str]]:
    return [
        ("Date (UTC)", datetime.now(UTC).strftime("%Y-%m-%d %H:%M")),
        ("Commit", _command_output(["git", "rev-parse", "--short", "HEAD"])),
        ("CPU", f"{nproc} x {_cpu_model()}"),
        ("Kernel", platform.release()),
        ("Python", sys.version.split()[0]),
        ("wrk", _command_output(["wrk", "--version"]).split(" [")[0]),
        ("Pinning", layout),
        ("Settings", settings),
    ]
