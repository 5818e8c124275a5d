"""What a batch item's endpoint means to the runner: the pipeline operation
that runs it, how the stored body becomes the pipeline's (a dialect's body
is translated into the chat shape, as its edge does online), and how the
answer and an error are written back in the endpoint's own shape.

An Anthropic Message Batch item (``/v1/messages``) is validated and
translated when it runs, not when the batch is created: as Anthropic does,
a bad ``params`` object is that request's ``errored`` result, not the
whole batch refused. So are the items of the other dialects OpenAI's Batch
API runs: ``/v1/responses`` (not stored: a batch item's Response shows
``store: false``; ``previous_response_id`` and ``conversation`` need state
a batch does not read, and are refused) and ``/v1/completions``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from interlock.dialects.anthropic import MessagesRequest, chat_body, message, validate_request
from interlock.dialects.anthropic import error_body as anthropic_error_body
from interlock.dialects.completions import check as check_completion
from interlock.dialects.completions import echoed_prompt, from_chat, to_chat
from interlock.dialects.responses.answer import new_id, response_shell, to_response
from interlock.dialects.responses.conversation_state import in_effect
from interlock.dialects.responses.request import CLIENT_PARAMS
from interlock.dialects.responses.request import chat_body as responses_chat_body
from interlock.dialects.responses.schemas import validate_request as validate_responses
from interlock.errors import InterlockError, InvalidRequest
from interlock.pipeline import NO_OPTIONS, Operation, RequestOptions
from interlock.pipeline.encoding import apply_encoding_format
from interlock.pipeline.moderation import DEFAULT_MODERATION_MODEL

__all__ = ["BACKGROUND_RESPONSE", "ENDPOINTS", "BatchEndpoint", "PreparedItem"]

JSONDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class PreparedItem:
    body: JSONDict  # in OpenAI's shape, for the pipeline
    # The edge validated ``body`` against its dialect's schema (see
    # ``ModelRequest.checked``).
    checked: bool
    # The pipeline's answer as this endpoint answers it.
    answer: Callable[[JSONDict], JSONDict]


@dataclass(frozen=True, slots=True)
class BatchEndpoint:
    operation: Operation
    prepare: Callable[[JSONDict], PreparedItem]
    error_body: Callable[[InterlockError], dict[str, object]]
    # The dialect (the request record's label and part of the cache key, as
    # on its edge online).
    options: RequestOptions = NO_OPTIONS

    @property
    def dialect(self) -> str:
        return self.options.dialect


def _as_is(body: JSONDict) -> PreparedItem:
    return PreparedItem(body, False, lambda answer: answer)


def _embeddings(body: JSONDict) -> PreparedItem:
    def answer(found: JSONDict) -> JSONDict:
        apply_encoding_format(body, found)
        return found

    return PreparedItem(body, False, answer)


def _anthropic_message(body: JSONDict) -> PreparedItem:
    parsed = validate_request(MessagesRequest, body)
    stops = parsed.stop_sequences or ()
    return PreparedItem(chat_body(parsed), True, lambda answer: message(answer, stops))


# A Responses request's fields a batch item cannot take, and what to do instead.
_NOT_IN_A_BATCH = {
    "previous_response_id": "send the whole input",
    "conversation": "send the whole input",
    # Compaction is a model call of its own, which a batch item does not make.
    "context_management": "compact the input with /v1/responses/compact first",
}


def _response(body: JSONDict) -> PreparedItem:
    asked = validate_responses(body)
    for name, instead in _NOT_IN_A_BATCH.items():
        if body.get(name) is not None:
            raise InvalidRequest(
                f"'{name}' is not available in a batch: {instead}.",
                param=name,
                code="unsupported_parameter",
            )
    if asked.compaction_triggered:
        raise InvalidRequest(
            "A 'compaction_trigger' is not available in a batch: compact with "
            "/v1/responses/compact.",
            param=f"input[{len(asked.input) - 1}]",
            code="unsupported_parameter",
        )
    asked = in_effect(asked.model_copy(update={"store": False}), ())  # not stored
    shell = response_shell(asked, new_id("resp"), int(time.time()))
    return PreparedItem(responses_chat_body(asked), True, lambda answer: to_response(shell, answer))


def _completion(body: JSONDict) -> PreparedItem:
    check_completion(body)
    echo = echoed_prompt(body)
    return PreparedItem(to_chat(body), False, lambda answer: from_chat(answer, echo))


def _background_response(envelope: JSONDict) -> PreparedItem:
    """A background response (``api/responses.py``): its edge validated and
    translated the request, resolved the history it continues and wrote its
    Response's shell; the item carries both."""
    shell = envelope["shell"]
    return PreparedItem(envelope["chat"], True, lambda answer: to_response(shell, answer))


def _moderation(body: JSONDict) -> PreparedItem:
    # The model may be left out, as online (``api/moderations.py``).
    if body.get("model") is None:
        body = {**body, "model": DEFAULT_MODERATION_MODEL}
    return _as_is(body)


def _openai_error(exc: InterlockError) -> dict[str, object]:
    return exc.to_body()


def _responses_error(exc: InterlockError) -> dict[str, object]:
    # Named as the client named it (``include``, not the chat body's ``logprobs``).
    exc.param = CLIENT_PARAMS.get(exc.param or "", exc.param)
    return exc.to_body()


def _anthropic_error(exc: InterlockError) -> dict[str, object]:
    return anthropic_error_body(exc, exc.message)


# The item of a background response: not an endpoint a batch file may name.
BACKGROUND_RESPONSE = "/v1/responses:background"

ENDPOINTS: dict[str, BatchEndpoint] = {
    "/v1/chat/completions": BatchEndpoint(Operation.CHAT, _as_is, _openai_error),
    "/v1/embeddings": BatchEndpoint(Operation.EMBEDDINGS, _embeddings, _openai_error),
    "/v1/responses": BatchEndpoint(
        Operation.CHAT, _response, _responses_error, RequestOptions(dialect="responses")
    ),
    BACKGROUND_RESPONSE: BatchEndpoint(
        Operation.CHAT,
        _background_response,
        _responses_error,
        RequestOptions(dialect="responses"),
    ),
    "/v1/moderations": BatchEndpoint(Operation.MODERATIONS, _moderation, _openai_error),
    "/v1/completions": BatchEndpoint(
        Operation.CHAT, _completion, _openai_error, RequestOptions(dialect="completions")
    ),
    "/v1/messages": BatchEndpoint(
        Operation.CHAT,
        _anthropic_message,
        _anthropic_error,
        RequestOptions(dialect="anthropic"),
    ),
}
