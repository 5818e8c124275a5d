"""Gemini answers to OpenAI shapes, no I/O: a ``GenerateContentResponse`` to a
``chat.completion``, streamed fragments to ``chat.completion.chunk`` bytes,
``BatchEmbedContentsResponse`` to an embeddings list, and an error object in
a stream to the HTTP status it stands for.

A candidate's parts map one by one: text to ``content``, text parts marked
``thought`` to ``reasoning_content``, ``functionCall`` parts to tool calls
(Gemini's ``id`` when it gives one, else a new ``call_`` id; a
``thoughtSignature`` rides in the id, see ``gemini_wire``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from interlock.ids import random_hex
from interlock.providers.base import JSONDict
from interlock.providers.gemini_wire import with_signature
from interlock.providers.openai_request import new_tool_call_id
from interlock.providers.shapes import (
    chunk_bytes,
    chunk_choice,
    tool_call,
    tool_call_arguments_piece,
    tool_call_opened,
)
from interlock.providers.upstream_errors import ShapeError

__all__ = [
    "ChunkStream",
    "ShapeError",
    "choice_count",
    "completion",
    "embeddings",
    "stream_error_status",
]

_FILTERED = (
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
    "LANGUAGE",
)
# Every other reason (OTHER, MALFORMED_FUNCTION_CALL, UNEXPECTED_TOOL_CALL,
# ones Gemini adds later) ends the choice as a plain ``stop``: the answer is
# what it is, and there is no OpenAI reason that says more.
_FINISHES = {"STOP": "stop", "MAX_TOKENS": "length", **dict.fromkeys(_FILTERED, "content_filter")}
# google.rpc status names, for an error object in a stream without a usable ``code``.
_RPC_STATUSES = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def stream_error_status(error: Any) -> int:
    """The HTTP status of a stream's ``{"error": {"code", "status"}}``
    (so a mid-stream 429 or 503 is reported as one); 500 when it says none."""
    error = error if isinstance(error, dict) else {}
    code = error.get("code")
    if isinstance(code, int) and 400 <= code < 600:
        return code
    return _RPC_STATUSES.get(error.get("status"), 500)


def choice_count(body: JSONDict) -> int:
    return int(body.get("n") or 1)


# -- parts -------------------------------------------------------------------


@dataclass(slots=True)
class _Answer:
    """One candidate's parts, in OpenAI's terms."""

    text: str = ""
    reasoning: str = ""
    calls: list[JSONDict] = field(default_factory=list)


def _parts(candidate: JSONDict) -> list[JSONDict]:
    content = candidate.get("content") or {}
    parts = content.get("parts", []) if isinstance(content, dict) else None
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise ShapeError("upstream candidate `content.parts` is not a list of objects")
    return parts


def _call(part: JSONDict) -> JSONDict | None:
    """The OpenAI tool call of a ``functionCall`` part (None for other parts)."""
    function = part.get("functionCall")
    if function is None:
        return None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise ShapeError("upstream `functionCall` has no name")
    args = function.get("args", {})
    if not isinstance(args, dict):
        raise ShapeError("upstream `functionCall.args` is not an object")
    given = function.get("id")
    call_id = given if isinstance(given, str) and given else new_tool_call_id()
    call_id = with_signature(call_id, part.get("thoughtSignature"))
    return tool_call(call_id, function["name"], orjson.dumps(args).decode())


def _answer(candidate: JSONDict) -> _Answer:
    answer = _Answer()
    for part in _parts(candidate):
        call = _call(part)
        if call is not None:
            answer.calls.append(call)
        elif isinstance(part.get("text"), str):
            if part.get("thought") is True:
                answer.reasoning += part["text"]
            else:
                answer.text += part["text"]
        # inlineData, executableCode and parts Gemini adds later carry nothing we forward.
    return answer


# -- whole responses ---------------------------------------------------------


def _candidates(response: Any) -> list[JSONDict]:
    if not isinstance(response, dict):
        raise ShapeError("upstream response is not a JSON object")
    candidates = response.get("candidates", [])
    if not isinstance(candidates, list) or not all(isinstance(c, dict) for c in candidates):
        raise ShapeError("upstream `candidates` is not a list of objects")
    return candidates


def _prompt_blocked(response: JSONDict) -> bool:
    feedback = response.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def _index(candidate: JSONDict, position: int) -> int:
    # proto3 JSON omits zero values, so candidate 0 usually carries no index.
    index = candidate.get("index", position)
    return index if isinstance(index, int) else position


def _finish_reason(reason: Any, has_calls: bool) -> str:
    if has_calls and reason in (None, "STOP"):
        return "tool_calls"
    return _FINISHES.get(reason, "stop") if isinstance(reason, str) else "stop"


def _usage(metadata: Any) -> JSONDict:
    meta = metadata if isinstance(metadata, dict) else {}

    def count(key: str) -> int:
        value = meta.get(key)
        return value if isinstance(value, int) else 0

    prompt = count("promptTokenCount")
    thoughts = count("thoughtsTokenCount")
    completion = count("candidatesTokenCount") + thoughts
    usage: JSONDict = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": count("totalTokenCount") or prompt + completion,
    }
    if thoughts:
        usage["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    cached = count("cachedContentTokenCount")  # part of promptTokenCount
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage


def _completion_id(response: JSONDict) -> str:
    response_id = response.get("responseId")
    suffix = response_id if isinstance(response_id, str) and response_id else random_hex(24)
    return f"chatcmpl-{suffix}"


def _model(response: JSONDict, fallback: str) -> str:
    version = response.get("modelVersion")
    return version if isinstance(version, str) and version else fallback


def _message(answer: _Answer) -> JSONDict:
    content = answer.text if answer.text or not answer.calls else None
    message: JSONDict = {"role": "assistant", "content": content, "refusal": None}
    if answer.calls:
        message["tool_calls"] = answer.calls
    if answer.reasoning:
        message["reasoning_content"] = answer.reasoning
    return message


def completion(response: Any, n: int, model: str) -> JSONDict:
    """The ``chat.completion`` for a ``GenerateContentResponse``."""
    candidates = _candidates(response)
    if not candidates and not _prompt_blocked(response):
        raise ShapeError("upstream response has no candidates")
    choices = []
    for position, candidate in enumerate(candidates):
        answer = _answer(candidate)
        finish = _finish_reason(candidate.get("finishReason"), bool(answer.calls))
        choices.append(
            {
                "index": _index(candidate, position),
                "message": _message(answer),
                "logprobs": None,
                "finish_reason": finish,
            }
        )
    if not candidates:  # the prompt itself was blocked: n empty, filtered choices
        choices = [
            {
                "index": index,
                "message": _message(_Answer()),
                "logprobs": None,
                "finish_reason": "content_filter",
            }
            for index in range(n)
        ]
    return {
        "id": _completion_id(response),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": _model(response, model),
        "choices": sorted(choices, key=lambda c: c["index"]),
        "usage": _usage(response.get("usageMetadata")),
        "system_fingerprint": None,
    }


def embeddings(response: Any, expected: int, model: str) -> JSONDict:
    """The embeddings ``list`` for a ``BatchEmbedContentsResponse``."""
    items = response.get("embeddings") if isinstance(response, dict) else None
    if not isinstance(items, list) or len(items) != expected:
        raise ShapeError(f"upstream response does not hold {expected} `embeddings`")
    data = []
    for index, item in enumerate(items):
        values = item.get("values") if isinstance(item, dict) else None
        if not isinstance(values, list) or not all(isinstance(v, int | float) for v in values):
            raise ShapeError("upstream embedding `values` is not a list of numbers")
        data.append(
            {"object": "embedding", "index": index, "embedding": [float(v) for v in values]}
        )
    # Gemini reports no token usage for embeddings, so there is none to pass on.
    usage = {"prompt_tokens": 0, "total_tokens": 0}
    return {"object": "list", "data": data, "model": model, "usage": usage}


# -- streams -----------------------------------------------------------------


class ChunkStream:
    """Turns streamed ``GenerateContentResponse`` fragments into OpenAI chunks.

    Pure state, no I/O: ``feed`` each parsed fragment, then ``close`` once the
    upstream stream has ended. Gemini sends each function call whole in one
    fragment, so a call is opened and given all its arguments at once; its
    ``index`` counts the candidate's calls across fragments.
    """

    def __init__(self, model: str, n: int, include_usage: bool):
        self._id = ""
        self._created = int(time.time())
        self._model = model
        self._n = n
        self._include_usage = include_usage
        self._started: set[int] = set()
        self._finished: set[int] = set()
        self._calls: dict[int, int] = {}  # candidate index -> tool calls opened so far
        self._usage_metadata: Any = None

    def feed(self, response: Any) -> list[bytes]:
        candidates = _candidates(response)
        if not self._id:
            self._id = _completion_id(response)
            self._model = _model(response, self._model)
        if "usageMetadata" in response:
            self._usage_metadata = response["usageMetadata"]
        if not candidates and _prompt_blocked(response):
            return [c for i in range(self._n) for c in self._finish(i, "content_filter")]
        out = []
        for position, candidate in enumerate(candidates):
            index = _index(candidate, position)
            out += self._parts(index, candidate)
            reason = candidate.get("finishReason")
            if reason not in (None, "FINISH_REASON_UNSPECIFIED"):
                out += self._finish(index, _finish_reason(reason, index in self._calls))
        return out

    def _parts(self, index: int, candidate: JSONDict) -> list[bytes]:
        out = self._start(index)
        for part in _parts(candidate):
            call = _call(part)
            if call is not None:
                position = self._calls.get(index, 0)
                self._calls[index] = position + 1
                function = call["function"]
                out.append(
                    self._delta(index, tool_call_opened(position, call["id"], function["name"]))
                )
                piece = tool_call_arguments_piece(position, function["arguments"])
                out.append(self._delta(index, piece))
            elif isinstance(part.get("text"), str) and part["text"]:
                key = "reasoning_content" if part.get("thought") is True else "content"
                out.append(self._delta(index, {key: part["text"]}))
        return out

    def _start(self, index: int) -> list[bytes]:
        if index in self._started:
            return []
        self._started.add(index)
        return [self._delta(index, {"role": "assistant", "content": ""})]

    def _finish(self, index: int, finish: str) -> list[bytes]:
        out = self._start(index)
        if index not in self._finished:
            self._finished.add(index)
            out.append(self._chunk([chunk_choice(index, {}, finish)]))
        return out

    def close(self) -> list[bytes]:
        if not self._started:
            raise ShapeError("upstream stream ended without any candidates")
        if self._started - self._finished:
            raise ShapeError("upstream stream ended before every candidate finished")
        return [self._chunk([], _usage(self._usage_metadata))] if self._include_usage else []

    def _delta(self, index: int, delta: JSONDict) -> bytes:
        return self._chunk([chunk_choice(index, delta)])

    def _chunk(self, choices: list[JSONDict], usage: JSONDict | None = None) -> bytes:
        return chunk_bytes(
            self._id,
            self._created,
            self._model,
            choices,
            include_usage=self._include_usage,
            usage=usage,
        )
