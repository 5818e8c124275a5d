"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: Anthropic's
Messages API, on the same pipeline as every edge (ADR 0009).

The request is translated into OpenAI's chat shape
(``interlock.dialects.anthropic``), run by the pipeline, whichever upstream
the router picks, and the answer translated back: a message, or Anthropic's
server-sent events. The key comes as ``x-api-key`` (Anthropic's SDKs) or
``Authorization: Bearer``; ``anthropic-version`` and ``anthropic-beta`` are
accepted and need not be sent. Errors on these routes take Anthropic's
shape (``anthropic_error``, registered in ``api/table.py``).

Admission runs before the Anthropic body is validated, as on the OpenAI
routes: a request with a bad key and a bad body is a 401, and admission
reads only the model, the text and ``max_tokens``, which Anthropic names as
OpenAI does.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from interlock.api.errors import retry_after_header, safe_message
from interlock.api.services import Services
from interlock.api.sse import EventStream
from interlock.api.wire import (
    check_model_use,
    json_response,
    read_json_object,
    request_record,
    translated_request,
)
from interlock.dialects.anthropic import (
    CountTokensRequest,
    EventTranslator,
    MessagesRequest,
    chat_body,
    error_body,
    event,
    message,
    validate_request,
)
from interlock.errors import InterlockError
from interlock.pipeline import ChatStream
from interlock.redaction import Redactor
from interlock.telemetry.record import RequestRecord
from interlock.tokens import count_chat_request

__all__ = ["anthropic_authorization", "anthropic_error", "count_tokens", "messages"]

DIALECT = "anthropic"


def anthropic_authorization(request: Request) -> str | None:
    """``Bearer <key>`` from Anthropic's ``x-api-key``, else ``Authorization``."""
    key = request.headers.get("x-api-key")
    return f"Bearer {key}" if key else request.headers.get("authorization")


async def messages(request: Request, services: Services) -> ASGIApp:
    raw = await read_json_object(request, services.max_body_bytes)
    asked = translated_request(
        request, raw, DIALECT, authorization=anthropic_authorization(request)
    )
    pipeline = services.pipeline
    pipeline.unalias(asked)  # before admission, which checks the key's models
    admitted = await pipeline.admission.admit(asked)
    try:
        parsed = validate_request(MessagesRequest, raw)
        asked.body, asked.checked = chat_body(parsed), True
    except BaseException:
        admitted.release()
        raise
    answer = await pipeline.run(asked, admitted)
    stops = parsed.stop_sequences or ()
    if isinstance(answer, ChatStream):
        encoder = AnthropicEncoder(EventTranslator(parsed.model, stops), asked.record)
        return EventStream(answer, encoder, services.redactor)
    return json_response(message(answer, stops))


async def count_tokens(request: Request, services: Services) -> ASGIApp:
    """The prompt's tokens, counted by the gateway's tokenizer after the same
    translation as ``messages``: authenticated, no model called, no limit spent."""
    raw = await read_json_object(request, services.max_body_bytes)
    principal = services.pipeline.admission.identify(
        anthropic_authorization(request), request_record(request)
    )
    parsed = validate_request(CountTokensRequest, raw)
    check_model_use(services, principal, parsed.model)
    # tiktoken keeps its encodings loaded: after the adapters', this costs nothing.
    tokens = await count_chat_request(services.counter, chat_body(parsed))
    return json_response({"input_tokens": tokens})


def anthropic_error(exc: InterlockError, redactor: Redactor) -> Response:
    """An error on these routes, in Anthropic's shape, with our status."""
    headers = None
    if exc.retry_after_s is not None:
        headers = {"retry-after": retry_after_header(exc.retry_after_s)}
    return Response(
        orjson.dumps(error_body(exc, safe_message(exc, redactor))),
        status_code=exc.status_code,
        media_type="application/json",
        headers=headers,
    )


class AnthropicEncoder:
    """Anthropic's events for ``EventStream``: pings while the first chunk
    is awaited, ``EventTranslator``'s events, an ``error`` event for a
    failure after the response started. ``record``: the request's, whose
    usage ``message_delta`` carries."""

    __slots__ = ("_events", "_record", "feed")

    def __init__(self, events: EventTranslator, record: RequestRecord):
        self._events = events
        self._record = record
        self.feed = events.feed

    def opening(self) -> bytes:
        return b""

    def heartbeat(self) -> bytes:
        return self._events.ping()

    async def finish(self) -> bytes:
        return self._events.finish(self._record.usage)

    def error(self, exc: InterlockError, message: str) -> bytes:
        return event("error", {"error": error_body(exc, message)["error"]})
