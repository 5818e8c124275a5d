"""Random identifiers for requests, answers and the items in them.

Identifiers, not secrets: nothing is found by one without the API key that
made it (a stored response is scoped to its key), so they come from the
stdlib generator (seeded from the OS, re-seeded in forked workers). Not
``os.urandom``: its ``getrandom`` call releases the GIL, and on a loaded
gateway taking it back costs a thread switch, twice per Responses request
when this was measured (bench/dialects_cost.py).
"""

from __future__ import annotations

import random

__all__ = ["random_hex"]


def random_hex(digits: int) -> str:
    """``digits`` random lowercase hex digits."""
    # bytes.hex is about twice as fast as formatting a 160-bit int as hex,
    # and a Responses stream makes two of these ids.
    return random.getrandbits(4 * digits).to_bytes((digits + 1) // 2).hex()[-digits:]
