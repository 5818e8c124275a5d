"""The route stage: the call goes to the router with the attempt to make on
each deployment it picks (strategy order, breakers, retries with backoff,
failover; all of it ``interlock.routing``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

from interlock.pipeline.attempt import Attempts
from interlock.pipeline.call import ModelCall
from interlock.pipeline.request import JSONDict, Operation
from interlock.routing.router import Deployment, Router

__all__ = ["RouteStage", "StreamStart"]

# A stream whose first chunk has come (None: it ended at once), and the rest.
StreamStart = tuple[bytes | None, AsyncIterator[bytes]]


class RouteStage:
    def __init__(self, router: Router, attempts: Attempts):
        self.router = router
        self.attempts = attempts

    async def unary(self, call: ModelCall, operation: Operation, body: JSONDict) -> JSONDict:
        attempt = partial(self.attempts.unary, call, operation, body)
        return await self.router.run(
            call.group, call.record, call.route, attempt, forced=call.options.forced
        )

    async def stream(
        self,
        call: ModelCall,
        body: JSONDict,
        pass_usage: bool,
        exclude: frozenset[str] = frozenset(),
    ) -> StreamStart:
        """The first deployment whose stream starts. A failure before the first
        chunk is the attempt's, so the router can still try elsewhere."""
        attempt = partial(self._stream_attempt, call, body, pass_usage)
        return await self.router.run(
            call.group,
            call.record,
            call.route,
            attempt,
            forced=call.options.forced,
            exclude=exclude,
        )

    async def _stream_attempt(
        self, call: ModelCall, body: JSONDict, pass_usage: bool, deployment: Deployment
    ) -> StreamStart:
        chunks = self.attempts.stream(call, body, pass_usage, deployment)
        first = await anext(chunks, None)  # raises the attempt's failure, if any
        return first, chunks
