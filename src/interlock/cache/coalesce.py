"""Single-flight: identical in-flight requests in one process share one upstream call.

Unary requests share a future (``SingleFlight``). Streams share a
``StreamFlight``: a producer (the leader's pump) publishes chunks into a
buffer and every ``Subscription`` reads it at its own pace, so a late joiner
gets the chunks produced so far, then the live ones, and every subscriber
sees the same sequence.

Failure must reach every follower, never leave one waiting: when the leader
fails (or is cancelled) followers get ``LeaderFailed``, which is their cue to
call upstream themselves. A follower also gives up with ``LeaderFailed``
after ``follower_timeout_s`` without progress, whatever the leader is doing.

The buffer is bounded: past ``max_buffer_bytes`` a flight stops accepting
joiners (they become leaders of their own) and drops the prefix every
current subscriber has read, so memory is at most what the slowest reader
has not yet consumed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from interlock.errors import ServiceUnavailable

__all__ = ["LeaderFailed", "SingleFlight", "StreamFlight", "Subscription", "original_error"]

T = TypeVar("T")


class LeaderFailed(ServiceUnavailable):
    """The request this one was coalesced onto failed or went away.

    ``__cause__`` is the leader's own error when there was one. Followers
    that have not yet sent anything catch it and call upstream themselves;
    one that reaches the edge (a follower stalled mid-stream, a stream cut by
    shutdown) is a 503, or an SSE error event once bytes have gone out.
    """

    code = "coalesced_request_failed"


def original_error(failure: LeaderFailed) -> Exception:
    """What a follower that cannot fall back raises: the leader's own error
    (an upstream timeout stays a 504), or the ``LeaderFailed`` when there was none."""
    cause = failure.__cause__
    return cause if isinstance(cause, Exception) else failure


class SingleFlight(Generic[T]):
    """One ``call`` per key at a time; concurrent callers share its result."""

    def __init__(self, follower_timeout_s: float):
        self._timeout_s = follower_timeout_s
        self._flights: dict[str, asyncio.Future[T]] = {}
        self.following = 0  # followers waiting now, all keys (a gauge)

    def __contains__(self, key: str) -> bool:
        return key in self._flights

    async def run(self, key: str, call: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """``(result, led)``: lead a new flight, or follow the one in the air.

        A follower's result is the leader's very object: callers that hand it
        out must copy it. Raises ``LeaderFailed`` to followers.
        """
        existing = self._flights.get(key)
        if existing is not None:
            return await self._follow(existing), False
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._flights[key] = future
        try:
            result = await call()
        except BaseException as exc:
            # A cancelled leader must not look like a cancelled follower.
            shared = exc if isinstance(exc, Exception) else LeaderFailed("the leader was cancelled")
            future.set_exception(shared)
            future.exception()  # retrieved: there may be no follower to read it
            raise
        else:
            future.set_result(result)
            return result, True
        finally:
            if self._flights.get(key) is future:
                del self._flights[key]

    async def _follow(self, future: asyncio.Future[T]) -> T:
        self.following += 1
        try:
            async with asyncio.timeout(self._timeout_s):
                return await asyncio.shield(future)
        except TimeoutError:
            raise LeaderFailed(f"no answer from the leader within {self._timeout_s:g} s") from None
        except LeaderFailed as exc:
            raise LeaderFailed(str(exc)) from exc.__cause__
        except Exception as exc:
            raise LeaderFailed(f"the leader failed: {type(exc).__name__}") from exc
        finally:
            self.following -= 1


class StreamFlight:
    """One stream's chunks, published once and read by every subscriber."""

    def __init__(
        self,
        *,
        max_buffer_bytes: int,
        follower_timeout_s: float,
        on_abandoned: Callable[[], None] | None = None,
    ):
        self._max_buffer_bytes = max_buffer_bytes
        self._timeout_s = follower_timeout_s
        self._on_abandoned = on_abandoned
        self._chunks: list[bytes] = []
        self._base = 0  # absolute position of _chunks[0]
        self._buffered = 0
        self._done = False
        self._error: BaseException | None = None
        self._changed = asyncio.Event()
        self._cursors: dict[int, int] = {}
        self._next_id = 0
        self.joinable = True
        self.joined = 0  # subscriptions ever taken, the leader's included

    @property
    def subscribers(self) -> int:
        return len(self._cursors)

    @property
    def ended(self) -> bool:
        return self._done or self._error is not None

    # -- producer --------------------------------------------------------------

    def publish(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > self._max_buffer_bytes:
            self.joinable = False
            self._trim()
        self._wake()

    def finish(self) -> None:
        self._done = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if not self.ended:
            self._error = exc
            self.joinable = False
            self._wake()

    # -- subscribers -------------------------------------------------------------

    def subscribe(self, *, leader: bool = False) -> Subscription:
        """Read from the first chunk. The leader's subscription raises the
        upstream error itself and waits without a bound (the pump's own
        timeouts bound it); followers get ``LeaderFailed`` and the bound."""
        if not self.joinable:
            raise LeaderFailed("this flight no longer takes subscribers")
        sid = self._next_id
        self._next_id += 1
        self.joined += 1
        self._cursors[sid] = 0
        return Subscription(self, sid, None if leader else self._timeout_s, leader)

    async def _next(self, sid: int, timeout_s: float | None, leader: bool) -> bytes:
        while True:
            position = self._cursors[sid]
            if position < self._base + len(self._chunks):
                self._cursors[sid] = position + 1
                chunk = self._chunks[position - self._base]
                if not self.joinable:
                    self._trim()
                return chunk
            if self._error is not None:
                if leader and isinstance(self._error, Exception):
                    raise self._error
                if leader:  # the pump was cancelled (shutdown), not this client
                    raise LeaderFailed("the stream was cancelled")
                raise LeaderFailed(f"the leader failed: {type(self._error).__name__}") from (
                    self._error if isinstance(self._error, Exception) else None
                )
            if self._done:
                raise StopAsyncIteration
            changed = self._changed
            try:
                async with asyncio.timeout(timeout_s):
                    await changed.wait()
            except TimeoutError:
                raise LeaderFailed(f"no chunk from the leader within {timeout_s:g} s") from None

    def _leave(self, sid: int) -> None:
        if self._cursors.pop(sid, None) is None:
            return
        if not self._cursors and not self.ended:
            self.joinable = False
            if self._on_abandoned is not None:
                self._on_abandoned()
        elif not self.joinable:
            self._trim()

    def _trim(self) -> None:
        """Drop chunks every subscriber has read (only once closed to joiners)."""
        keep_from = min(self._cursors.values(), default=self._base + len(self._chunks))
        drop = keep_from - self._base
        if drop > 0:
            self._buffered -= sum(len(c) for c in self._chunks[:drop])
            del self._chunks[:drop]
            self._base = keep_from

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


class Subscription:
    """An async iterator over one flight; leaving early is ``aclose``."""

    def __init__(self, flight: StreamFlight, sid: int, timeout_s: float | None, leader: bool):
        self._flight = flight
        self._sid = sid
        self._timeout_s = timeout_s
        self._leader = leader

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._flight._next(self._sid, self._timeout_s, self._leader)
        except BaseException:
            self._flight._leave(self._sid)
            raise

    async def aclose(self) -> None:
        self._flight._leave(self._sid)
