"""Options the CLIs that call a running gateway share (``interlock batch``,
``interlock models``): where it is, how long one call may take, raw JSON."""

from __future__ import annotations

import argparse
import os

__all__ = ["add_gateway_options", "positive_seconds"]


def positive_seconds(raw: str) -> float:
    """An argparse type: a number of seconds above zero."""
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {raw!r}")
    return value


def add_gateway_options(parser: argparse.ArgumentParser) -> None:
    """``--url`` ($INTERLOCK_URL), ``--timeout`` per HTTP call, ``--json``."""
    parser.add_argument(
        "--url",
        default=os.environ.get("INTERLOCK_URL", "http://127.0.0.1:8080"),
        help="the gateway (default: $INTERLOCK_URL or http://127.0.0.1:8080)",
    )
    parser.add_argument(
        "--timeout", type=positive_seconds, default=30.0, help="seconds per HTTP call"
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON objects")
