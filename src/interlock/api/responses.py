"""OpenAI's Responses API: ``POST /v1/responses``, ``GET`` and ``DELETE
/v1/responses/{id}``, ``GET /v1/responses/{id}/input_items``,
``POST /v1/responses/input_tokens``.

A thin edge (ADR 0009): the request is translated into a chat body
(``interlock.dialects.responses``), run by the one pipeline, and the chat
completion or chunks translated back into a Response or its semantic
stream events (``ResponsesEncoder``). Errors keep OpenAI's shape.

With ``store`` (the default) the finished Response and the conversation
that led to it are kept in the records store for ``responses.retention_days``,
for the key that made it alone: another key's, an expired or an unknown id
all answer 404. ``previous_response_id`` continues a stored conversation:
its input and output items come before the new input (its ``instructions``
do not, as at OpenAI). A streamed response is stored before its last event
goes out, so a client that saw ``response.completed`` can read it back.

Background responses are refused (``background``), so every response is
finished when it is created: cancelling one, or retrieving one as a stream
(both for background responses at OpenAI), answers 400 saying so.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from interlock.api.responses_sse import ResponsesEncoder
from interlock.api.services import Services
from interlock.api.sse import EventStream
from interlock.api.wire import (
    caller_name,
    check_model_use,
    int_param,
    json_response,
    list_response,
    read_json_object,
    request_record,
    translated_request,
)
from interlock.dialects.responses.answer import new_id, response_shell, to_response
from interlock.dialects.responses.request import chat_body, stored_input
from interlock.dialects.responses.schemas import InputItem, input_items, validate_request
from interlock.dialects.responses.stream import ResponseEvents
from interlock.errors import InterlockError, InvalidRequest, NotFound
from interlock.pipeline import ChatStream
from interlock.store import ResponseStore, StoredResponse
from interlock.tokens import count_chat_request

__all__ = ["count_input_tokens", "create_response", "response_route"]

log = logging.getLogger("interlock.responses")

JSONDict = dict[str, Any]

_PREFIX = "/v1/responses/"
_MAX_LIST = 100
DIALECT = "responses"  # in the cache key: a chat answer is cached apart
# What the chat body calls a Responses parameter: an error about one (from a
# deployment that cannot honour it) names the client's instead.
_CLIENT_PARAMS = {
    "logprobs": "include",
    "max_completion_tokens": "max_output_tokens",
    "response_format": "text.format",
    "verbosity": "text.verbosity",
    "reasoning_effort": "reasoning.effort",
}


def _store(services: Services) -> ResponseStore:
    return services.records.get().responses  # 503 while the store is not open


async def create_response(request: Request, services: Services) -> ASGIApp:
    body = await read_json_object(request, services.max_body_bytes)
    try:
        asked = validate_request(body)
        store = _store(services) if asked.store is not False else None
        history: list[JSONDict] = []
        if asked.previous_response_id is not None:
            history = await _history(request, services, asked.previous_response_id)
        items: list[InputItem] = input_items(history) if history else []
        chat = chat_body(asked, items)
    except InvalidRequest:
        # The pipeline answers a bad key before a bad body (ADR 0009); this
        # body failed before reaching it, so the key is checked here first.
        caller_name(request, services)
        raise
    shell = response_shell(asked, new_id("resp"), int(time.time()))
    try:
        answer = await services.pipeline.run(
            translated_request(request, chat, DIALECT, checked=True)
        )
    except InterlockError as exc:
        exc.param = _CLIENT_PARAMS.get(exc.param or "", exc.param)
        raise
    keep = None
    if store is not None:
        conversation = history + stored_input(asked, new_id)
        key_name = request_record(request).key_name or caller_name(request, services)
        keep = _Keeper(store, key_name, conversation, services.responses.retention_s)
    if isinstance(answer, ChatStream):
        encoder = ResponsesEncoder(ResponseEvents(shell), request_record(request), keep)
        return EventStream(answer, encoder, services.redactor)
    response = to_response(shell, answer)
    written = orjson.dumps(response)
    if keep is not None:
        await keep(response, written)
    return Response(written, media_type="application/json")


async def count_input_tokens(request: Request, services: Services) -> ASGIApp:
    """The tokens the model would read for this request (its input, the
    stored conversation it continues, instructions and tools), counted by
    the gateway's tokenizer after the same translation as ``create_response``:
    authenticated, no model called, no limit spent."""
    body = await read_json_object(request, services.max_body_bytes)
    principal = services.pipeline.admission.identify(
        request.headers.get("authorization"), request_record(request)
    )
    asked = validate_request(body)
    check_model_use(services, principal, asked.model)
    history: list[JSONDict] = []
    if asked.previous_response_id is not None:
        history = await _history(request, services, asked.previous_response_id)
    chat = chat_body(asked, input_items(history) if history else [])
    tokens = await count_chat_request(services.counter, chat)
    return json_response({"object": "response.input_tokens", "input_tokens": tokens})


async def _history(request: Request, services: Services, response_id: str) -> list[JSONDict]:
    """The stored conversation ``response_id`` continues: its items, then its output."""
    found = await _store(services).get(caller_name(request, services), response_id)
    if found is None:
        raise NotFound(
            f"Previous response with id '{response_id}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return [*found.input_items, *found.response.get("output", ())]


@dataclass(frozen=True, slots=True)
class _Keeper:
    """Stores a finished Response with the conversation that led to it."""

    store: ResponseStore
    key_name: str
    conversation: list[JSONDict]
    retention_s: int

    async def __call__(self, response: JSONDict, response_json: bytes) -> None:
        created = int(response["created_at"])
        record = StoredResponse(
            id=response["id"],
            key_name=self.key_name,
            created_at=created,
            expires_at=created + self.retention_s,
            input_items=self.conversation,
            response=response,
            response_json=response_json,
        )
        try:
            await self.store.save(record)
        except (SQLAlchemyError, sqlite3.Error) as exc:  # sqlite3: the SQLite batch writer
            # The answer is paid for and on its way: the client gets it, and
            # reading it back will 404. Loud in the log, not a lost answer.
            log.error("could not store response %s", record.id, exc_info=exc)


# The (method, what follows the id) pairs this route answers.
_ROUTES = {("GET", ""), ("DELETE", ""), ("GET", "input_items"), ("POST", "cancel")}


async def response_route(request: Request, services: Services) -> ASGIApp:
    rest = request.scope["path"].removeprefix(_PREFIX)
    response_id, _, tail = rest.partition("/")
    method = request.method
    if (method, tail) not in _ROUTES:
        raise NotFound(f"Unknown route {method} {request.scope['path']}.")
    key = caller_name(request, services)
    store = _store(services)
    if method == "DELETE":
        if not await store.delete(key, response_id):
            raise _not_found(response_id)
        return json_response({"id": response_id, "object": "response", "deleted": True})
    found = await store.get(key, response_id)
    if found is None:
        raise _not_found(response_id)
    if tail == "cancel":
        raise InvalidRequest(
            "Only background responses can be cancelled, and this gateway runs none: "
            f"response '{response_id}' finished when it was created."
        )
    if tail:
        return _input_items(request, found.input_items)
    if request.query_params.get("stream") in ("true", "1"):
        raise InvalidRequest(
            "Retrieving a response as a stream is for background responses, and this "
            "gateway runs none: retrieve it without `stream`.",
            param="stream",
        )
    return json_response(found.response)


def _input_items(request: Request, items: list[JSONDict]) -> ASGIApp:
    """A page of the conversation's items (OpenAI's default order: newest first)."""
    query = request.query_params
    limit = int_param(query.get("limit"), "limit", 20, 1, _MAX_LIST)
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("`order` must be 'asc' or 'desc'.", param="order")
    ordered = items if order == "asc" else items[::-1]
    after = query.get("after")
    if after is not None:
        ids = [item.get("id") for item in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else ordered
    return list_response(ordered[:limit], len(ordered) > limit)


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.")
