"""``POST /v1/chat/completions``: OpenAI's Chat Completions, the pipeline's own
shape. A JSON answer, or server-sent events when the body asks to stream."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.batches import async_job
from interlock.api.services import Services
from interlock.api.sse import EventStream, OpenAIEvents
from interlock.api.wire import json_response, model_request
from interlock.pipeline import ChatStream, Operation

__all__ = ["chat_completions"]


async def chat_completions(request: Request, services: Services) -> ASGIApp:
    asked = await model_request(request, services, Operation.CHAT)
    if asked.body.get("async") is True:  # a job of one request, answered 202
        return await async_job(request, services, asked.body, "/v1/chat/completions")
    answer = await services.pipeline.run(asked)
    if isinstance(answer, ChatStream):
        return EventStream(answer, OpenAIEvents(services.redactor), services.redactor)
    return json_response(answer)
