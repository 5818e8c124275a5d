"""Search tasks and their event logs, in the state store, so any instance can
serve any task: memory by default, Redis when shared. Everything expires
``ttl_s`` after it was last written.

Keys (under the store's own prefix): ``search:task:<id>``, the task's JSON
(status, results, summary, ...), and the task's event log of kind
``search`` (``state/event_log.py``), each event ``{"event": name, "data":
{...}}``; its cancel flag is set when the last reader left (the runner
stops). The one instance running a task is its log's only writer.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from interlock.state import StateStore
from interlock.state.event_log import EventLog

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
    """Tasks by id, and each task's event log (``state/event_log.py``)."""

    def __init__(self, state: StateStore, ttl_s: float):
        self._state = state
        self.ttl_s = ttl_s
        self._log = EventLog(state, "search", ttl_s)

    async def save(self, task: SearchTask) -> None:
        await self._state.set(
            f"search:task:{task.task_id}", orjson.dumps(_stored(task)), self.ttl_s
        )

    async def load(self, task_id: str) -> SearchTask | None:
        raw = await self._state.get(f"search:task:{task_id}")
        return SearchTask.from_json(raw) if raw is not None else None

    async def append(self, task_id: str, event: str, data: dict[str, Any]) -> int:
        return await self._log.append(task_id, orjson.dumps({"event": event, "data": data}))

    async def read(self, task_id: str, after: int) -> list[SearchEvent]:
        """The events after event ``after`` that are written, in order."""
        events = []
        for n, payload in await self._log.read(task_id, after):
            stored = orjson.loads(payload)
            events.append(SearchEvent(n, stored["event"], stored["data"]))
        return events

    async def wait(self, task_id: str, timeout_s: float) -> None:
        """Until this instance appends to ``task_id``, or ``timeout_s``."""
        await self._log.wait(task_id, timeout_s)

    def forget(self, task_id: str) -> None:
        """No reader on this instance waits on ``task_id`` any more."""
        self._log.forget(task_id)

    async def subscribe(self, task_id: str, delta: int) -> int:
        """Count a reader in (+1) or out (-1); the readers now."""
        return await self._log.subscribe(task_id, delta)

    async def cancel(self, task_id: str) -> None:
        await self._log.cancel(task_id)

    async def cancelled(self, task_id: str) -> bool:
        return await self._log.cancelled(task_id)


def _stored(task: SearchTask) -> dict[str, Any]:
    body = asdict(task)
    body["status"] = str(task.status)
    return body
