"""``interlock``: the command line (``cli/app.py`` builds it)."""

from interlock.cli.app import main

__all__ = ["main"]
