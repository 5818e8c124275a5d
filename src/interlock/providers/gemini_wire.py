"""Gemini wire translation, no I/O: OpenAI request -> Gemini request, Gemini
responses and stream fragments -> OpenAI objects. ``gemini.py`` holds the
adapter that does the calls; the module docstring there says what is and is
not translated.
"""

from __future__ import annotations

import os
import time
from typing import Any

from interlock.errors import InvalidRequest
from interlock.providers.base import JSONDict
from interlock.providers.shapes import chunk_bytes, chunk_choice

__all__ = [
    "ChunkStream",
    "ShapeError",
    "chat_request",
    "choice_count",
    "completion",
    "embedding_texts",
    "embeddings",
]


_ROLES = {"user": "user", "assistant": "model"}
_SYSTEM_ROLES = frozenset({"system", "developer"})
_SAMPLING = {
    "temperature": "temperature",
    "top_p": "topP",
    "n": "candidateCount",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}
_FILTERED = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
)
_FINISHES = {"STOP": "stop", "MAX_TOKENS": "length", **dict.fromkeys(_FILTERED, "content_filter")}


class ShapeError(Exception):
    """A 200 body that is not the shape Gemini documents; the provider names itself."""


# -- requests ----------------------------------------------------------------


def chat_request(body: JSONDict) -> JSONDict:
    """The ``GenerateContentRequest`` for an OpenAI chat request body."""
    _reject_unsupported(body)
    system, contents = _contents(body.get("messages") or [])
    if not contents:
        raise InvalidRequest(
            "Gemini needs at least one user or assistant message.", param="messages"
        )
    request: JSONDict = {"contents": contents}
    if system:
        request["systemInstruction"] = {"parts": system}
    config = _generation_config(body)
    if config:
        request["generationConfig"] = config
    return request


def _reject_unsupported(body: JSONDict) -> None:
    for field in ("tools", "functions"):
        if body.get(field):
            raise InvalidRequest(
                f"Tool calling is not supported for Gemini deployments (`{field}`).", param=field
            )
    if body.get("logprobs"):
        raise InvalidRequest(
            "`logprobs` is not supported for Gemini deployments.", param="logprobs"
        )


def _contents(messages: list[JSONDict]) -> tuple[list[JSONDict], list[JSONDict]]:
    """``systemInstruction`` parts and the alternating ``contents`` turns."""
    system: list[JSONDict] = []
    contents: list[JSONDict] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role in _SYSTEM_ROLES:
            system.extend(_text_parts(message.get("content"), i))
            continue
        if role not in _ROLES:
            raise InvalidRequest(
                f"`{role}` messages are not supported for Gemini deployments "
                "(tool calling is not translated).",
                param=f"messages[{i}].role",
            )
        if message.get("tool_calls") or message.get("function_call"):
            raise InvalidRequest(
                "Tool calls are not supported for Gemini deployments.",
                param=f"messages[{i}].tool_calls",
            )
        parts = _text_parts(message.get("content"), i)
        if contents and contents[-1]["role"] == _ROLES[role]:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": _ROLES[role], "parts": parts})
    return system, contents


def _text_parts(content: Any, i: int) -> list[JSONDict]:
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, list):
        raise InvalidRequest(
            "Message content must be a string or a list of text parts.",
            param=f"messages[{i}].content",
        )
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text" or not isinstance(part.get("text"), str):
            raise InvalidRequest(
                f"Gemini deployments accept only text content parts, not `{kind}`.",
                param=f"messages[{i}].content[{j}]",
            )
        parts.append({"text": part["text"]})
    return parts


def _generation_config(body: JSONDict) -> JSONDict:
    config: JSONDict = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    for ours, theirs in _SAMPLING.items():
        if body.get(ours) is not None:
            config[theirs] = body[ours]
    if _wants_json(body.get("response_format")):
        config["responseMimeType"] = "application/json"
    return config


def _wants_json(response_format: Any) -> bool:
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if response_format is None or kind == "text":
        return False
    if kind == "json_object":
        return True
    raise InvalidRequest(
        f"Gemini deployments support `response_format` `text` and `json_object`, not `{kind}`.",
        param="response_format",
    )


def embedding_texts(raw: Any) -> list[str]:
    """The ``input`` strings; Gemini embeds text only, so token ids are refused."""
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidRequest(
            "Gemini deployments embed a string or a non-empty list of strings "
            "(token-id arrays are not supported).",
            param="input",
        )
    return texts


