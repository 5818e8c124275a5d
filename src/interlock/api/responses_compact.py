"""``POST /v1/responses/compact``: a conversation compacted to its user
messages and one ``compaction`` item (``dialects/responses/compaction.py``).

The summary is one chat call through the pipeline, so the key's limits,
budgets, guardrails, routing and the ledger apply to it as to any request.
Nothing is stored: the client sends the output back as the input of its
next request.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.item_references import resolved
from interlock.api.responses import DIALECT, previous_items
from interlock.api.services import Services
from interlock.api.wire import caller_name, json_response, read_json_object, translated_request
from interlock.dialects.responses.answer import new_id, usage_of
from interlock.dialects.responses.compaction import (
    compact_body,
    compaction_item,
    request_items,
    summary_of,
    user_messages,
)
from interlock.dialects.responses.request import stored_items
from interlock.dialects.responses.schemas import (
    CompactRequest,
    ItemReference,
    input_items,
    validate_body,
)
from interlock.errors import InvalidRequest

__all__ = ["compact_response"]


async def compact_response(request: Request, services: Services) -> ASGIApp:
    body = await read_json_object(request, services.max_body_bytes)
    try:
        asked = validate_body(CompactRequest, body)
        if asked.input is None and asked.previous_response_id is None:
            raise InvalidRequest(
                "Give the conversation to compact: 'input', 'previous_response_id' or both.",
                param="input",
                code="missing_required_parameter",
            )
        if isinstance(asked.input, list) and any(
            isinstance(item, ItemReference) for item in asked.input
        ):
            asked = asked.model_copy(
                update={"input": await resolved(request, services, asked.input)}
            )
        history = []
        if asked.previous_response_id is not None:
            history = await previous_items(request, services, asked.previous_response_id)
        chat = compact_body(asked, input_items(history) if history else [])
    except InvalidRequest:
        caller_name(request, services)  # a bad key is answered before a bad body
        raise
    answer = await services.pipeline.run(translated_request(request, chat, DIALECT, checked=True))
    assert isinstance(answer, dict)  # the body asks for no stream
    summary = summary_of(answer)
    kept = user_messages([*history, *stored_items(request_items(asked), new_id)])
    return json_response(
        {
            "id": new_id("resp"),
            "object": "response.compaction",
            "created_at": int(time.time()),
            "output": [*kept, compaction_item(new_id("cmp"), summary)],
            "usage": usage_of(answer.get("usage")),
        }
    )
