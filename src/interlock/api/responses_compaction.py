"""Server-side compaction for ``POST /v1/responses`` (``context_management``).

A request with ``context_management: [{"type": "compaction",
"compact_threshold": N}]`` whose context (the conversation it continues,
its instructions, tools and input, as the model would read them) counts at
least N tokens is compacted before the model answers: the model that serves
it summarises the conversation (a chat call of its own through the
pipeline, ``side_calls.py``, as ``/v1/responses/compact`` makes), and then
answers from the messages compaction keeps and the summary. The Response's
output starts with that ``compaction`` item, so a client chaining its input
keeps it, and one chaining ``previous_response_id`` continues from it: the
translation reads only what compaction keeps before a conversation's latest
compaction item (``request.latest_compaction``).

The gateway compacts for every upstream, OpenAI's included: the item is its
own (``compaction.py``), readable by any model a later turn is routed to.
It compacts before the call, not during it, since the gateway runs no
server-side tool loop in which a context could grow past the threshold.
A conversation that holds nothing compaction would shorten (its user
messages alone) is sent as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from interlock.api.services import Services
from interlock.api.wire import request_options, request_record
from interlock.dialects.responses.answer import new_id
from interlock.dialects.responses.compaction import (
    compactable,
    compacted,
    compaction_item,
    summary_body,
    summary_of,
)
from interlock.dialects.responses.request import chat_body, request_items
from interlock.dialects.responses.schemas import InputItem, ResponsesRequest
from interlock.tokens import count_chat_request

__all__ = [
    "COMPACTION_ROUTE",
    "Compacted",
    "Summary",
    "compact_if_due",
    "summarised",
    "summary_request",
]

JSONDict = dict[str, Any]

# How the summary call is named in the access log and the metrics.
COMPACTION_ROUTE = "/v1/responses/compact"


@dataclass(frozen=True, slots=True)
class Compacted:
    chat: JSONDict  # the request's chat body, from the compacted conversation
    item: JSONDict  # the ``compaction`` output item


@dataclass(frozen=True, slots=True)
class Summary:
    item: JSONDict  # the ``compaction`` output item
    usage: JSONDict | None  # the summary call's, as chat reports it


def summary_request(asked: ResponsesRequest, history: Sequence[InputItem]) -> JSONDict:
    """The chat body asking for the summary of the conversation: the stored
    ``history``, then the request's input."""
    items = [*history, *request_items(asked)]
    return summary_body(asked.model, asked.instructions, items, start=-len(history))


def summarised(answer: JSONDict) -> Summary:
    """The compaction a summary call's chat completion makes."""
    return Summary(compaction_item(new_id("cmp"), summary_of(answer)), answer.get("usage"))


async def compact_if_due(
    request: Request,
    services: Services,
    asked: ResponsesRequest,
    history: Sequence[InputItem],
    chat: JSONDict,
    dialect: str,
) -> Compacted | None:
    """The request compacted, where it asks for compaction and its context
    (``chat``, after the stored ``history``) reaches the threshold."""
    wish = asked.compaction
    if wish is None:
        return None
    items = [*history, *request_items(asked)]
    if not compactable(items):
        return None
    threshold = wish.compact_threshold or services.responses.compact_threshold
    if await count_chat_request(services.counter, chat) < threshold:
        return None
    answer = await services.side_calls.chat(
        request_record(request),
        COMPACTION_ROUTE,
        summary_request(asked, history),
        request.headers.get("authorization"),
        request_options(request, dialect),
    )
    item = summarised(answer).item
    rest = asked.model_copy(update={"input": compacted(items, item)})
    return Compacted(chat_body(rest), item)
