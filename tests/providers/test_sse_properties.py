"""Property of the upstream SSE reader (hypothesis): the events read are the
same however the network splits the bytes (and with CRLF line ends)."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from interlock.providers.http import SSEEvent, _parse_sse

payloads = st.lists(
    st.tuples(
        st.sampled_from(["", "message", "content_block_delta", "ping"]),
        st.lists(
            st.text(
                alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
                max_size=30,
            ),
            min_size=1,
            max_size=3,
        ),
    ),
    min_size=1,
    max_size=12,
)


class SplitBody:
    """A response whose body arrives in the given pieces (``readany``)."""

    def __init__(self, pieces: list[bytes]):
        self._pieces = pieces

    async def readany(self) -> bytes:
        return self._pieces.pop(0) if self._pieces else b""


def _encode(events: list[tuple[str, list[str]]], line_end: bytes) -> bytes:
    out = b""
    for name, lines in events:
        block = [b"event: " + name.encode()] if name else []
        block += [b"data: " + line.encode() for line in lines]
        out += line_end.join(block) + line_end + line_end
    return out


def _read(pieces: list[bytes]) -> list[SSEEvent]:
    async def run() -> list[SSEEvent]:
        return [event async for event in _parse_sse(SplitBody(pieces))]  # type: ignore[arg-type]

    return asyncio.run(run())


@settings(max_examples=300)
@given(events=payloads, cuts=st.lists(st.integers(0, 10_000), max_size=20), crlf=st.booleans())
def test_any_split_of_the_bytes_reads_the_same_events(
    events: list[tuple[str, list[str]]], cuts: list[int], crlf: bool
) -> None:
    raw = _encode(events, b"\r\n" if crlf else b"\n")
    points = sorted({c % (len(raw) + 1) for c in cuts})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True) if b > a]
    expected = [SSEEvent(name or "message", "\n".join(lines).encode()) for name, lines in events]
    assert _read(pieces) == expected
    assert _read([raw]) == expected
