"""Stored chat completions: ``store: true`` on ``POST /v1/chat/completions``
keeps the completion for the key that asked (``store/chat_completions.py``),
and these routes read it back, as OpenAI's do:

    GET    /v1/chat/completions                 list (model, metadata[k]=v, after, limit, order)
    GET    /v1/chat/completions/{id}            the completion, with its metadata
    POST   /v1/chat/completions/{id}            {"metadata": {...}}: replace the metadata
    DELETE /v1/chat/completions/{id}
    GET    /v1/chat/completions/{id}/messages   the request's messages (after, limit, order)

The gateway is the store: ``store`` is not sent upstream, so a completion is
kept here and not also at the provider. A stored stream is the completion
its chunks add up to, written before ``[DONE]``; its usage is the request
record's when the client asked for none.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ConfigDict, TypeAdapter, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.services import Services
from interlock.api.sse import OpenAIEvents
from interlock.api.wire import (
    caller_name,
    int_param,
    json_response,
    list_response,
    read_json_object,
)
from interlock.cache.accumulate import merge_tool_call
from interlock.errors import InterlockError, InvalidRequest, NotFound
from interlock.pipeline.schemas import Metadata
from interlock.redaction import Redactor
from interlock.store import ChatCompletionStore, StoredChatCompletion
from interlock.telemetry.record import RequestRecord

__all__ = ["StoringEvents", "keeper", "list_completions", "stored_completion_route"]

log = logging.getLogger("interlock.chat")

JSONDict = dict[str, Any]
# Stores a finished completion.
Keep = Callable[[JSONDict], Awaitable[None]]

_PREFIX = "/v1/chat/completions/"
_MAX_LIST = 100
# The chat schema's own bounds, checked here because ``metadata`` leaves the
# body before the pipeline validates it.
_METADATA: TypeAdapter[dict[str, str] | None] = TypeAdapter(
    Metadata | None, config=ConfigDict(strict=True)
)


def _store(services: Services) -> ChatCompletionStore:
    return services.records.get().chat_completions  # 503 while the store is not open


def keeper(request: Request, services: Services, body: JSONDict) -> Keep:
    """What stores this request's completion once it is answered. ``store``
    and ``metadata`` leave the body here: the gateway keeps the completion,
    the upstream not (OpenAI takes ``metadata`` only with ``store``)."""
    key_name = caller_name(request, services)  # a bad key is answered before a bad body
    store = _store(services)
    metadata = _checked_metadata(body.get("metadata"), "metadata")
    body.pop("store", None)
    body.pop("metadata", None)
    messages = body.get("messages") or []
    asked_model = str(body.get("model") or "")
    retention_s = services.chat_completions.retention_s

    async def keep(completion: JSONDict) -> None:
        now = time.time()
        record = StoredChatCompletion(
            id=str(completion.get("id") or ""),
            key_name=key_name,
            # Listed in the order stored: milliseconds, as a second holds many.
            created_at=int(now * 1000),
            expires_at=int(now) + retention_s,
            model=asked_model,  # what ``list(model=...)`` filters by: the name asked for
            metadata=metadata,
            messages=messages,
            completion=completion,
        )
        try:
            await store.save(record)
        except (SQLAlchemyError, sqlite3.Error) as exc:  # the answer is paid for: send it
            log.error("could not store chat completion %s", record.id, exc_info=exc)

    return keep


class StoringEvents:
    """OpenAI's stream (``OpenAIEvents``), and the completion its chunks add
    up to stored before ``[DONE]``."""

    __slots__ = ("_events", "_keep", "_record", "_sum")

    def __init__(self, redactor: Redactor, record: RequestRecord, keep: Keep):
        self._events = OpenAIEvents(redactor)
        self._record = record
        self._keep = keep
        self._sum = _ChunkSum()

    def opening(self) -> bytes:
        return b""

    def heartbeat(self) -> bytes:
        return self._events.heartbeat()

    def feed(self, chunk: bytes) -> bytes:
        self._sum.feed(chunk)
        return self._events.feed(chunk)

    async def finish(self) -> bytes:
        completion = self._sum.completion(self._record.usage)
        if completion is not None:
            await self._keep(completion)
        return await self._events.finish()

    def error(self, exc: InterlockError, message: str) -> bytes:
        return self._events.error(exc, message)  # a broken answer is not stored


@dataclass(slots=True)
class _Choice:
    content: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    tool_calls: dict[int, JSONDict] = field(default_factory=dict)
    logprobs: list[JSONDict] | None = None
    finish_reason: str | None = None


class _ChunkSum:
    """A streamed completion put back together from its chunks. Not the
    cache's ``StreamAccumulator``: that one gives up on a stream with
    logprobs or without a usage chunk, which a stored completion keeps (the
    usage from the record)."""

    def __init__(self) -> None:
        self._head: JSONDict | None = None
        self._choices: dict[int, _Choice] = {}
        self._usage: JSONDict | None = None

    def feed(self, chunk: bytes) -> None:
        parsed = orjson.loads(chunk)
        if self._head is None and parsed.get("id"):
            self._head = parsed
        if isinstance(parsed.get("usage"), dict):
            self._usage = parsed["usage"]
        for choice in parsed.get("choices") or ():
            partial = self._choices.setdefault(int(choice.get("index", 0)), _Choice())
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                partial.content.append(delta["content"])
            if isinstance(delta.get("refusal"), str):
                partial.refusal.append(delta["refusal"])
            for call in delta.get("tool_calls") or ():
                merge_tool_call(partial.tool_calls, call)
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
                partial.logprobs = (partial.logprobs or []) + logprobs["content"]
            if choice.get("finish_reason"):
                partial.finish_reason = choice["finish_reason"]

    def completion(self, usage: JSONDict | None) -> JSONDict | None:
        """The completion; None when the stream did not finish every choice."""
        head = self._head
        if head is None or any(c.finish_reason is None for c in self._choices.values()):
            return None
        choices = []
        for index in sorted(self._choices):
            partial = self._choices[index]
            message: JSONDict = {
                "role": "assistant",
                "content": "".join(partial.content) if partial.content else None,
                "refusal": "".join(partial.refusal) or None,
            }
            if partial.tool_calls:
                message["tool_calls"] = [partial.tool_calls[i] for i in sorted(partial.tool_calls)]
            logprobs = None if partial.logprobs is None else {"content": partial.logprobs}
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "logprobs": logprobs,
                    "finish_reason": partial.finish_reason,
                }
            )
        return {
            "id": head["id"],
            "object": "chat.completion",
            "created": head.get("created") or int(time.time()),
            "model": head.get("model"),
            "system_fingerprint": head.get("system_fingerprint"),
            "choices": choices,
            "usage": self._usage if self._usage is not None else usage,
        }


async def list_completions(request: Request, services: Services) -> ASGIApp:
    key = caller_name(request, services)
    query = request.query_params
    limit = int_param(query.get("limit"), "limit", 20, 1, _MAX_LIST)
    order = _order(query.get("order"))
    metadata = {
        name[len("metadata[") : -1]: value
        for name, value in query.multi_items()
        if name.startswith("metadata[") and name.endswith("]")
    }
    found, more = await _store(services).listing(
        key,
        limit=limit,
        after=query.get("after"),
        newest_first=order == "desc",
        model=query.get("model"),
        metadata=metadata,
    )
    return list_response([record.to_json() for record in found], more)


async def stored_completion_route(request: Request, services: Services) -> ASGIApp:
    rest = request.scope["path"].removeprefix(_PREFIX)
    completion_id, _, tail = rest.partition("/")
    method = request.method
    if tail not in ("", "messages") or (tail == "messages" and method != "GET"):
        raise NotFound(f"Unknown route {method} {request.scope['path']}.")
    key = caller_name(request, services)
    store = _store(services)
    if method == "DELETE":
        if not await store.delete(key, completion_id):
            raise _not_found(completion_id)
        return json_response(
            {"object": "chat.completion.deleted", "id": completion_id, "deleted": True}
        )
    if method == "POST":
        body = await read_json_object(request, services.max_body_bytes)
        updated = await store.update_metadata(key, completion_id, _metadata(body))
        if updated is None:
            raise _not_found(completion_id)
        return json_response(updated.to_json())
    found = await store.get(key, completion_id)
    if found is None:
        raise _not_found(completion_id)
    if tail == "messages":
        return _messages(request, found)
    return json_response(found.to_json())


def _messages(request: Request, found: StoredChatCompletion) -> ASGIApp:
    """A page of the request's messages, each with an id of its own."""
    query = request.query_params
    limit = int_param(query.get("limit"), "limit", 20, 1, _MAX_LIST)
    numbered = [
        {**message, "id": f"{found.id}-{index}"} for index, message in enumerate(found.messages)
    ]
    ordered = numbered if _order(query.get("order")) == "asc" else numbered[::-1]
    after = query.get("after")
    ids = [message["id"] for message in ordered]
    if after in ids:
        ordered = ordered[ids.index(after) + 1 :]
    return list_response(ordered[:limit], len(ordered) > limit)


def _metadata(body: JSONDict) -> dict[str, str]:
    """``{"metadata": {...}}`` (null clears it)."""
    if set(body) != {"metadata"}:
        raise InvalidRequest(
            "Only `metadata` can be updated on a stored chat completion.",
            param=next(iter(set(body) - {"metadata"}), "metadata"),
        )
    return _checked_metadata(body["metadata"], "metadata")


def _checked_metadata(value: Any, param: str) -> dict[str, str]:
    """Metadata within the chat schema's bounds (null: none)."""
    try:
        checked: dict[str, str] | None = _METADATA.validate_python(value)
    except ValidationError:
        raise InvalidRequest(
            "`metadata` must be at most 16 string pairs (keys up to 64 characters, "
            "values up to 512).",
            param=param,
        ) from None
    return checked or {}


def _order(value: str | None) -> str:
    if value not in (None, "asc", "desc"):
        raise InvalidRequest("`order` must be 'asc' or 'desc'.", param="order")
    return value or "asc"


def _not_found(completion_id: str) -> NotFound:
    return NotFound(f"Chat completion with id '{completion_id}' not found.")
