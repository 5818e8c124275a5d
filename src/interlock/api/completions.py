"""``POST /v1/completions``: OpenAI's legacy Completions, answered by a chat
model through the pipeline (``dialects/completions.py`` translates). A JSON
``text_completion``, or its chunks as server-sent events."""

from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.services import Services
from interlock.api.sse import EventStream, OpenAIEvents
from interlock.api.wire import json_response, read_json_object, translated_request
from interlock.dialects.completions import (
    check,
    chunk_from_chat,
    echoed_prompt,
    from_chat,
    to_chat,
)
from interlock.pipeline import ChatStream

__all__ = ["completions"]


async def completions(request: Request, services: Services) -> ASGIApp:
    body = await read_json_object(request, services.max_body_bytes)
    asked = translated_request(request, to_chat(body), "completions")
    pipeline = services.pipeline
    # Admitted before this dialect's checks, so a caller without a key gets
    # the 401 whatever its body, as on the chat edge (ADR 0009).
    pipeline.unalias(asked)  # before admission, which checks the key's models
    admitted = await pipeline.admission.admit(asked)
    try:
        check(body)
    except BaseException:
        admitted.release()
        raise
    answer = await pipeline.run(asked, admitted)
    echo = echoed_prompt(body)
    if isinstance(answer, ChatStream):
        translate = partial(chunk_from_chat, offsets={}, echo=echo)
        encoder = OpenAIEvents(services.redactor, translate)
        return EventStream(answer, encoder, services.redactor)
    return json_response(from_chat(answer, echo))
