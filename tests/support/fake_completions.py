"""A fake OpenAI-compatible server of a base model on loopback: OpenAI's
legacy Completions as vLLM and Ollama serve them, and no chat.

``completions_app(requests)`` serves::

    POST /v1/completions
    POST /v1/chat/completions

The chat route refuses every request with vLLM's 400 for a model whose
tokenizer has no chat template (a base model): only the prompt as written
reaches such a model. Each request is appended to ``requests`` as
``{"path", "body"}``.

``/v1/completions`` takes what both servers document: ``prompt`` as a
string or a list of strings (each answered by ``n`` choices, indexed prompt
by prompt), or as token ids (a list of ints or a list of such lists; the
fake's tokenizer reads id ``n`` as the word `` t<n>``: ``detokenized``;
vLLM's answer to such a prompt echoes it as text), ``max_tokens`` (16 by
default), ``n``, ``best_of`` (at least ``n``), ``echo``, ``logprobs`` (a
count), ``suffix`` (Ollama's fill-in-the-middle), ``stream`` and
``stream_options.include_usage``.

What it writes is decided from the request alone. A prompt's first word,
lower-cased (``word``), is continued as `` word goes on.`` (four tokens,
finish reason ``stop``; fewer at ``max_tokens``, finish ``length``); choice
``j`` > 0 of a prompt writes `` word#j`` as its first token; with a
``suffix`` the tokens are `` word``, `` then`` and the suffix's first word.
Tokens are whitespace-led words and punctuation. Log probabilities: token
``k`` of a choice has ``-0.1 * (k + 1)``, and its ``top_logprobs`` the token
and ``logprobs`` alternatives `` altI`` at one less each; with ``echo`` the
prompt's tokens come first, the first unscored (``null``), the rest at
``-1.0``. In a stream, a choice's echoed prompt is its first chunk, then
one chunk per token, the last with the finish reason; a prompt ending in
"cut me" has the connection closed after the second token.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

__all__ = ["BASE_MODEL", "CUT", "ME", "completions_app", "detokenized"]

BASE_MODEL = "meta-llama/Llama-3.1-8B"
_TOKEN = re.compile(r"\s*[\w#]+|\s*[^\w\s]")
_WORD = re.compile(r"\w+")
NO_CHAT_TEMPLATE = (
    "As of transformers v4.44, default chat template is no longer allowed, so you must "
    "provide a chat template if the tokenizer does not define one."
)


@dataclass(frozen=True, slots=True)
class _Choice:
    index: int
    echoed: str  # the prompt, when echoed
    echoed_tokens: list[str]
    tokens: list[str]
    finish_reason: str

    @property
    def text(self) -> str:
        return self.echoed + "".join(self.tokens)


def completions_app(requests: list[dict[str, Any]] | None = None) -> web.Application:
    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if requests is not None:
            requests.append({"path": request.path, "body": body})
        refused = _refused(body)
        if refused is not None:
            return _error(refused)
        choices = _choices(body)
        if body.get("stream"):
            return await _stream(request, body, choices)
        return web.json_response(
            {
                **_head(),
                "choices": [
                    _choice_object(body, c, c.echoed, c.echoed_tokens, c.tokens, 0) for c in choices
                ],
                "usage": _usage(body, choices),
            }
        )

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if requests is not None:
            requests.append({"path": request.path, "body": body})
        return _error(NO_CHAT_TEMPLATE)

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat)
    return app


def _refused(body: dict[str, Any]) -> str | None:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) and not (
        isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt)
    ):
        if _token_prompts(prompt) is None:
            return "prompt must be a string, a list of strings, or token ids"
    best_of, n = body.get("best_of"), body.get("n") or 1
    if best_of is not None and best_of < n:
        return f"best_of must be greater than or equal to n, got n={n} and best_of={best_of}"
    return None


def _error(message: str) -> web.Response:
    error = {"object": "error", "message": message, "type": "BadRequestError", "code": 400}
    return web.json_response(error, status=400)


def _prompts(body: dict[str, Any]) -> list[str]:
    prompt = body["prompt"]
    tokens = _token_prompts(prompt)
    if tokens is not None:
        return [detokenized(ids) for ids in tokens]
    return [prompt] if isinstance(prompt, str) else list(prompt)


# Two words of the fake's vocabulary besides `` t<n>``, so a prompt of ids can
# end in "cut me".
CUT, ME = 1001, 1002
_VOCABULARY = {CUT: " cut", ME: " me"}


def detokenized(ids: list[int]) -> str:
    """The fake model's tokenizer, backwards: token id ``n`` is the word
    `` t<n>`` (``CUT`` and ``ME`` are " cut" and " me")."""
    return "".join(_VOCABULARY.get(i, f" t{i}") for i in ids)


def _token_prompts(prompt: Any) -> list[list[int]] | None:
    """Prompts of token ids (a list of ints, or a list of such lists), as vLLM
    takes them; None for anything else."""

    def ids(value: Any) -> bool:
        return isinstance(value, list) and bool(value) and all(type(i) is int for i in value)

    if ids(prompt):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(ids(p) for p in prompt):
        return list(prompt)
    return None


def _choices(body: dict[str, Any]) -> list[_Choice]:
    n = body.get("n") or 1
    limit = body.get("max_tokens", 16)
    suffix = body.get("suffix")
    choices = []
    for p, prompt in enumerate(_prompts(body)):
        found = _WORD.search(prompt)
        word = found.group().lower() if found else "x"
        for j in range(n):
            first = f" {word}#{j}" if j else f" {word}"
            if isinstance(suffix, str) and suffix:
                after = _WORD.search(suffix)
                tokens = [first, " then", " " + (after.group() if after else "end")]
            else:
                tokens = [first, " goes", " on", "."]
            finish = "stop"
            if limit is not None and len(tokens) > limit:
                tokens, finish = tokens[:limit], "length"
            echoed = prompt if body.get("echo") else ""
            choices.append(_Choice(p * n + j, echoed, _TOKEN.findall(echoed), tokens, finish))
    return choices


def _head() -> dict[str, Any]:
    return {
        "id": "cmpl-fake0123456789",
        "object": "text_completion",
        "created": int(time.time()),
        "model": BASE_MODEL,
    }


def _choice_object(
    body: dict[str, Any],
    choice: _Choice,
    echoed: str,
    echoed_tokens: list[str],
    tokens: list[str],
    first_token: int,
    offset: int = 0,
    finish: bool = True,
) -> dict[str, Any]:
    return {
        "index": choice.index,
        "text": echoed + "".join(tokens),
        "logprobs": _logprobs(body, echoed_tokens, tokens, first_token, offset),
        "finish_reason": choice.finish_reason if finish else None,
        "stop_reason": None,
    }


def _logprobs(
    body: dict[str, Any], echoed: list[str], tokens: list[str], first_token: int, offset: int
) -> dict[str, Any] | None:
    count = body.get("logprobs")
    if count is None:
        return None
    out: dict[str, list[Any]] = {
        "tokens": [],
        "token_logprobs": [],
        "top_logprobs": [],
        "text_offset": [],
    }
    at = offset
    for i, token in enumerate(echoed):
        value = None if i == 0 else -1.0
        out["tokens"].append(token)
        out["token_logprobs"].append(value)
        out["top_logprobs"].append(None if value is None else _top(token, value, count))
        out["text_offset"].append(at)
        at += len(token)
    for k, token in enumerate(tokens, start=first_token):
        value = round(-0.1 * (k + 1), 6)
        out["tokens"].append(token)
        out["token_logprobs"].append(value)
        out["top_logprobs"].append(_top(token, value, count))
        out["text_offset"].append(at)
        at += len(token)
    return out


def _top(token: str, value: float, count: int) -> dict[str, float]:
    top = {token: value}
    for i in range(1, count + 1):
        top[f" alt{i}"] = value - i
    return top


def _usage(body: dict[str, Any], choices: list[_Choice]) -> dict[str, int]:
    prompt_tokens = sum(len(_TOKEN.findall(prompt)) for prompt in _prompts(body))
    completion_tokens = sum(len(choice.tokens) for choice in choices)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


async def _stream(
    request: web.Request, body: dict[str, Any], choices: list[_Choice]
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    head = _head()

    async def send(chunk_choices: list[dict[str, Any]], usage: Any = None) -> None:
        chunk = {**head, "choices": chunk_choices, "usage": usage}
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")

    cut = any(prompt.endswith("cut me") for prompt in _prompts(body))
    for choice in choices:
        at = 0
        if choice.echoed:
            piece = _choice_object(
                body, choice, choice.echoed, choice.echoed_tokens, [], 0, 0, False
            )
            await send([piece])
            at = len(choice.echoed)
        for k, token in enumerate(choice.tokens):
            last = k == len(choice.tokens) - 1
            await send([_choice_object(body, choice, "", [], [token], k, at, last)])
            at += len(token)
            if cut and k == 1:  # the server dies mid-answer: no finish, no [DONE]
                assert request.transport is not None
                request.transport.close()
                return response
    if (body.get("stream_options") or {}).get("include_usage"):
        await send([], _usage(body, choices))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response