# -- responses ---------------------------------------------------------------


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


def _text(candidate: JSONDict) -> str:
    """The candidate's answer text; thought summaries and non-text parts are skipped."""
    content = candidate.get("content") or {}
    parts = content.get("parts", []) if isinstance(content, dict) else None
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise ShapeError("upstream candidate `content.parts` is not a list of objects")
    return "".join(
        p["text"] for p in parts if isinstance(p.get("text"), str) and not p.get("thought")
    )


def _index(candidate: JSONDict, position: int) -> int:
    # proto3 JSON omits zero values, so candidate 0 usually carries no index.
    index = candidate.get("index", position)
    return index if isinstance(index, int) else position


def _finish_reason(reason: Any) -> str:
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
    suffix = response_id if isinstance(response_id, str) and response_id else os.urandom(12).hex()
    return f"chatcmpl-{suffix}"


def _model(response: JSONDict, fallback: str) -> str:
    version = response.get("modelVersion")
    return version if isinstance(version, str) and version else fallback


def completion(response: Any, n: int, model: str) -> JSONDict:
    """The ``chat.completion`` for a ``GenerateContentResponse``."""
    candidates = _candidates(response)
    if not candidates and not _prompt_blocked(response):
        raise ShapeError("upstream response has no candidates")
    if candidates:
        found = [
            (_index(c, pos), _text(c), _finish_reason(c.get("finishReason")))
            for pos, c in enumerate(candidates)
        ]
    else:  # the prompt itself was blocked
        found = [(index, "", "content_filter") for index in range(n)]
    choices = [
        {
            "index": index,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": finish,
        }
        for index, text, finish in sorted(found, key=lambda f: f[0])
    ]
    return {
        "id": _completion_id(response),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": _model(response, model),
        "choices": choices,
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


class ChunkStream:
    """Turns streamed ``GenerateContentResponse`` fragments into OpenAI chunks.

    Pure state, no I/O: ``feed`` each parsed fragment, then ``close`` once the
    upstream stream has ended.
    """

    def __init__(self, model: str, n: int, include_usage: bool):
        self._id = ""
        self._created = int(time.time())
        self._model = model
        self._n = n
        self._include_usage = include_usage
        self._started: set[int] = set()
        self._finished: set[int] = set()
        self._usage_metadata: Any = None

    def feed(self, response: Any) -> list[bytes]:
        candidates = _candidates(response)
        if not self._id:
            self._id = _completion_id(response)
            self._model = _model(response, self._model)
        if "usageMetadata" in response:
            self._usage_metadata = response["usageMetadata"]
        if not candidates and _prompt_blocked(response):
            return [c for i in range(self._n) for c in self._candidate(i, "", "content_filter")]
        out = []
        for position, candidate in enumerate(candidates):
            reason = candidate.get("finishReason")
            finish = None if reason in (None, "FINISH_REASON_UNSPECIFIED") else reason
            out += self._candidate(
                _index(candidate, position),
                _text(candidate),
                None if finish is None else _finish_reason(finish),
            )
        return out

    def _candidate(self, index: int, text: str, finish: str | None) -> list[bytes]:
        out = []
        if index not in self._started:
            self._started.add(index)
            out.append(self._chunk([_delta(index, {"role": "assistant", "content": ""})]))
        if text:
            out.append(self._chunk([_delta(index, {"content": text})]))
        if finish is not None and index not in self._finished:
            self._finished.add(index)
            out.append(self._chunk([_delta(index, {}, finish)]))
        return out

    def close(self) -> list[bytes]:
        if not self._started:
            raise ShapeError("upstream stream ended without any candidates")
        if self._started - self._finished:
            raise ShapeError("upstream stream ended before every candidate finished")
        return [self._chunk([], _usage(self._usage_metadata))] if self._include_usage else []

    def _chunk(self, choices: list[JSONDict], usage: JSONDict | None = None) -> bytes:
        return chunk_bytes(
            self._id,
            self._created,
            self._model,
            choices,
            include_usage=self._include_usage,
            usage=usage,
        )


def _delta(index: int, delta: JSONDict, finish: str | None = None) -> JSONDict:
    return chunk_choice(index, delta, finish)


def choice_count(body: JSONDict) -> int:
    return int(body.get("n") or 1)
