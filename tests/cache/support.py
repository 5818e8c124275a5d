"""Builders for cache tests: OpenAI-shaped answers, fake upstream calls, a cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from interlock.cache import CacheRequest, CacheSettings, ResponseCache
from interlock.providers.shapes import chunk_bytes, chunk_choice
from interlock.state import StateStore, StateStoreUnavailable
from tests.state.harness import FakeClock

MODEL = "sim"
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def chat_body(text: str = "Say hello", **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": text}],
        "temperature": 0,
        **extra,
    }


def completion(content: str | None = "Hello there, friend.", **message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion",
        "created": 1,
        "model": "sim-1",
        "system_fingerprint": "fp_1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None, **message},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": dict(USAGE),
    }


def stream_chunks(words: list[str], *, usage: bool = True) -> list[bytes]:
    """An upstream stream as the pipeline hands it over (usage chunk included)."""

    def chunk(choices: list[dict[str, Any]], chunk_usage: Any = None) -> bytes:
        return chunk_bytes(
            "chatcmpl-up", 1, "sim-1", choices, include_usage=True, usage=chunk_usage
        )

    out = [chunk([chunk_choice(0, {"role": "assistant", "content": ""})])]
    out += [chunk([chunk_choice(0, {"content": word})]) for word in words]
    out.append(chunk([chunk_choice(0, {}, "stop")]))
    if usage:
        out.append(chunk([], dict(USAGE)))
    return out


def parse(chunks: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(c) for c in chunks]


def text_of(chunks: list[bytes]) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for parsed in parse(chunks)
        for choice in parsed["choices"]
    )


class CountingCall:
    """A unary upstream: counts calls, optionally held at a gate or failing."""

    def __init__(self, result: dict[str, Any] | None = None, *, gate: asyncio.Event | None = None):
        self.result = result or completion()
        self.gate = gate
        self.calls = 0
        self.fail_with: Exception | None = None

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        copy: dict[str, Any] = orjson.loads(orjson.dumps(self.result))
        return copy


class FakeStream:
    """A streaming upstream in the pipeline's shape (first chunk awaited, then the rest).

    Yields ``hold_after`` chunks, sets ``reached_hold``, waits for ``gate``, then
    the rest; ``fail_first`` calls raise ``fail_with`` at the gate instead.
    """

    def __init__(self, chunks: list[bytes], *, hold_after: int = 0):
        self.chunks = chunks
        self.hold_after = hold_after
        self.gate = asyncio.Event()
        self.reached_hold = asyncio.Event()
        self.calls = 0
        self.fail_first = 0
        self.fail_with: Exception = RuntimeError("upstream broke")

    async def __call__(self) -> tuple[bytes | None, AsyncIterator[bytes]]:
        self.calls += 1
        return None, self._produce(self.calls <= self.fail_first)

    async def _produce(self, fail: bool) -> AsyncIterator[bytes]:
        for chunk in self.chunks[: self.hold_after]:
            yield chunk
        self.reached_hold.set()
        await self.gate.wait()
        if fail:
            raise self.fail_with
        for chunk in self.chunks[self.hold_after :]:
            yield chunk


class SwitchableStore:
    """A ``StateStore`` that can be taken down: every call raises while ``down``."""

    def __init__(self, inner: StateStore):
        self.inner = inner
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise StateStoreUnavailable("down for the test")

    async def get(self, key: str) -> bytes | None:
        self._check()
        return await self.inner.get(key)

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        self._check()
        await self.inner.set(key, value, ttl_s)

    async def delete(self, key: str) -> None:
        self._check()
        await self.inner.delete(key)

    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        self._check()
        return await self.inner.incr(key, amount, ttl_s)

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        self._check()
        return await self.inner.set_if_absent(key, value, ttl_s)

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes, ttl_s: float | None = None
    ) -> bool:
        self._check()
        return await self.inner.compare_and_set(key, expected, new, ttl_s)

    async def ping(self) -> bool:
        return not self.down

    async def aclose(self) -> None:
        await self.inner.aclose()


class RecordingSleep:
    """An injected sleep that returns at once, records, and can run a hook."""

    def __init__(self, hook: Callable[[int], Awaitable[None]] | None = None):
        self.slept: list[float] = []
        self.hook = hook

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.hook is not None:
            await self.hook(len(self.slept))
        await asyncio.sleep(0)


def make_cache(
    store: StateStore,
    clock: FakeClock | None = None,
    *,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    **settings: Any,
) -> ResponseCache:
    clock = clock or FakeClock()
    return ResponseCache(
        CacheSettings(**settings),
        store,
        clock=clock,
        wall_clock=clock,
        sleep=sleep or RecordingSleep(),
        pricing=lambda model, usage: 0.5,
    )


async def prepare(
    cache: ResponseCache,
    body: dict[str, Any] | None = None,
    *,
    key: str = "alice",
    headers: dict[str, str] | None = None,
    embedding: bool = False,
) -> CacheRequest:
    body = body if body is not None else chat_body()
    req = await cache.prepare(key, MODEL, body, headers or {}, embedding=embedding)
    assert req is not None
    return req


async def drain(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


async def until(predicate: Callable[[], bool], timeout_s: float = 2.0) -> None:
    """Yield to the loop until ``predicate`` holds (bounded; no fixed sleeps)."""
    async with asyncio.timeout(timeout_s):
        # Conditions on counters other tasks bump, so polling, not an Event.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0)
