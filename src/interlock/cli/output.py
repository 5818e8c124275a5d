"""What every command prints the same way: notes on stderr, JSON and tables
on stdout. rich is imported only when a table is drawn, so ``serve`` never
pays for it."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["note", "print_json", "print_table", "stdout_is_terminal"]


def note(text: str) -> None:
    """A line for the person at the shell; stdout stays for what scripts read."""
    print(text, file=sys.stderr)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def print_table(head: Sequence[str], rows: Iterable[Sequence[str]], *, header: bool = True) -> None:
    """A table: ruled on a terminal, plain columns when piped (``grep``/``awk``)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    # Markup off: names and descriptions are the user's text, not rich markup.
    console = Console(markup=False, highlight=False, emoji=False)
    terminal = console.is_terminal
    table = Table(
        *head,
        show_header=header,
        box=box.SIMPLE_HEAD if terminal and header else None,
        pad_edge=False,
        header_style="bold" if terminal else "",
    )
    for row in rows:
        table.add_row(*row)
    if not terminal:
        console.width = 200  # piped: whole rows, not folded at 80 columns
    console.print(table)
