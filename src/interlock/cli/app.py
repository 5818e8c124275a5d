"""The ``interlock`` command: one Typer app, a module per command group.

``main`` runs it the way argparse did, so scripts and tests see the same
exit statuses: a command's own status, 2 (and ``SystemExit``) for a usage
error, 0 for ``--help``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from interlock.cli import batch, chaos, keys, models, search, serve

__all__ = ["app", "command", "main"]

app = typer.Typer(
    name="interlock",
    help="Interlock, an AI inference gateway: run it, and manage a running one.",
    no_args_is_help=True,
    # Help is drawn with rich panels; the help texts use no [style] markup,
    # so what they say is shown as written.
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
for group in (serve, keys, chaos, models, batch, search):
    group.register(app)


def command() -> typer.core.TyperGroup:
    """The app as a click-style command (its ``make_context`` parses argv)."""
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return group


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``interlock`` with ``argv`` (default: the process's); its exit status."""
    try:
        result = command().main(
            args=list(sys.argv[1:] if argv is None else argv),
            prog_name="interlock",
            standalone_mode=False,
        )
    except typer.TyperException as exc:  # a usage error: argparse's behaviour, exit 2
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            print(f"error: {exc.format_message()}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:  # EOF at a prompt
        print("Aborted!", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0
