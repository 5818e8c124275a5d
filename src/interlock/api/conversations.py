"""OpenAI's Conversations API: ``POST /v1/conversations``; ``GET``,
``POST`` (metadata) and ``DELETE /v1/conversations/{id}``; ``GET`` and
``POST /v1/conversations/{id}/items``; ``GET`` and ``DELETE
/v1/conversations/{id}/items/{item_id}``.

A conversation is durable state for the Responses API: a response created
with ``conversation`` reads its items as context and adds its input and
output to it (``api/responses.py``). Conversations live in the records
store (``store/conversations.py``), belong to the key that created them
(another key's id answers 404, as an unknown one), and are kept until
deleted. Items are Responses input items, validated by the same schema as
``/v1/responses`` input, at most 20 per call; each gets an id and a
``status``. ``include`` on the item routes is accepted and changes nothing:
what it asks for are outputs of tools this gateway does not run.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.item_references import resolved
from interlock.api.services import Services
from interlock.api.wire import (
    caller_name,
    int_param,
    json_response,
    list_response,
    read_json_object,
)
from interlock.dialects.responses.answer import fresh_item_id, new_id
from interlock.dialects.responses.request import conversation_items, stored_items
from interlock.dialects.responses.schemas import (
    CompactionTrigger,
    ConversationCreate,
    ConversationItemsCreate,
    ConversationUpdate,
    InputItem,
    ItemReference,
    validate_body,
)
from interlock.errors import InvalidRequest, NotFound
from interlock.store import ConversationFull, ConversationStore, StoredConversation

__all__ = ["conversation_full", "conversation_route", "create_conversation"]

ROOT = "/v1/conversations"
_MAX_LIST = 100


def _store(services: Services) -> ConversationStore:
    return services.records.get().conversations  # 503 while the store is not open


async def _items(
    request: Request, services: Services, items: list[InputItem] | None
) -> list[dict[str, Any]]:
    """Items to add, as the conversation keeps them: a reference replaced by
    the item it names (``item_references.py``); a compaction trigger, which
    asks a response for something, is no item to keep."""
    items = list(items or ())
    for index, item in enumerate(items):
        if isinstance(item, CompactionTrigger):
            raise InvalidRequest(
                "A 'compaction_trigger' asks a response to compact; it is not an item of "
                "a conversation.",
                param=f"items[{index}]",
                code="invalid_value",
            )
    if any(isinstance(item, ItemReference) for item in items):
        items = await resolved(request, services, items, param="items")
    return conversation_items(stored_items(items, new_id))


async def create_conversation(request: Request, services: Services) -> ASGIApp:
    key = caller_name(request, services)
    asked = validate_body(
        ConversationCreate, await read_json_object(request, services.max_body_bytes)
    )
    items, conversation_id = await _items(request, services, asked.items), new_id("conv")
    limit = services.responses.max_conversation_items
    if len(items) > limit:
        raise conversation_full(conversation_id, 0, limit)
    conversation, _ = await _store(services).create(
        conversation_id, key, asked.metadata or {}, items, fresh_item_id
    )
    return json_response(conversation.to_json())


async def conversation_route(request: Request, services: Services) -> ASGIApp:
    conversation_id, _, rest = request.scope["path"].removeprefix(ROOT + "/").partition("/")
    collection, _, item_id = rest.partition("/")
    key = caller_name(request, services)
    store = _store(services)
    method = request.method
    if collection == "" and method in ("GET", "POST", "DELETE"):
        return await _conversation(request, services, store, key, conversation_id)
    if collection == "items" and not item_id and method in ("GET", "POST"):
        return await _item_list(request, services, store, key, conversation_id)
    if collection == "items" and item_id and "/" not in item_id and method in ("GET", "DELETE"):
        return await _one_item(method, store, key, conversation_id, item_id)
    raise NotFound(f"Unknown route {method} {request.scope['path']}.")


async def _conversation(
    request: Request, services: Services, store: ConversationStore, key: str, found_id: str
) -> ASGIApp:
    if request.method == "DELETE":
        if not await store.delete(key, found_id):
            raise _not_found(found_id)
        return json_response({"id": found_id, "object": "conversation.deleted", "deleted": True})
    if request.method == "POST":
        body = await read_json_object(request, services.max_body_bytes)
        asked = validate_body(ConversationUpdate, body)
        updated = await store.update_metadata(key, found_id, asked.metadata)
        return json_response(_found(updated, found_id).to_json())
    return json_response(_found(await store.get(key, found_id), found_id).to_json())


async def _item_list(
    request: Request, services: Services, store: ConversationStore, key: str, found_id: str
) -> ASGIApp:
    if request.method == "POST":
        body = await read_json_object(request, services.max_body_bytes)
        asked = validate_body(ConversationItemsCreate, body).items
        limit = services.responses.max_conversation_items
        try:
            items = await _items(request, services, asked)
            added = await store.append(key, found_id, items, fresh_item_id, limit)
        except ConversationFull as full:
            raise conversation_full(found_id, full.held, full.limit) from None
        if added is None:
            raise _not_found(found_id)
        return list_response(added, False)
    query = request.query_params
    limit = int_param(query.get("limit"), "limit", 20, 1, _MAX_LIST)
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("`order` must be 'asc' or 'desc'.", param="order")
    page = await store.page(
        key, found_id, limit=limit, after=query.get("after"), newest_first=order == "desc"
    )
    if page is None:
        raise _not_found(found_id)
    items, more = page
    return list_response(items, more)


async def _one_item(
    method: str, store: ConversationStore, key: str, found_id: str, item_id: str
) -> ASGIApp:
    if method == "DELETE":
        if not await store.delete_item(key, found_id, item_id):
            await _found_or_raise(store, key, found_id)
            raise _item_not_found(item_id)
        return json_response(_found(await store.get(key, found_id), found_id).to_json())
    item = await store.item(key, found_id, item_id)
    if item is None:
        await _found_or_raise(store, key, found_id)
        raise _item_not_found(item_id)
    return json_response(item)


async def _found_or_raise(store: ConversationStore, key: str, found_id: str) -> None:
    _found(await store.get(key, found_id), found_id)


def _found(conversation: StoredConversation | None, found_id: str) -> StoredConversation:
    if conversation is None:
        raise _not_found(found_id)
    return conversation


def conversation_full(conversation_id: str, held: int, limit: int) -> InvalidRequest:
    return InvalidRequest(
        f"Conversation '{conversation_id}' holds {held:,} items and may hold at most "
        f"{limit:,} (responses.max_conversation_items): start a new conversation.",
        param="conversation",
        code="conversation_full",
    )


def _not_found(conversation_id: str) -> NotFound:
    return NotFound(
        f"Conversation with id '{conversation_id}' not found.", code="conversation_not_found"
    )


def _item_not_found(item_id: str) -> NotFound:
    return NotFound(f"Item with id '{item_id}' not found.", code="item_not_found")
