"""Adapter for Anthropic's Messages API (``POST /v1/messages``).

Translated: system and developer messages (hoisted into ``system``), user and
assistant text (strings or ``text`` content parts; consecutive same-role
messages merged, since Anthropic requires alternation), ``max_tokens`` /
``max_completion_tokens``, ``stop``, ``temperature``, ``top_p`` and ``user``;
responses and streamed events back into ``chat.completion`` objects and
chunks, with usage (cached input tokens count as prompt tokens, and
``prompt_tokens_details`` says how many were cache reads and writes).

Not translated, and refused with a 400 rather than silently dropped: tools and
tool/function messages, non-text content parts (images, audio, files) and
``n`` > 1. Other OpenAI-only fields are not forwarded.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson

from interlock.config import DeploymentConfig
from interlock.errors import InvalidRequest, UpstreamProtocolError, UpstreamStatusError
from interlock.providers.base import CallContext, JSONDict
from interlock.providers.http import HttpProvider
from interlock.providers.shapes import chunk_bytes, chunk_choice
from interlock.redaction import Redactor

__all__ = ["AnthropicProvider"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
# Anthropic requires max_tokens; OpenAI clients often leave it out.
DEFAULT_MAX_TOKENS = 4096

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# The HTTP status Anthropic documents for each error type, for errors that
# arrive as a stream event after the 200 status was sent.
_ERROR_STATUSES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
_INPUT_TOKEN_FIELDS = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
_TOOLS_UNSUPPORTED = "tool calls are not supported by the anthropic adapter yet"


class AnthropicProvider(HttpProvider):
    provider_name = "anthropic"

    def __init__(self, deployment: DeploymentConfig, redactor: Redactor | None = None):
        assert deployment.model  # guaranteed by config validation
        headers = {"anthropic-version": API_VERSION}
        if deployment.api_key is not None:
            headers["x-api-key"] = deployment.api_key.reveal()
        super().__init__(deployment, headers, redactor)
        self._model = deployment.model
        self._url = f"{deployment.base_url or DEFAULT_BASE_URL}/v1/messages"

    async def chat(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        upstream = _translate_request(body, self._model)
        result = await self._client.request_json("POST", self._url, upstream, self._headers(ctx))
        if not _is_message(result):
            raise UpstreamProtocolError(
                "upstream response is not an Anthropic message", deployment=self.deployment_id
            )
        return _completion(result, self._model)

    async def stream_chat(self, body: JSONDict, ctx: CallContext) -> AsyncIterator[bytes]:
        upstream = {**_translate_request(body, self._model), "stream": True}
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        translator = _StreamTranslator(self.deployment_id, self._model, include_usage)
        events = self._client.stream_sse(self._url, upstream, self._headers(ctx))
        async with aclosing(events):  # closing at message_stop keeps the connection pooled
            async for event in events:
                parsed = _event_object(event.data, self.deployment_id)
                if parsed.get("type") == "error":
                    raise self._stream_error(parsed)
                for chunk in translator.feed(parsed):
                    yield chunk
                if translator.finished:
                    return
        raise UpstreamProtocolError(
            "upstream stream ended before message_stop", deployment=self.deployment_id
        )

    def _stream_error(self, event: JSONDict) -> UpstreamStatusError:
        """An ``error`` event after the 200 status: the status Anthropic
        documents for its error type, its message made safe."""
        error = event.get("error")
        error = error if isinstance(error, dict) else {}
        kind = error.get("type")
        kind = kind if isinstance(kind, str) else "error"
        message = error.get("message")
        detail = f"{kind}: {message}" if isinstance(message, str) else kind
        return self._upstream_error(_ERROR_STATUSES.get(kind, 500), detail, mid_stream=True)


# -- request -----------------------------------------------------------------


def _translate_request(body: JSONDict, model: str) -> JSONDict:
    """The Anthropic Messages body for an OpenAI chat completion body."""
    _refuse_unsupported(body)
    system, messages = _split_messages(body.get("messages") or [])
    out: JSONDict = {
        "model": model,
        "messages": messages,
        "max_tokens": body.get("max_completion_tokens")
        or body.get("max_tokens")
        or DEFAULT_MAX_TOKENS,
    }
    if system:
        out["system"] = system
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("user"):
        out["metadata"] = {"user_id": body["user"]}
    return out


def _refuse_unsupported(body: JSONDict) -> None:
    if (body.get("n") or 1) > 1:
        raise InvalidRequest(
            "The anthropic adapter cannot return more than one choice; `n` must be 1.",
            param="n",
        )
    for name in ("tools", "functions"):
        if body.get(name):
            raise InvalidRequest(_TOOLS_UNSUPPORTED, param=name)


def _split_messages(messages: list[JSONDict]) -> tuple[str, list[JSONDict]]:
    """Hoist system text; merge same-role runs (Anthropic requires alternation)."""
    system: list[str] = []
    out: list[JSONDict] = []
    for i, message in enumerate(messages):
        role, param = message.get("role"), f"messages[{i}]"
        if role in ("system", "developer"):
            system.append(_text_of(message.get("content"), param))
            continue
        if role not in ("user", "assistant") or message.get("tool_calls"):
            raise InvalidRequest(_TOOLS_UNSUPPORTED, param=param)
        content = _content(message.get("content"), param)
        if out and out[-1]["role"] == role:
            out[-1]["content"] = _as_blocks(out[-1]["content"]) + _as_blocks(content)
        else:
            out.append({"role": role, "content": content})
    return "\n\n".join(system), out


def _content(content: Any, param: str) -> str | list[JSONDict]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    blocks = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise InvalidRequest(
                f"Content parts of type `{kind}` are not supported by the anthropic adapter; "
                "only `text` parts are.",
                param=f"{param}.content[{j}].type",
            )
        blocks.append({"type": "text", "text": part.get("text", "")})
    return blocks


def _text_of(content: Any, param: str) -> str:
    translated = _content(content, param)
    if isinstance(translated, str):
        return translated
    return "".join(block["text"] for block in translated)


def _as_blocks(content: str | list[JSONDict]) -> list[JSONDict]:
    if isinstance(content, str):
        # Anthropic rejects empty text blocks; an empty string merges as nothing.
        return [{"type": "text", "text": content}] if content else []
    return content


# -- response ----------------------------------------------------------------


def _is_message(result: Any) -> bool:
    return (
        isinstance(result, dict)
        and isinstance(result.get("id"), str)
        and isinstance(result.get("content"), list)
        and all(isinstance(block, dict) for block in result["content"])
    )


def _completion(message: JSONDict, model: str) -> JSONDict:
    text = "".join(
        str(block.get("text", "")) for block in message["content"] if block.get("type") == "text"
    )
    return {
        "id": message["id"],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model") or model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": _finish_reason(message.get("stop_reason")),
            }
        ],
        "usage": _usage(message.get("usage")),
        "system_fingerprint": None,
    }


def _finish_reason(stop_reason: Any) -> str:
    return _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _usage(usage: Any) -> JSONDict:
    usage = usage if isinstance(usage, dict) else {}
    # The cache fields are null when caching was not involved.
    prompt = sum(_count(usage.get(name)) for name in _INPUT_TOKEN_FIELDS)
    completion = _count(usage.get("output_tokens"))
    translated: JSONDict = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    # prompt_tokens counts every input token, as OpenAI's does; the details
    # say how many were read from the prompt cache and how many written to
    # it, so each class is priced at its own rate (pipeline/pricing.py).
    read = _count(usage.get("cache_read_input_tokens"))
    written = _count(usage.get("cache_creation_input_tokens"))
    if read or written:
        translated["prompt_tokens_details"] = {
            "cached_tokens": read,
            "cache_write_tokens": written,
        }
    return translated


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# -- streaming ---------------------------------------------------------------


def _event_object(data: bytes, deployment_id: str) -> JSONDict:
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UpstreamProtocolError(
            "upstream sent a stream event that is not a JSON object", deployment=deployment_id
        )
    return parsed


class _StreamTranslator:
    """Anthropic stream events in, OpenAI ``chat.completion.chunk`` bytes out."""

    def __init__(self, deployment_id: str, model: str, include_usage: bool):
        self._deployment_id = deployment_id
        self._include_usage = include_usage
        self._id = ""
        self._model = model
        self._created = int(time.time())
        self._usage: JSONDict = {}
        self._stop_reason: Any = None
        self._started = False
        self.finished = False

    def feed(self, event: JSONDict) -> list[bytes]:
        kind = event.get("type")
        if kind == "message_start":
            return self._start(event.get("message"))
        if kind == "ping":
            return []
        if not self._started:
            raise UpstreamProtocolError(
                f"upstream sent `{kind}` before message_start", deployment=self._deployment_id
            )
        if kind == "content_block_start":
            return self._text(event.get("content_block"))
        if kind == "content_block_delta":
            return self._text(event.get("delta"))
        if kind == "message_delta":
            self._stop_reason = (event.get("delta") or {}).get("stop_reason") or self._stop_reason
            self._add_usage(event.get("usage"))
        elif kind == "message_stop":
            return self._finish()
        # content_block_stop, and event types Anthropic may add later.
        return []

    def _start(self, message: Any) -> list[bytes]:
        if not isinstance(message, dict) or not isinstance(message.get("id"), str):
            raise UpstreamProtocolError(
                "upstream message_start has no message id", deployment=self._deployment_id
            )
        self._id, self._started = message["id"], True
        self._model = message.get("model") or self._model
        self._add_usage(message.get("usage"))
        return [self._chunk([_choice({"role": "assistant", "content": ""})])]

    def _text(self, block: Any) -> list[bytes]:
        # Text blocks start as {"type": "text", "text": ""} and grow by text_delta;
        # other blocks (thinking, tool input) carry nothing we forward.
        if not isinstance(block, dict) or block.get("type") not in ("text", "text_delta"):
            return []
        text = block.get("text")
        if not isinstance(text, str) or not text:
            return []
        return [self._chunk([_choice({"content": text})])]

    def _add_usage(self, usage: Any) -> None:
        # message_delta counts are cumulative, so later values replace earlier ones.
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})

    def _finish(self) -> list[bytes]:
        self.finished = True
        chunks = [self._chunk([_choice({}, _finish_reason(self._stop_reason))])]
        if self._include_usage:
            chunks.append(self._chunk([], _usage(self._usage)))
        return chunks

    def _chunk(self, choices: list[JSONDict], usage: JSONDict | None = None) -> bytes:
        return chunk_bytes(
            self._id,
            self._created,
            self._model,
            choices,
            include_usage=self._include_usage,
            usage=usage,
        )


def _choice(delta: JSONDict, finish_reason: str | None = None) -> JSONDict:
    return chunk_choice(0, delta, finish_reason)
