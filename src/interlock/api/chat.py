"""``POST /v1/chat/completions``: OpenAI's Chat Completions, the pipeline's own
shape. A JSON answer, or server-sent events when the body asks to stream;
with ``store: true`` the completion is kept for the key (``chat_store.py``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.batches import async_job
from interlock.api.chat_store import StoringEvents, keeper
from interlock.api.file_inputs import inline_file_ids, names_file_ids
from interlock.api.services import Services
from interlock.api.sse import EventStream, OpenAIEvents
from interlock.api.wire import json_response, model_request, request_record
from interlock.pipeline import ChatStream, Operation

__all__ = ["chat_completions"]


async def chat_completions(request: Request, services: Services) -> ASGIApp:
    asked = await model_request(request, services, Operation.CHAT)
    if asked.body.get("async") is True:  # a job of one request, answered 202
        return await async_job(request, services, asked.body, "/v1/chat/completions")
    if names_file_ids(asked.body.get("messages")):  # documents uploaded to /v1/files
        await inline_file_ids(request, services, asked.body["messages"])
    # Kept by the gateway for the key (``api/chat_store.py``).
    keep = keeper(request, services, asked.body) if asked.body.get("store") is True else None
    answer = await services.pipeline.run(asked)
    if isinstance(answer, ChatStream):
        if keep is None:
            return EventStream(answer, OpenAIEvents(services.redactor), services.redactor)
        encoder = StoringEvents(services.redactor, request_record(request), keep)
        return EventStream(answer, encoder, services.redactor)
    if keep is not None:
        await keep(answer)
    return json_response(answer)
