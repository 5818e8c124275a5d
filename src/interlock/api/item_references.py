"""``item_reference`` input items: an item of a stored Response, by its id.

The AI SDK (``@ai-sdk/openai``, under opencode and many apps), with
``store`` on as it is by default, sends the earlier turns' output items
(reasoning, function calls, messages) back as ``{"type": "item_reference",
"id": ...}`` instead of the items themselves. An output item's id names its
Response and its place in the output (``answer.item_id``), so the edge puts
each referenced item in its reference's place with one lookup of a Response
the same key stored, once per Response however many of its items are named.
A reference the key cannot read (another key's Response, an expired one,
one created with ``store: false``, an id this gateway did not make) is a
404, as OpenAI answers it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request

from interlock.api.services import Services
from interlock.api.wire import caller_name
from interlock.dialects.responses.answer import item_source
from interlock.dialects.responses.schemas import (
    InputItem,
    ItemReference,
    ResponsesRequest,
    input_items,
)
from interlock.errors import NotFound
from interlock.store import StoredResponse

__all__ = ["resolved", "with_referenced"]

JSONDict = dict[str, Any]


async def with_referenced(
    request: Request, services: Services, asked: ResponsesRequest
) -> ResponsesRequest:
    """``asked`` with the items its input references in their place."""
    assert isinstance(asked.input, list)  # a string input references nothing
    return asked.model_copy(update={"input": await resolved(request, services, asked.input)})


async def resolved(
    request: Request, services: Services, items: Sequence[InputItem], param: str = "input"
) -> list[InputItem]:
    """``items``, each reference replaced by the stored item it names."""
    store = services.records.get().responses  # 503 while the store is not open
    key = caller_name(request, services)
    responses: dict[str, StoredResponse | None] = {}
    out: list[InputItem] = []
    for index, item in enumerate(items):
        if not isinstance(item, ItemReference):
            out.append(item)
            continue
        found = None
        source = item_source(item.id)
        if source is not None:
            response_id, position = source
            if response_id not in responses:
                responses[response_id] = await store.get(key, response_id)
            found = _output_item(responses[response_id], item.id, position)
        if found is None:
            raise NotFound(
                f"Item with id '{item.id}' not found. Items are not persisted when `store` "
                "is set to false.",
                param=f"{param}[{index}]",
            )
        out += input_items([found])
    return out


def _output_item(stored: StoredResponse | None, item_id: str, position: int) -> JSONDict | None:
    output = stored.response.get("output") or () if stored is not None else ()
    if position < len(output) and output[position].get("id") == item_id:
        return dict(output[position])
    return None
