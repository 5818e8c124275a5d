"""A steady load of chat completions through nginx, unary and streamed, in
the test's own event loop, keeping what each client saw.

Every request is bounded by ``timeout_s``: a request the fleet never
answers is an error here, never a hung test.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.support.fleet import answered_by

__all__ = ["Outcome", "SteadyLoad", "post_chat"]


@dataclass
class Outcome:
    """One request as its client saw it."""

    request_id: str
    kind: str  # "unary" or "stream"
    started: float
    ended: float = 0.0
    gateway: str = ""  # which gateway answered (nginx's x-fleet-upstream); "" if none did
    status: int = 0  # 0: no response at all
    error: str = ""  # empty: a 200 read to its end
    streaming: bool = False  # a stream had sent its first chunk (so a cut is mid-stream)

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class SteadyLoad:
    """``unary`` and ``streams`` clients, each sending one request after
    another to ``url`` until ``stop``."""

    url: str
    key: str
    model: str = "load"
    unary: int = 8
    streams: int = 3
    timeout_s: float = 20.0
    prefix: str = "load"
    outcomes: list[Outcome] = field(default_factory=list)
    in_flight: dict[str, Outcome] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _session: aiohttp.ClientSession | None = None
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    async def __aenter__(self) -> SteadyLoad:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=timeout
        )
        self._tasks = [asyncio.create_task(self._client(False)) for _ in range(self.unary)]
        self._tasks += [asyncio.create_task(self._client(True)) for _ in range(self.streams)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def stop(self) -> None:
        await self.__aexit__(None, None, None)

    async def _client(self, stream: bool) -> None:
        assert self._session is not None
        while not self._stop.is_set():
            request_id = f"{self.prefix}-{next(self._ids)}"
            outcome = Outcome(request_id, "stream" if stream else "unary", time.monotonic())
            self.in_flight[request_id] = outcome
            try:
                await self._one(self._session, outcome, stream)
            finally:
                outcome.ended = time.monotonic()
                del self.in_flight[request_id]
                self.outcomes.append(outcome)

    async def _one(self, session: aiohttp.ClientSession, outcome: Outcome, stream: bool) -> None:
        body = chat_body(self.model, outcome.request_id, stream)
        headers = {"authorization": f"Bearer {self.key}", "x-request-id": outcome.request_id}
        try:
            async with session.post(
                self.url + "/v1/chat/completions", json=body, headers=headers
            ) as response:
                outcome.status = response.status
                outcome.gateway = answered_by(response.headers)
                if response.status != 200:
                    outcome.error = f"HTTP {response.status}: {(await response.read())[:200]!r}"
                elif stream:
                    await _read_stream(response, outcome)
                else:
                    await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"

    # What the test reads

    def completed(self, since: float = 0.0) -> list[Outcome]:
        return [o for o in self.outcomes if o.started >= since]

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def streaming_on(self, gateway: str) -> list[Outcome]:
        """Streams in flight on ``gateway`` that have sent their first chunk."""
        return [o for o in self.in_flight.values() if o.streaming and o.gateway == gateway]

    def served_by(self, since: float = 0.0) -> Counter[str]:
        return Counter(o.gateway for o in self.completed(since) if o.ok)

    async def until(self, check: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Let the load run until ``check()`` holds."""
        deadline = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout_s} s: {what} ({self.summary()})")
            await asyncio.sleep(0.02)

    def summary(self) -> str:
        kinds = Counter((o.kind, o.ok) for o in self.outcomes)
        errors = Counter(o.error[:80] for o in self.failures())
        return f"{dict(kinds)}; errors {dict(errors)}"


def chat_body(model: str, prompt: str, stream: bool) -> dict[str, Any]:
    """No temperature: never cached, so every request reaches the upstream."""
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


async def _read_stream(response: aiohttp.ClientResponse, outcome: Outcome) -> None:
    last = b""
    async for line in response.content:
        if line.strip():
            outcome.streaming = True
            last = line.strip()
    if last != b"data: [DONE]":
        outcome.error = f"stream ended without [DONE] (last {last[:60]!r})"


async def post_chat(
    session: aiohttp.ClientSession, url: str, key: str, body: dict[str, Any]
) -> tuple[int, dict[str, str], Any]:
    """One request: status, headers (lower-case names) and the JSON body."""
    async with session.post(
        url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
    ) as response:
        payload = await response.json(content_type=None)
        headers = {k.lower(): v for k, v in response.headers.items()}
        return response.status, headers, payload
