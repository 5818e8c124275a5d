"""Waiting on a condition from a test's thread: poll it, with a bound wide
enough for a busy 2-core CI machine, and say what was awaited when the
bound is reached."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout_s: float = 60.0, what: str = "") -> T:
    """``check()``'s first truthy answer, polled every 50 ms."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what or check}")
        time.sleep(0.05)
