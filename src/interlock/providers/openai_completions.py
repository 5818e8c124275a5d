"""A legacy completion sent to an upstream's own ``/completions``, and its
answer read back in the chat shape the pipeline carries.

The Completions edge writes a chat body (``dialects/completions.py``): one
user message per prompt, ``suffix`` as a field of its own, and the
``LEGACY_COMPLETION`` marker with what only this API has. For an upstream
that serves the API (vLLM, Ollama, llama.cpp, an instruct model at OpenAI)
the prompts go as they were written, with no chat template around them:
what a base model needs, and what a client of this API means. The answer's
choices become chat choices again (``text`` as the message's content, the
legacy log probabilities as chat's), so guardrails, the cache, failover and
accounting read it as any answer; the edge writes it back in this API's
shape.

``echo`` goes upstream only with ``logprobs``, where the prompt's own
tokens are scored there, or for a prompt of token ids (the marker's
``tokens``, sent as they came), which only the upstream can write out;
otherwise the edge puts the prompt before the text itself, as it does for a
chat model.
"""

from __future__ import annotations

from typing import Any

import orjson

from interlock.chat_markers import LEGACY_COMPLETION

__all__ = ["chat_chunk", "chat_completion", "completions_body"]

JSONDict = dict[str, Any]

# What the chat body says in its own way, or only for chat upstreams: the
# prompts (``messages``), and chat's log probability switches, which the
# marker's count replaces.
_CHAT_ONLY = frozenset({"messages", "logprobs", "top_logprobs", LEGACY_COMPLETION})
_LEGACY_ID_PREFIX = "cmpl-"
_CHAT_ID_PREFIX = "chatcmpl-"


def completions_body(chat: JSONDict, model: str) -> JSONDict:
    """The ``/completions`` request for a chat body the Completions edge wrote."""
    legacy = chat[LEGACY_COMPLETION]
    body = {name: value for name, value in chat.items() if name not in _CHAT_ONLY}
    body["model"] = model
    tokens = legacy.get("tokens")
    if tokens:  # token ids: a stream of them is never continued (``pipeline/stream.py``)
        prompts, continuing = tokens, False
    else:
        prompts, continuing = _prompts(chat.get("messages") or ())
    body["prompt"] = prompts[0] if len(prompts) == 1 else prompts
    logprobs = legacy.get("logprobs")
    if logprobs is not None:
        body["logprobs"] = logprobs
    # The edge echoes a text prompt unless it is scored here or is the whole
    # answer (``score_only``: nothing generated); ids only the upstream can write out.
    score_only = legacy.get("score_only") is True and not continuing
    if score_only:
        body["max_tokens"] = 0
    upstream_echo = logprobs is not None or tokens or score_only
    if legacy.get("echo") is True and not continuing and upstream_echo:
        body["echo"] = True
    if legacy.get("best_of") is not None:
        body["best_of"] = legacy["best_of"]
    return body


def _prompts(messages: Any) -> tuple[list[Any], bool]:
    """The prompts as guardrails left them (a redaction rewrites the
    messages), and whether this is a continuation. The edge writes one user
    message per prompt; a mid-stream failover (``pipeline/failover.py``)
    adds the partial answer as an assistant message and a request to go on,
    which a model with no chat template takes as the prompt followed by that
    text, continued."""
    prompts: list[Any] = []
    continuing = False
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if message.get("role") == "assistant" and prompts and isinstance(content, str):
            prompts[-1] = f"{prompts[-1]}{content}"
            continuing = True
        elif not continuing:
            prompts.append(content)
    return prompts, continuing


def chat_completion(answer: JSONDict) -> JSONDict:
    """A ``chat.completion`` saying what a ``text_completion`` says."""
    out = _chat_shaped(answer, "chat.completion")
    out["choices"] = [
        {
            "index": choice.get("index", 0),
            "message": {"role": "assistant", "content": _text(choice)},
            "logprobs": _chat_logprobs(choice.get("logprobs")),
            "finish_reason": choice.get("finish_reason"),
        }
        for choice in _choices(answer)
    ]
    return out


def chat_chunk(data: bytes) -> bytes:
    """A ``chat.completion.chunk`` saying what a streamed ``text_completion``
    chunk says (its usage too: a usage-only last chunk stays one)."""
    chunk = orjson.loads(data)
    if not isinstance(chunk, dict):
        return data  # not an object: the stream's reader reports it
    out = _chat_shaped(chunk, "chat.completion.chunk")
    out["choices"] = [
        {
            "index": choice.get("index", 0),
            "delta": {"content": _text(choice)},
            "logprobs": _chat_logprobs(choice.get("logprobs")),
            "finish_reason": choice.get("finish_reason"),
        }
        for choice in _choices(chunk)
    ]
    return orjson.dumps(out)


def _chat_shaped(answer: JSONDict, kind: str) -> JSONDict:
    out: JSONDict = {
        "id": _chat_id(answer.get("id")),
        "object": kind,
        "created": answer.get("created"),
        "model": answer.get("model"),
    }
    if answer.get("system_fingerprint") is not None:
        out["system_fingerprint"] = answer["system_fingerprint"]
    if answer.get("usage") is not None:
        out["usage"] = answer["usage"]
    return out


def _choices(answer: JSONDict) -> list[JSONDict]:
    choices = answer.get("choices")
    if not isinstance(choices, list):
        return []
    return [choice for choice in choices if isinstance(choice, dict)]


def _text(choice: JSONDict) -> str:
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def _chat_logprobs(legacy: Any) -> JSONDict | None:
    """Chat's ``{"content": [...]}`` from this API's parallel lists; the
    edge computes ``text_offset`` again from the tokens, as for a chat model."""
    if not isinstance(legacy, dict) or not isinstance(legacy.get("tokens"), list):
        return None
    tokens = legacy["tokens"]
    values = legacy.get("token_logprobs") or [None] * len(tokens)
    tops = legacy.get("top_logprobs") or [None] * len(tokens)
    content = []
    for token, value, top in zip(tokens, values, tops, strict=False):
        alternatives = top.items() if isinstance(top, dict) else ()
        content.append(
            {
                "token": token,
                "logprob": value,
                "bytes": None,
                "top_logprobs": [
                    {"token": t, "logprob": v, "bytes": None} for t, v in alternatives
                ],
            }
        )
    return {"content": content}


def _chat_id(legacy_id: Any) -> Any:
    # The edge derives ``cmpl-`` + the rest again, so the client sees the
    # upstream's own id.
    if isinstance(legacy_id, str) and legacy_id.startswith(_LEGACY_ID_PREFIX):
        return _CHAT_ID_PREFIX + legacy_id.removeprefix(_LEGACY_ID_PREFIX)
    return legacy_id
