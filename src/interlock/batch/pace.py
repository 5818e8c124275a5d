"""How often a batch worker's sweeper reads the store.

The sweeper's reads cost a gateway with no batches as much as a busy one:
three queries a second on every worker, forever. So it sweeps every
``every_s`` while a batch is open (or awaits its webhook) and every
``idle_s`` while none is. Work taken from the queue brings the short pace
back at once, since the batch it belongs to is open, and so does a batch
opened or cancelled through this process's API. A batch opened through
another gateway is expanded by whichever worker takes its first message,
and that worker's sweeper wakes; the others see it within ``idle_s``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["SweepPace"]


class SweepPace:
    def __init__(self, every_s: float, idle_s: float, clock: Callable[[], float]):
        if every_s <= 0:
            raise ValueError("every_s must be positive")
        self.every_s = every_s
        self._idle_s = max(idle_s, every_s)
        self._clock = clock
        self._next_at = -math.inf  # the first sweep is due at once
        # Wakes are counted, not flagged: one that comes while a sweep runs
        # (a batch opened after that sweep read the store) must outlive it,
        # or the sweeper rests at the idle pace with the batch unseen.
        self._wakes = 0
        self._answered = 0  # the wakes the sweep under way (or the last) answers

    def due(self) -> bool:
        """Whether the sweeper reads the store now; if so, the wakes so far
        are the ones that sweep answers."""
        if self._wakes != self._answered or self._clock() >= self._next_at:
            self._answered = self._wakes
            return True
        return False

    def swept(self, anything_open: bool) -> None:
        """A sweep ended; ``anything_open``: it found a batch to watch (or
        could not tell, after a failure)."""
        self._next_at = self._clock() + (self.every_s if anything_open else self._idle_s)

    def wake(self) -> None:
        """Work was taken: sweep at the next tick."""
        self._wakes += 1
