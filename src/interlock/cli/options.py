"""Options several commands share, as ``Annotated`` types: where the
gateway is, how long one call may take, ``--json``, ``--config``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

__all__ = [
    "ConfigOption",
    "JsonOption",
    "TimeoutOption",
    "UrlOption",
    "one_of",
    "positive_seconds",
]

DEFAULT_URL = "http://127.0.0.1:8080"


def positive_seconds(raw: str) -> float:
    """A number of seconds above zero (a usage error, exit 2, otherwise)."""
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise typer.BadParameter(f"must be a number of seconds > 0, got {raw!r}")
    return value


UrlOption = Annotated[
    str, typer.Option("--url", envvar="INTERLOCK_URL", help="the gateway's base URL")
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", parser=positive_seconds, help="seconds per HTTP call")
]
JsonOption = Annotated[bool, typer.Option("--json", help="print the raw JSON objects")]
ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="a gateway config whose store.url to use (default: the embedded SQLite)",
    ),
]


def one_of(*names: str) -> Callable[[str], str]:
    """A parser that takes one of ``names`` (as argparse's ``choices``)."""

    def parse(raw: str) -> str:
        if raw not in names:
            raise typer.BadParameter(f"{raw!r} is not one of {', '.join(names)}")
        return raw

    return parse
