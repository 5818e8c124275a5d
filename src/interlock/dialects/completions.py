"""OpenAI's legacy Completions (``POST /v1/completions``) as one chat request.

Each prompt becomes a user message of the chat body; the answer's message
text (or each streamed chunk's delta text) becomes the choice's ``text``.
An upstream that serves this API itself (vLLM, Ollama, ``completions:
native``) gets the prompts as they were written, on its own /completions
(``providers/openai_completions.py``, reading the ``LEGACY_COMPLETION``
marker); every other model answers them as chat. What only the former can
do routes the request to such deployments alone, and is a 400 naming the
parameter for a model with none (``needs``):

- several prompts (``n`` choices each, indexed prompt by prompt);
- prompts of token ids (a list of ints, or several: evaluation harnesses
  such as lm-eval send them by default), which mean something only to the
  model's own tokenizer. The chat body carries them in the marker
  (``tokens``), each prompt's user message left empty; a request whose
  guardrails read prompts refuses them (``pipeline/guard.py``), admission
  counts the ids, and the upstream echoes such a prompt itself;
- a ``suffix`` (text after the completion: fill-in-the-middle);
- ``echo`` with ``logprobs`` (the prompt's own tokens scored);
- ``max_tokens: 0`` with ``echo`` (the prompt alone, scored with
  ``logprobs``: nothing generated), which chat cannot ask for: the marker
  says so (``score_only``) and the chat body asks for one token;
- ``best_of`` above ``n``.

``echo`` without ``logprobs`` puts the prompt before each choice's text (in
a stream, before its first chunk's) here at the edge, whichever model
answers. ``logprobs`` (0-5) asks the chat model for its tokens' log
probabilities (``top_logprobs``: that many alternatives) and writes them
back in this API's shape: ``tokens``, ``token_logprobs``, ``top_logprobs``
(a dict per token, the sampled token always in it, so up to ``logprobs`` +
1 entries) and ``text_offset`` (each token's start in the choice's text,
counted across a stream's chunks).

``max_tokens`` defaults to 16, as OpenAI's; an explicit null leaves the
limit to the model. Everything else (sampling, ``n``, ``stop``,
``stream_options``, ``logit_bias``, ``seed``, ``user``, unknown fields) goes
to the chat request as it is. The translation to chat is lenient (it never
raises): the edge admits the request before ``check`` validates it, so a
caller without a key gets the 401, as on every edge (ADR 0009).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from interlock.chat_markers import LEGACY_COMPLETION
from interlock.errors import InvalidRequest
from interlock.pipeline.schemas import StreamOptions, validate_body

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "MAX_PROMPTS",
    "CompletionRequest",
    "Echo",
    "check",
    "chunk_from_chat",
    "echoed_prompt",
    "from_chat",
    "to_chat",
    "token_prompts",
]

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for this endpoint
# A token id: strict, so neither a bool nor a float passes for one.
TokenId = Annotated[int, Field(ge=0)]
MAX_PROMPTS = 2048  # as many as an embeddings request's inputs
MAX_BEST_OF = 20  # OpenAI's bound
# Parameters of this API alone: not forwarded to the chat request.
_LEGACY_ONLY = ("prompt", "suffix", "echo", "logprobs", "best_of")
_CHAT_ID_PREFIX = "chatcmpl-"


class CompletionRequest(BaseModel):
    """A legacy completion request, as this gateway accepts it."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    prompt: (
        str
        | Annotated[list[str], Field(min_length=1, max_length=MAX_PROMPTS)]
        | Annotated[list[TokenId], Field(min_length=1)]
        | Annotated[
            list[Annotated[list[TokenId], Field(min_length=1)]],
            Field(min_length=1, max_length=MAX_PROMPTS),
        ]
    ) = Field(
        description="A prompt, or a list of them; as text, or as token ids (a list of "
        "ints, or a list of such lists). Several prompts, and token ids, need a deployment "
        "that serves /v1/completions itself."
    )
    max_tokens: int | None = Field(
        default=DEFAULT_MAX_TOKENS,
        ge=0,
        description="16 when absent; null: the model's limit; 0 with `echo`: the prompt "
        "alone (needs a deployment that serves /v1/completions itself).",
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
    suffix: str | None = Field(
        default=None,
        description="Text after the completion (fill-in-the-middle); needs a deployment "
        "that serves /v1/completions itself.",
    )
    echo: bool | None = Field(
        default=None,
        description="The prompt before the completion; with `logprobs`, scored too (needs "
        "a deployment that serves /v1/completions itself).",
    )
    logprobs: int | None = Field(
        default=None, ge=0, le=5, description="Log probabilities of this many alternatives."
    )
    best_of: int | None = Field(
        default=None,
        ge=1,
        le=MAX_BEST_OF,
        description="Candidates to pick the `n` best of; above `n` it needs a deployment "
        "that serves /v1/completions itself.",
    )

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_kind_of_prompt(cls, value: Any) -> Any:
        # Before the union, so the error says why rather than which member failed.
        if isinstance(value, list) and value:
            if len(value) > MAX_PROMPTS and not _is_token_id(value[0]):
                raise PydanticCustomError(
                    "too_many_prompts", "at most {most} prompts per request", {"most": MAX_PROMPTS}
                )
            kinds = {_prompt_kind(item) for item in value}
            if len(kinds) != 1 or None in kinds:
                raise PydanticCustomError(
                    "prompt_kinds",
                    "a list of prompts holds strings, or token ids (non-negative ints), "
                    "or non-empty lists of token ids: one kind, not a mix",
                    {},
                )
        return value


def check(body: dict[str, Any]) -> CompletionRequest:
    """Validate a legacy completion request; a 400 naming the first
    offending parameter. What only some deployments can do is the routing's
    to judge (``needs``)."""
    request = validate_body(CompletionRequest, body)
    if request.max_tokens == 0 and request.echo is not True:
        raise InvalidRequest(
            "'max_tokens' 0 asks for nothing but the prompt: set 'echo' to true with it "
            "(and 'logprobs' to score the prompt), or ask for at least one token.",
            param="max_tokens",
            code="invalid_value",
        )
    # 1 is every client library's default whatever ``n`` is (LangChain sends it): a no-op.
    if request.best_of is not None and 1 < request.best_of < (request.n or 1):
        raise InvalidRequest(
            f"'best_of' ({request.best_of}) must be at least 'n' ({request.n}).",
            param="best_of",
            code="invalid_value",
        )
    if request.best_of is not None and request.best_of > 1 and request.stream:
        raise InvalidRequest(
            "'best_of' above 1 cannot be streamed: the best candidates are known at the end.",
            param="best_of",
            code="invalid_value",
        )
    return request


def _prompt_kind(item: Any) -> str | None:
    """What one entry of a list of prompts is; None where it is none of them."""
    if isinstance(item, str):
        return "text"
    if _is_token_id(item):
        return "id"
    if isinstance(item, list) and item and all(_is_token_id(i) for i in item):
        return "ids"
    return None


def _is_token_id(item: Any) -> bool:
    return isinstance(item, int) and not isinstance(item, bool) and item >= 0


def token_prompts(prompt: Any) -> list[list[int]] | None:
    """The prompts as token ids, one list each, where ``prompt`` is written
    so (not validated: ``check`` is); None for text."""
    if not isinstance(prompt, list) or not prompt or isinstance(prompt[0], str):
        return None
    if isinstance(prompt[0], list):
        return prompt
    return [prompt]


def _score_only(body: dict[str, Any]) -> bool:
    """``max_tokens: 0`` with ``echo``: the prompt, scored, and nothing generated."""
    return body.get("max_tokens") == 0 and body.get("echo") is True


def needs(body: dict[str, Any]) -> str | None:
    """The first parameter of ``body`` only an upstream serving this API
    itself can honour; None when a chat model can answer it all."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and (len(prompt) > 1 or token_prompts(prompt) is not None):
        return "prompt"
    if _score_only(body):
        return "max_tokens"
    if body.get("suffix") not in (None, ""):
        return "suffix"
    if body.get("echo") is True and body.get("logprobs") is not None:
        return "echo"
    best_of, n = body.get("best_of"), body.get("n")
    if isinstance(best_of, int) and best_of > (n if isinstance(n, int) else 1):
        return "best_of"
    return None


@dataclass(frozen=True, slots=True)
class Echo:
    """The prompts put before the choices' texts: choice ``i`` answers
    prompt ``i // n``, as OpenAI indexes them."""

    prompts: tuple[str, ...]
    n: int = 1

    def before(self, index: int) -> str:
        at = index // self.n
        return self.prompts[at] if 0 <= at < len(self.prompts) else ""


def echoed_prompt(body: dict[str, Any]) -> Echo | None:
    """What the edge puts before each choice's text: the prompts, when
    ``echo`` asks for them without ``logprobs`` (with them, the upstream
    scores and writes the prompt itself)."""
    if body.get("echo") is not True or body.get("logprobs") is not None:
        return None
    if token_prompts(body.get("prompt")) is not None or _score_only(body):
        # Ids only the upstream's tokenizer can write out; a prompt alone is its answer.
        return None
    prompts = _prompts(body.get("prompt"))
    n = body.get("n")
    return Echo(tuple(prompts), n if isinstance(n, int) and n > 0 else 1)


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The chat request for a legacy completion request, without validating
    it (``check`` does, once the request is admitted)."""
    chat = {name: value for name, value in body.items() if name not in _LEGACY_ONLY}
    tokens = token_prompts(body.get("prompt"))
    if tokens is None:
        chat["messages"] = [{"role": "user", "content": p} for p in _prompts(body.get("prompt"))]
    else:  # the marker carries them; no stage reads a message's ids as text
        chat["messages"] = [{"role": "user", "content": ""} for _ in tokens]
    if "max_tokens" not in body:
        chat["max_tokens"] = DEFAULT_MAX_TOKENS
    elif body["max_tokens"] is None:
        del chat["max_tokens"]
    elif _score_only(body):
        chat["max_tokens"] = 1  # chat's least; the marker asks the upstream for none
    logprobs = body.get("logprobs")
    if not isinstance(logprobs, int) or isinstance(logprobs, bool):
        logprobs = None
    if logprobs is not None:
        chat["logprobs"] = True
        if logprobs > 0:
            chat["top_logprobs"] = logprobs
    suffix = body.get("suffix")
    if isinstance(suffix, str) and suffix:
        chat["suffix"] = suffix  # the body's own text field: guardrails read it
    chat[LEGACY_COMPLETION] = {
        "echo": body.get("echo") is True,
        "logprobs": logprobs,
        "best_of": body.get("best_of"),
        "needs": needs(body),
    }
    if tokens is not None:
        chat[LEGACY_COMPLETION]["tokens"] = tokens
    if _score_only(body):
        chat[LEGACY_COMPLETION]["score_only"] = True
    return chat


def _prompts(prompt: Any) -> list[Any]:
    return list(prompt) if isinstance(prompt, list) else [prompt]


def from_chat(answer: dict[str, Any], echo: Echo | None = None) -> dict[str, Any]:
    """A ``text_completion`` from a ``chat.completion``; ``echo``: the
    prompts the choices' texts start with (``echoed_prompt``)."""
    return _translated(answer, "message", {}, echo)


def chunk_from_chat(
    chunk: bytes, offsets: dict[int, int] | None = None, echo: Echo | None = None
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
    chat: dict[str, Any], part: str, offsets: dict[int, int], echo: Echo | None
) -> dict[str, Any]:
    choices = []
    for choice in chat.get("choices") or ():
        index, text = choice.get("index", 0), _text(choice.get(part))
        if echo is not None and index not in offsets:
            text = echo.before(index) + text  # the choice's first text
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
