"""Search tasks and their event logs, in the state store, so any instance can
serve any task: memory by default, Redis when shared. Everything expires
``ttl_s`` after it was last written.

Keys (under the store's own prefix)::

    search:task:<id>        the task's JSON (status, results, summary, ...)
    search:seq:<id>         the number of events appended so far
    search:ev:<id>:<n>      event n (1, 2, ...): {"event": name, "data": {...}}
    search:subs:<id>        how many clients are reading the stream
    search:cancel:<id>      set when the last reader left (the runner stops)

An event is appended in two writes, the counter first: a reader that sees
the counter ahead of an event not yet written stops there and reads it on
its next look, so events are read in order, without gaps or duplicates,
from any instance. The one instance running a task is its only writer.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from interlock.state import StateStore

__all__ = ["SearchEvent", "SearchTask", "TaskBoard", "TaskStatus", "new_task_id"]


class TaskStatus(StrEnum):
    PENDING = "pending"
    SEARCHING = "searching"
    SUMMARIZING = "summarizing"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED)


def new_task_id() -> str:
    # Unguessable: the id is the capability to read the task (EventSource
    # cannot send an Authorization header).
    return "search_" + secrets.token_urlsafe(18)


@dataclass(slots=True)
class SearchTask:
    task_id: str
    query: str
    streaming: bool
    num_results: int
    safe_search: bool
    status: TaskStatus = TaskStatus.PENDING
    key_name: str | None = None
    backend: str | None = None  # the backend that answered
    model: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    summary: str | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)
    followups: list[str] = field(default_factory=list)
    # How the pipeline's cache served the summary: "hit", "miss", ... (None: off).
    cache: str | None = None
    error: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)  # ms since the task was created
    created: float = 0.0  # unix time

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["status"] = str(self.status)
        body.pop("key_name")
        return body

    @classmethod
    def from_json(cls, raw: bytes) -> SearchTask:
        fields = orjson.loads(raw)
        fields["status"] = TaskStatus(fields["status"])
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class SearchEvent:
    id: int
    event: str
    data: dict[str, Any]


class TaskBoard:
    def __init__(self, state: StateStore, ttl_s: float):
        self._state = state
        self.ttl_s = ttl_s
        # Readers on this instance, woken when a task here appends an event;
        # readers of a task run elsewhere poll instead.
        self._wakeups: dict[str, asyncio.Event] = {}

    async def save(self, task: SearchTask) -> None:
        await self._state.set(
            f"search:task:{task.task_id}", orjson.dumps(_stored(task)), self.ttl_s
        )

    async def load(self, task_id: str) -> SearchTask | None:
        raw = await self._state.get(f"search:task:{task_id}")
        return SearchTask.from_json(raw) if raw is not None else None

    async def append(self, task_id: str, event: str, data: dict[str, Any]) -> int:
        n = await self._state.incr(f"search:seq:{task_id}", 1, self.ttl_s)
        payload = orjson.dumps({"event": event, "data": data})
        await self._state.set(f"search:ev:{task_id}:{n}", payload, self.ttl_s)
        wakeup = self._wakeups.get(task_id)
        if wakeup is not None:
            wakeup.set()
        return n

    async def read(self, task_id: str, after: int) -> list[SearchEvent]:
        """The events after event ``after`` that are written, in order."""
        raw_seq = await self._state.get(f"search:seq:{task_id}")
        last = int(raw_seq) if raw_seq is not None else 0
        events = []
        for n in range(after + 1, last + 1):
            raw = await self._state.get(f"search:ev:{task_id}:{n}")
            if raw is None:  # counted, not yet written: read it next time
                break
            stored = orjson.loads(raw)
            events.append(SearchEvent(n, stored["event"], stored["data"]))
        return events

    async def wait(self, task_id: str, timeout_s: float) -> None:
        """Until this instance appends to ``task_id``, or ``timeout_s``."""
        wakeup = self._wakeups.get(task_id)
        if wakeup is None:
            wakeup = self._wakeups[task_id] = asyncio.Event()
        try:
            await asyncio.wait_for(wakeup.wait(), timeout_s)
        except TimeoutError:
            pass
        wakeup.clear()

    def forget(self, task_id: str) -> None:
        """No reader on this instance waits on ``task_id`` any more."""
        self._wakeups.pop(task_id, None)

    async def subscribe(self, task_id: str, delta: int) -> int:
        """Count a reader in (+1) or out (-1); the readers now."""
        return await self._state.incr(f"search:subs:{task_id}", delta, self.ttl_s)

    async def cancel(self, task_id: str) -> None:
        await self._state.set(f"search:cancel:{task_id}", b"1", self.ttl_s)

    async def cancelled(self, task_id: str) -> bool:
        return await self._state.get(f"search:cancel:{task_id}") is not None


def _stored(task: SearchTask) -> dict[str, Any]:
    body = asdict(task)
    body["status"] = str(task.status)
    return body
