"""OpenAI's legacy Completions (``POST /v1/completions``) as one chat request.

The prompt becomes one user message; the answer's message text (or each
streamed chunk's delta text) becomes the choice's ``text``. What cannot be
translated is refused with a 400 naming the parameter:

- ``prompt`` must be one string (or a list of one): a list of prompts would
  be one chat request each, and token arrays mean nothing to another model's
  tokenizer;
- ``suffix`` and ``best_of`` have no chat counterpart; their no-op values
  (``""``, 1) are accepted;
- ``echo`` puts the prompt before each choice's text (in a stream, before
  its first chunk's), but not with ``logprobs``: those would need the
  prompt's own tokens scored, which a chat model does not report.

``logprobs`` (0-5) asks the chat model for its tokens' log probabilities
(``top_logprobs``: that many alternatives) and writes them back in this
API's shape: ``tokens``, ``token_logprobs``, ``top_logprobs`` (a dict per
token, the sampled token always in it, so up to ``logprobs`` + 1 entries)
and ``text_offset`` (each token's start in the completion's text, counted
across a stream's chunks).

``max_tokens`` defaults to 16, as OpenAI's; an explicit null leaves the
limit to the model. Everything else (sampling, ``n``, ``stop``,
``stream_options``, ``logit_bias``, ``seed``, ``user``, unknown fields) goes
to the chat request as it is. The translation to chat is lenient (it never
raises): the edge admits the request before ``check`` validates it, so a
caller without a key gets the 401, as on every edge (ADR 0009).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from interlock.errors import InvalidRequest
from interlock.pipeline.schemas import StreamOptions, validate_body

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "CompletionRequest",
    "check",
    "chunk_from_chat",
    "echoed_prompt",
    "from_chat",
    "to_chat",
]

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for this endpoint
# Parameters of this API alone: not forwarded to the chat request.
_LEGACY_ONLY = ("prompt", "suffix", "echo", "logprobs", "best_of")
_CHAT_ID_PREFIX = "chatcmpl-"


class CompletionRequest(BaseModel):
    """A legacy completion request, as this gateway accepts it."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)] = Field(
        description="One prompt: a string, or a list of one string."
    )
    max_tokens: int | None = Field(
        default=DEFAULT_MAX_TOKENS, ge=1, description="16 when absent; null: the model's limit."
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=128)
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    user: str | None = None
    logit_bias: dict[str, int] | None = None
    suffix: str | None = Field(default=None, description='Not supported: only "" or null.')
    echo: bool | None = Field(
        default=None, description="The prompt before the completion (not with `logprobs`)."
    )
    logprobs: int | None = Field(
        default=None, ge=0, le=5, description="Log probabilities of this many alternatives."
    )
    best_of: int | None = Field(default=None, description="Not supported: only 1 or null.")

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_text_prompt(cls, value: Any) -> Any:
        # Before the union, so the error says why rather than which member failed.
        if isinstance(value, list):
            if value and not all(isinstance(item, str) for item in value):
                raise PydanticCustomError(
                    "token_prompt",
                    "token arrays are not supported: send the prompt as text",
                    {},
                )
            if len(value) != 1:
                raise PydanticCustomError(
                    "one_prompt",
                    "send one prompt (a string, or a list of one string), not {count}",
                    {"count": len(value)},
                )
        return value


# Each unsupported parameter and whether its value asks for nothing.
_NO_OPS: dict[str, Callable[[Any], bool]] = {
    "suffix": lambda value: value is None or value == "",
    "best_of": lambda value: value is None or value == 1,
}


def check(body: dict[str, Any]) -> CompletionRequest:
    """Validate a legacy completion request; a 400 naming the first
    offending parameter, ``unsupported_parameter`` for one that cannot be
    translated."""
    request = validate_body(CompletionRequest, body)
    for name, no_op in _NO_OPS.items():
        if not no_op(body.get(name)):
            raise InvalidRequest(
                f"Unsupported parameter: '{name}' is not supported by this gateway's "
                "/v1/completions, which answers through a chat model.",
                param=name,
                code="unsupported_parameter",
            )
    if request.echo and request.logprobs is not None:
        raise InvalidRequest(
            "Unsupported parameter: 'echo' with 'logprobs' needs the prompt's tokens scored, "
            "which the chat model answering this gateway's /v1/completions does not report.",
            param="echo",
            code="unsupported_parameter",
        )
    return request


