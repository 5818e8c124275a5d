"""The one-line errors of the commands that call a running gateway."""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["CliError", "reported"]


class CliError(Exception):
    """A problem to report in one line; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def reported(command: Callable[[], int]) -> int:
    """Run ``command``; a ``CliError`` becomes ``error: ...`` and its status,
    Ctrl-C exit status 130 (the shell's convention), never a traceback."""
    try:
        return command()
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
