"""Progress for long work: a live rich bar on stderr when stdout is a
terminal; otherwise one line with the final count, so logs and scripts see
the outcome without a redrawn bar."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["Tracker", "tracked"]


class Tracker:
    """One task's progress: ``update`` it; the caller never sees rich."""

    def __init__(self, description: str, progress: Progress | None) -> None:
        self.description = description
        self.completed = 0
        self.total: int | None = None
        self.status = ""
        self._progress = progress
        self._task: TaskID | None = None
        if progress is not None:
            self._task = progress.add_task(description, total=None, status="")

    def update(self, completed: int, total: int | None = None, status: str | None = None) -> None:
        self.completed = completed
        self.total = total if total is not None else self.total
        self.status = status if status is not None else self.status
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task, completed=completed, total=self.total, status=self.status
            )

    def final_line(self) -> str:
        total = self.total if self.total is not None else self.completed
        return f"{self.description} {self.completed}/{total} {self.status}".rstrip()


@contextmanager
def tracked(description: str) -> Iterator[Tracker]:
    """A progress bar for the block; on exit, ok or not, the last state stays."""
    if not sys.stdout.isatty():
        tracker = Tracker(description, None)
        started = time.perf_counter()
        try:
            yield tracker
        finally:
            elapsed = time.perf_counter() - started
            print(f"{tracker.final_line()} ({elapsed:.1f} s)", file=sys.stderr, flush=True)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True, highlight=False)) as progress:
        yield Tracker(description, progress)