def echoed_prompt(body: dict[str, Any]) -> str | None:
    """The prompt each choice's text starts with, when ``echo`` asks for it."""
    if body.get("echo") is not True:
        return None
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    return prompt if isinstance(prompt, str) else None


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The chat request for a legacy completion request, without validating
    it (``check`` does, once the request is admitted)."""
    chat = {name: value for name, value in body.items() if name not in _LEGACY_ONLY}
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    chat["messages"] = [{"role": "user", "content": prompt}]
    if "max_tokens" not in body:
        chat["max_tokens"] = DEFAULT_MAX_TOKENS
    elif body["max_tokens"] is None:
        del chat["max_tokens"]
    logprobs = body.get("logprobs")
    if isinstance(logprobs, int) and not isinstance(logprobs, bool):
        chat["logprobs"] = True
        if logprobs > 0:
            chat["top_logprobs"] = logprobs
    return chat


def from_chat(answer: dict[str, Any], echo: str | None = None) -> dict[str, Any]:
    """A ``text_completion`` from a ``chat.completion``; ``echo``: the
    prompt each choice's text starts with (``echoed_prompt``)."""
    return _translated(answer, "message", {}, echo)


def chunk_from_chat(
    chunk: bytes, offsets: dict[int, int] | None = None, echo: str | None = None
) -> bytes:
    """A streamed ``text_completion`` chunk from a ``chat.completion.chunk``.
    One for one, empty ones included (a role-only first chunk, a tool call's
    pieces, a usage-only last chunk): the client sees the stream's pace.
    ``offsets``: one stream's text written so far, by choice (its tokens'
    ``text_offset`` go on from there, and ``echo`` goes before a choice's
    first text); one dict per stream."""
    return orjson.dumps(
        _translated(orjson.loads(chunk), "delta", {} if offsets is None else offsets, echo)
    )


def _translated(
    chat: dict[str, Any], part: str, offsets: dict[int, int], echo: str | None
) -> dict[str, Any]:
    choices = []
    for choice in chat.get("choices") or ():
        index, text = choice.get("index", 0), _text(choice.get(part))
        if echo is not None and index not in offsets:
            text = echo + text  # the choice's first text: never with logprobs (``check``)
        start = offsets.get(index, 0)
        offsets[index] = start + len(text)
        choices.append(
            {
                "text": text,
                "index": index,
                "logprobs": _legacy_logprobs(choice.get("logprobs"), start),
                "finish_reason": choice.get("finish_reason"),
            }
        )
    out: dict[str, Any] = {
        "id": _completion_id(chat.get("id")),
        "object": "text_completion",
        "created": chat.get("created"),
        "model": chat.get("model"),
        "choices": choices,
    }
    if (fingerprint := chat.get("system_fingerprint")) is not None:
        out["system_fingerprint"] = fingerprint
    if (usage := chat.get("usage")) is not None:
        out["usage"] = usage
    return out


def _legacy_logprobs(logprobs: Any, start: int) -> dict[str, Any] | None:
    """Chat's token entries (``logprobs.content``) in this API's shape;
    ``start``: where their text begins in the completion."""
    entries = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(entries, list):
        return None
    legacy: dict[str, list[Any]] = {
        "tokens": [],
        "token_logprobs": [],
        "top_logprobs": [],
        "text_offset": [],
    }
    at = start
    for entry in entries:
        if not isinstance(entry, dict):
            continue  # an upstream's oddity: no token to report
        token, value = str(entry.get("token", "")), entry.get("logprob")
        top = {token: value}
        for other in entry.get("top_logprobs") or ():
            if isinstance(other, dict):
                top.setdefault(str(other.get("token", "")), other.get("logprob"))
        legacy["tokens"].append(token)
        legacy["token_logprobs"].append(value)
        legacy["top_logprobs"].append(top)
        legacy["text_offset"].append(at)
        at += len(token)
    return legacy


def _text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""


def _completion_id(chat_id: Any) -> str:
    # Derived, not new: every chunk of one stream carries the same id. An
    # empty one stays empty (Azure's first chunk, its prompt's filter results).
    if not isinstance(chat_id, str) or not chat_id:
        return ""
    return "cmpl-" + chat_id.removeprefix(_CHAT_ID_PREFIX)
