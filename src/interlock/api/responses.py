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
do not, as at OpenAI). ``conversation`` names a conversation of the
Conversations API instead (``api/conversations.py``): its items come first,
and the new input and the output are added to it once the response is
finished, whether or not the response is stored. A streamed response is
stored (and added) before its last event goes out, so a client that saw
``response.completed`` can read it back.

``background: true`` runs the response on the batch workers and answers it
``queued`` (``api/background_responses.py``); it can be polled and
cancelled. With ``stream: true`` too, it runs at once on this instance and
its events are logged, to be read again from any point
(``GET /v1/responses/{id}?stream=true&starting_after=N``,
``api/background_streams.py``). Any other response has finished when it is
created: cancelling it answers 400 saying so, and retrieving it as a stream
too.
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

from interlock.api.background_responses import (
    cancel_background,
    is_running,
    start_background,
    start_streamed,
    streamed_again,
    with_job_state,
)
from interlock.api.conversations import conversation_full
from interlock.api.file_inputs import inline_file_ids, names_file_ids
from interlock.api.item_references import with_referenced
from interlock.api.responses_compaction import compact_if_due, summarised, summary_request
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
from interlock.dialects.responses.answer import (
    fresh_item_id,
    new_id,
    response_shell,
    to_response,
)
from interlock.dialects.responses.conversation_state import in_effect
from interlock.dialects.responses.request import (
    CLIENT_PARAMS,
    chat_body,
    conversation_items,
    stored_input,
)
from interlock.dialects.responses.schemas import (
    InputItem,
    ResponsesRequest,
    input_items,
    validate_request,
)
from interlock.dialects.responses.stream import ResponseEvents
from interlock.errors import InterlockError, InvalidRequest, NotFound
from interlock.pipeline import ChatStream
from interlock.store import ConversationStore, ResponseStore, StoredResponse
from interlock.tokens import count_chat_request

__all__ = [
    "DIALECT",
    "count_input_tokens",
    "create_response",
    "previous_items",
    "response_route",
]

log = logging.getLogger("interlock.responses")

JSONDict = dict[str, Any]

_PREFIX = "/v1/responses/"
# A stream written whole (``_compact_now``): as ``EventStream``'s, unbuffered.
_SSE = {"cache-control": "no-cache", "x-accel-buffering": "no"}
_MAX_LIST = 100
DIALECT = "responses"  # in the cache key: a chat answer is cached apart


def _store(services: Services) -> ResponseStore:
    return services.records.get().responses  # 503 while the store is not open


async def create_response(request: Request, services: Services) -> ASGIApp:
    body = await read_json_object(request, services.max_body_bytes)
    try:
        asked = validate_request(body)
        if asked.references:  # earlier output, by id: the items themselves
            asked = await with_referenced(request, services, asked)
        store = _store(services) if asked.store is not False else None
        history: list[JSONDict] = []
        if asked.previous_response_id is not None or asked.conversation is not None:
            history = await _context(request, services, asked)
        items: list[InputItem] = input_items(history) if history else []
        asked = in_effect(asked, items)
        done: list[JSONDict] = []  # output items made before the answer
        if asked.compaction_triggered:  # the summary is all that is asked for
            chat = summary_request(asked, items)
        else:
            chat = chat_body(asked, items)
            if asked.compaction is not None:  # the usual request awaits nothing here
                compaction = await compact_if_due(request, services, asked, items, chat, DIALECT)
                if compaction is not None:
                    chat, done = compaction.chat, [compaction.item]
        if names_file_ids(chat["messages"]):  # documents uploaded to /v1/files
            await inline_file_ids(request, services, chat["messages"], "input")
    except InvalidRequest:
        # The pipeline answers a bad key before a bad body (ADR 0009); this
        # body failed before reaching it, so the key is checked here first.
        caller_name(request, services)
        raise
    if asked.compaction_triggered:
        return await _compact_now(request, services, asked, chat, history, store)
    if asked.background and asked.stream:
        return await start_streamed(request, services, _store(services), asked, chat, history, done)
    if asked.background:
        return await start_background(
            request, services, _store(services), asked, chat, history, done
        )
    shell = response_shell(asked, new_id("resp"), int(time.time()), done)
    try:  # not in a function of its own: a coroutine more on every request
        answer = await services.pipeline.run(
            translated_request(request, chat, DIALECT, checked=True)
        )
    except InterlockError as exc:
        exc.param = CLIENT_PARAMS.get(exc.param or "", exc.param)
        raise
    keep = _keeper(request, services, asked, history, store)
    if isinstance(answer, ChatStream):
        encoder = ResponsesEncoder(ResponseEvents(shell), request_record(request), keep)
        return EventStream(answer, encoder, services.redactor)
    response = to_response(shell, answer)
    written = orjson.dumps(response)
    if keep is not None:
        await keep(response, written)
    return Response(written, media_type="application/json")


async def _compact_now(
    request: Request,
    services: Services,
    asked: ResponsesRequest,
    chat: JSONDict,
    history: list[JSONDict],
    store: ResponseStore | None,
) -> ASGIApp:
    """A ``compaction_trigger``'s Response: the summary (``chat`` asks for
    it) is the request's own model call, its output the compaction alone,
    streamed whole or answered as JSON. The trigger is a signal, not an
    item of the conversation: what is kept is the input before it."""
    answer = await services.pipeline.run(translated_request(request, chat, DIALECT, checked=True))
    assert isinstance(answer, dict)  # the body asks for no stream
    made = summarised(answer)
    asked = asked.model_copy(update={"input": asked.input[:-1]})
    shell = response_shell(asked, new_id("resp"), int(time.time()), [made.item])
    keep = _keeper(request, services, asked, history, store)
    events = ResponseEvents(shell)
    opening = events.start() if asked.stream else b""
    closing = events.finish_unanswered(made.usage)
    assert events.response is not None
    if keep is not None:
        await keep(events.response, events.response_json)
    if not asked.stream:
        return Response(events.response_json, media_type="application/json")
    return Response(opening + closing, headers=_SSE, media_type="text/event-stream")


