"""SDK clients closed when the test that made them ends.

A client left open keeps its pooled socket until the garbage collector
takes it, which warns (an unclosed socket) in whichever later test that
happens, and the suite turns warnings into errors. ``closed_after_test``
registers a client; the autouse fixture in ``tests/conftest.py`` closes
every one registered during the test.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

__all__ = ["close_registered", "closed_after_test"]


class _Closeable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closeable)

_OPEN: list[_Closeable] = []


def closed_after_test(client: C) -> C:
    _OPEN.append(client)
    return client


def close_registered() -> None:
    while _OPEN:
        _OPEN.pop().close()