def _keeper(
    request: Request,
    services: Services,
    asked: ResponsesRequest,
    history: list[JSONDict],
    store: ResponseStore | None,
) -> _Keeper | None:
    """What keeps the finished Response, where it is to be kept."""
    conversation_id = asked.conversation_id
    if store is None and conversation_id is None:
        return None
    return _Keeper(
        request_record(request).key_name or caller_name(request, services),
        history,
        stored_input(asked, new_id),
        store,
        services.responses.retention_s,
        _conversations(services) if conversation_id is not None else None,
        conversation_id,
    )


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
    if asked.references:
        asked = await with_referenced(request, services, asked)
    history = await _context(request, services, asked)
    items = input_items(history) if history else []
    chat = chat_body(in_effect(asked, items), items)
    tokens = await count_chat_request(services.counter, chat)
    return json_response({"object": "response.input_tokens", "input_tokens": tokens})


def _conversations(services: Services) -> ConversationStore:
    return services.records.get().conversations  # 503 while the store is not open


async def _context(request: Request, services: Services, asked: ResponsesRequest) -> list[JSONDict]:
    """The stored items the request continues: a previous response's or a
    conversation's (never both: ``validate_request``)."""
    if asked.previous_response_id is not None:
        return await previous_items(request, services, asked.previous_response_id)
    conversation_id = asked.conversation_id
    if conversation_id is None:
        return []
    key = caller_name(request, services)
    found = await _conversations(services).all_items(key, conversation_id)
    if found is None:
        raise NotFound(
            f"Conversation with id '{conversation_id}' not found.",
            param="conversation",
            code="conversation_not_found",
        )
    limit = services.responses.max_conversation_items
    if len(found) >= limit:
        # Checked before the model runs; the turn's own items may then take
        # the conversation past the limit by that much, once.
        raise conversation_full(conversation_id, len(found), limit)
    return found


async def previous_items(request: Request, services: Services, response_id: str) -> list[JSONDict]:
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
    """Keeps a finished Response: stored with the conversation that led to
    it (``store``), and its input and output added to its conversation of
    the Conversations API (``conversation_id``)."""

    key_name: str
    history: list[JSONDict]  # the stored items it continues
    new_input: list[JSONDict]  # the request's input, as stored items
    store: ResponseStore | None
    retention_s: int
    conversations: ConversationStore | None
    conversation_id: str | None

    async def __call__(self, response: JSONDict, response_json: bytes) -> None:
        # Either failure leaves the answer paid for and on its way: the client
        # gets it, and what was not kept is loud in the log, not a lost answer.
        if self.store is not None:
            await self._store(self.store, response, response_json)
        if self.conversations is not None and self.conversation_id is not None:
            await self._add_to_conversation(self.conversations, self.conversation_id, response)

    async def _store(self, store: ResponseStore, response: JSONDict, written: bytes) -> None:
        created = int(response["created_at"])
        record = StoredResponse(
            id=response["id"],
            key_name=self.key_name,
            created_at=created,
            expires_at=created + self.retention_s,
            input_items=self.history + self.new_input,
            response=response,
            response_json=written,
        )
        try:
            await store.save(record)
        except (SQLAlchemyError, sqlite3.Error) as exc:  # sqlite3: the SQLite batch writer
            log.error("could not store response %s", record.id, exc_info=exc)

    async def _add_to_conversation(
        self, conversations: ConversationStore, conversation_id: str, response: JSONDict
    ) -> None:
        items = conversation_items([*self.new_input, *response.get("output", ())])
        try:
            added = await conversations.append(self.key_name, conversation_id, items, fresh_item_id)
        except SQLAlchemyError as exc:
            log.error(
                "could not add response %s to conversation %s",
                response["id"],
                conversation_id,
                exc_info=exc,
            )
            return
        if added is None:  # deleted while the model answered
            log.warning(
                "conversation %s is gone; response %s was not added to it",
                conversation_id,
                response["id"],
            )


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
    found = await store.get(key, response_id)
    if found is None:
        raise _not_found(response_id)
    response = found.response
    if method == "DELETE":
        if is_running(response):  # nobody will read it: stop its work
            await cancel_background(services, store, key, response)
        if not await store.delete(key, response_id):
            raise _not_found(response_id)
        return json_response({"id": response_id, "object": "response", "deleted": True})
    if tail == "cancel":
        if response.get("background") is not True:
            raise InvalidRequest(
                "Only background responses can be cancelled: "
                f"response '{response_id}' finished when it was created."
            )
        return json_response(await cancel_background(services, store, key, response))
    if tail:
        return _input_items(request, found.input_items)
    if request.query_params.get("stream") in ("true", "1"):
        after = request.query_params.get("starting_after")
        starting_after = None if after is None else int_param(after, "starting_after", 0, 0, 10**9)
        return await streamed_again(services, store, key, response, starting_after)
    if is_running(response):
        response = await with_job_state(services, store, key, response)
    return json_response(response)


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
