"""The built-in simulator: the embedded default model and the chaos tool.

Output is deterministic for a given seed and prompt. Behaviour comes from the
deployment's ``params``:

==================  =======================================================
``seed``            int, default 0: varies the text for the same prompt
``ttft_ms``         delay before the first token (default 0)
``tokens_per_s``    streaming pace; 0 means as fast as possible (default 0)
``max_tokens``      natural response length upper bound (default 64)
``error_rate``      probability in [0, 1] that a call fails (default 0)
``error_kind``      server_error | rate_limit | unavailable | bad_request |
                    timeout | connection (default server_error)
``cut_after_tokens`` streams break (connection lost) after this many tokens
``dimensions``      embedding size (default 256, at most 8,192)
==================  =======================================================

Moderation requests get keyword-scored results in OpenAI's shape
(``simulator_moderation``): a text holding a category's words is flagged.

The simulator works in the gateway's own process, so what a request may ask
of it is bounded and never holds the event loop for long: a request's
``dimensions`` up to ``MAX_DIMENSIONS``, at most ``MAX_EMBEDDING_NUMBERS``
numbers in one embeddings answer (a 400 beyond), vectors generated a slice
at a time and long texts token-counted in pieces (``tokens.count_text``).

With ``logprobs`` a plain answer carries one log probability per
simulated token (a word), and ``top_logprobs`` alternatives for each, the
token itself first; deterministic like the text, in OpenAI's shape
(``choices[].logprobs.content``), on each streamed delta too.

Requests with tools, tool results or a JSON ``response_format`` get the
answers ``simulator_tools`` decides (tool calls with schema-sampled
arguments, ``Tool said: ...``, sampled JSON), paced, failed and cut by the
same params; plain requests never look at tools.

It is named a simulator in ``/v1/models`` (``owned_by``) and in
``system_fingerprint``; it never pretends to be a real model. Call counters
live on the instance.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from interlock.config import DeploymentConfig
from interlock.errors import (
    InvalidRequest,
    ProviderError,
    UpstreamConnectionError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from interlock.ids import random_hex
from interlock.providers.base import CallContext, JSONDict, Provider
from interlock.providers.shapes import chunk_bytes, chunk_choice
from interlock.providers.simulator_moderation import moderation_result
from interlock.providers.simulator_summary import cited_summary
from interlock.providers.simulator_tools import ScriptedAnswer, scripted_answer
from interlock.tokens import TokenCounter, count_chat_prompt, count_text, message_text

__all__ = ["MAX_DIMENSIONS", "MAX_EMBEDDING_NUMBERS", "SimulatorParams", "SimulatorProvider"]

MAX_DIMENSIONS = 8192
# One answer's numbers (inputs x dimensions): ~20 MB of JSON at most.
MAX_EMBEDDING_NUMBERS = 1 << 20
# Vector generation gives the event loop a turn at least this often.
_SLICE_S = 0.002

FINGERPRINT = "interlock-simulator"
_VOCABULARY = (
    "the gateway routes each request along a safe path while the model server "
    "streams tokens back to the client and every stage records what it did so "
    "operators can see latency cost and errors at a glance when traffic grows "
    "circuits open retries back off budgets hold and caches answer quickly"
).split()
_WORDS = tuple(dict.fromkeys(_VOCABULARY))  # each once: a token's alternatives differ

Sleep = Callable[[float], Awaitable[None]]


class SimulatorParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    ttft_ms: float = Field(default=0.0, ge=0)
    tokens_per_s: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=64, ge=1)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_kind: Literal[
        "server_error", "rate_limit", "unavailable", "bad_request", "timeout", "connection"
    ] = "server_error"
    cut_after_tokens: int | None = Field(default=None, ge=0)
    dimensions: int = Field(default=256, ge=1, le=MAX_DIMENSIONS)


class SimulatorProvider(Provider):
    owned_by = FINGERPRINT
    provider_name = "interlock.simulator"

    def __init__(
        self,
        deployment: DeploymentConfig,
        counter: TokenCounter,
        *,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ):
        self.deployment_id = deployment.id
        self.params = SimulatorParams.model_validate(deployment.params)
        self._counter = counter
        self._sleep = sleep
        self._rng = rng or random.Random(self.params.seed)
        self.calls = 0
        self.failures = 0

    # -- text generation -------------------------------------------------

    def _words(self, body: JSONDict, choice: int) -> tuple[list[str], str, str | None]:
        """The completion's pieces for this prompt, its finish reason, and the
        stop sequence that ended it (None where none did)."""
        prompt = "\n".join(message_text(m.get("content")) for m in body.get("messages", ()))
        digest = hashlib.blake2b(
            f"{self.params.seed}:{choice}:{prompt}".encode(), digest_size=8
        ).digest()
        rng = random.Random(int.from_bytes(digest, "big"))
        summary = cited_summary(prompt)
        if summary is not None:  # the search service's prompt: an answer citing its results
            vocabulary = summary.split(" ")
            natural = len(vocabulary)
        else:
            vocabulary = []
            natural = rng.randint(max(1, self.params.max_tokens // 2), self.params.max_tokens)
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or natural
        length = min(natural, int(limit))
        if vocabulary:
            words = [(" " if i else "") + vocabulary[i] for i in range(length)]
        else:
            words = [(" " if i else "") + rng.choice(_VOCABULARY) for i in range(length)]
        finish = "length" if length < natural else "stop"
        return _apply_stop(words, body.get("stop"), finish)

    def _logprobs(self, body: JSONDict, choice: int, words: list[str]) -> list[JSONDict] | None:
        """Each word's entry for ``choices[].logprobs.content``, where the
        request asked for logprobs and the answer is plain text."""
        if body.get("logprobs") is not True or scripted_answer(body) is not None:
            return None
        top = int(body.get("top_logprobs") or 0)
        return [self._token_logprob(choice, at, word, top) for at, word in enumerate(words)]

    def _token_logprob(self, choice: int, at: int, word: str, top: int) -> JSONDict:
        digest = hashlib.blake2b(
            f"{self.params.seed}:{choice}:{at}:{word}".encode(), digest_size=8
        ).digest()
        rng = random.Random(int.from_bytes(digest, "big"))
        # The token written is the likeliest (as at temperature 0); each
        # alternative less likely than the one before it.
        logprob = -round(rng.uniform(0.0001, 1.5), 6)
        ranked = [(word, logprob)]
        space = " " if word.startswith(" ") else ""
        for other in rng.sample(_WORDS, min(top + 1, len(_WORDS))):
            if len(ranked) < top and space + other != word:
                ranked.append((space + other, round(ranked[-1][1] - rng.uniform(0.1, 2.0), 6)))
        return {
            "token": word,
            "logprob": logprob,
            "bytes": list(word.encode()),
            "top_logprobs": [
                {"token": token, "logprob": value, "bytes": list(token.encode())}
                for token, value in ranked[:top]
            ],
        }

    async def _maybe_fail(self) -> None:
        self.calls += 1
        if self.params.error_rate and self._rng.random() < self.params.error_rate:
            self.failures += 1
            raise self._error()

    def _error(self) -> ProviderError:
        kind, dep = self.params.error_kind, self.deployment_id
        statuses = {"server_error": 500, "rate_limit": 429, "unavailable": 503, "bad_request": 400}
        if kind in statuses:
            return UpstreamStatusError(statuses[kind], f"simulated {kind}", deployment=dep)
        if kind == "timeout":
            return UpstreamTimeout("simulated upstream timeout", deployment=dep)
        return UpstreamConnectionError("simulated connection reset", deployment=dep)

    async def _usage(self, body: JSONDict, completions: list[list[str]]) -> JSONDict:
        prompt_tokens = await count_chat_prompt(self._counter, body.get("messages", ()))
        completion_tokens = sum(self._counter.count("".join(words)) for words in completions)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    # -- Provider --------------------------------------------------------

    async def chat(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        await self._maybe_fail()
        scripted = scripted_answer(body)
        if scripted is not None:
            return await self._scripted_chat(body, ctx, scripted)
        choices, completions = [], []
        for index in range(int(body.get("n") or 1)):
            words, finish, matched = self._words(body, index)
            completions.append(words)
            entries = self._logprobs(body, index, words)
            choice: JSONDict = {
                "index": index,
                "message": {"role": "assistant", "content": "".join(words), "refusal": None},
                "logprobs": None if entries is None else {"content": entries, "refusal": None},
                "finish_reason": finish,
            }
            if matched is not None:
                choice["stop_reason"] = matched
            choices.append(choice)
        total = max((len(w) for w in completions), default=0)
        await self._sleep(self.params.ttft_ms / 1000 + self._token_interval() * total)
        return _completion(ctx, choices, await self._usage(body, completions))

    async def _scripted_chat(
        self, body: JSONDict, ctx: CallContext, scripted: ScriptedAnswer
    ) -> JSONDict:
        n = int(body.get("n") or 1)
        choices = [
            {
                "index": index,
                "message": scripted.message(),
                "logprobs": None,
                "finish_reason": scripted.finish_reason,
            }
            for index in range(n)
        ]
        steps = len(scripted.deltas())
        await self._sleep(self.params.ttft_ms / 1000 + self._token_interval() * steps)
        usage = await self._usage(body, [[scripted.generated_text()]] * n)
        return _completion(ctx, choices, usage)

    async def stream_chat(self, body: JSONDict, ctx: CallContext) -> AsyncIterator[bytes]:
        await self._maybe_fail()
        completion_id, created = _completion_id(), int(time.time())
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(choices: list[JSONDict], usage: JSONDict | None = None) -> bytes:
            return chunk_bytes(
                completion_id,
                created,
                ctx.public_model,
                choices,
                include_usage=include_usage,
                usage=usage,
                fingerprint=FINGERPRINT,
            )

        n = int(body.get("n") or 1)
        outputs, deltas, finishes = self._stream_plan(body, n)
        # Per choice, per delta: its token's entry (plain answers only).
        logprobs = [self._logprobs(body, index, words) for index, words in enumerate(outputs)]
        await self._sleep(self.params.ttft_ms / 1000)
        for index in range(n):
            yield chunk([_choice(index, {"role": "assistant", "content": ""})])
        interval, cut = self._token_interval(), self.params.cut_after_tokens
        for position in range(max(len(steps) for steps in deltas)):
            if cut is not None and position >= cut:
                raise UpstreamConnectionError(
                    "simulated mid-stream cut", deployment=self.deployment_id
                )
            if interval and position:
                await self._sleep(interval)
            for index, steps in enumerate(deltas):
                if position < len(steps):
                    step = _choice(index, steps[position])
                    entries = logprobs[index]
                    if entries is not None:
                        step["logprobs"] = {"content": [entries[position]], "refusal": None}
                    yield chunk([step])
        for index, (finish, matched) in enumerate(finishes):
            closing = _choice(index, {}, finish)
            if matched is not None:
                closing["stop_reason"] = matched
            yield chunk([closing])
        if include_usage:
            yield chunk([], await self._usage(body, outputs))

    def _stream_plan(
        self, body: JSONDict, n: int
    ) -> tuple[list[list[str]], list[list[JSONDict]], list[tuple[str, str | None]]]:
        """Per choice: what it writes (for usage), its deltas, its finish
        reason and the stop sequence that ended it."""
        scripted = scripted_answer(body)
        if scripted is not None:
            deltas = [scripted.deltas() for _ in range(n)]
            finishes: list[tuple[str, str | None]] = [(scripted.finish_reason, None)] * n
            return [[scripted.generated_text()]] * n, deltas, finishes
        plans = [self._words(body, index) for index in range(n)]
        outputs = [words for words, _, _ in plans]
        deltas = [[{"content": word} for word in words] for words in outputs]
        return outputs, deltas, [(finish, matched) for _, finish, matched in plans]

    async def embed(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        await self._maybe_fail()
        inputs = _embedding_inputs(body.get("input"))
        dimensions = int(body.get("dimensions") or self.params.dimensions)
        _check_embedding_size(len(inputs), dimensions)
        data = []
        turn = time.perf_counter() + _SLICE_S
        for i, text in enumerate(inputs):
            vector = self._vector(text, dimensions)
            data.append({"object": "embedding", "index": i, "embedding": vector})
            if time.perf_counter() >= turn:
                await asyncio.sleep(0)
                turn = time.perf_counter() + _SLICE_S
        tokens = 0
        for text in inputs:
            tokens += await count_text(self._counter, text)
        return {
            "object": "list",
            "data": data,
            "model": ctx.public_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def moderate(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        """Keyword-scored moderation results (``simulator_moderation``)."""
        await self._maybe_fail()
        raw = body.get("input")
        if isinstance(raw, str):
            inputs = [(raw, frozenset({"text"}))]
        elif isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            inputs = [(item, frozenset({"text"})) for item in raw]
        else:  # the parts of one multimodal input: its text is what is scored
            parts = [p for p in raw or () if isinstance(p, dict)]
            text = " ".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")
            kinds = frozenset("image" if p.get("type") == "image_url" else "text" for p in parts)
            inputs = [(text, kinds)]
        seed = self.params.seed
        return {
            "id": f"modr-{random_hex(24)}",
            "model": ctx.public_model,
            "results": [moderation_result(text, seed, kinds) for text, kinds in inputs],
        }

    def _vector(self, text: str, dimensions: int) -> list[float]:
        digest = hashlib.blake2b(f"{self.params.seed}:{text}".encode(), digest_size=8).digest()
        rng = random.Random(int.from_bytes(digest, "big"))
        values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
        norm = math.sqrt(sum(v * v for v in values)) or 1.0
        return [v / norm for v in values]

    def _token_interval(self) -> float:
        return 1.0 / self.params.tokens_per_s if self.params.tokens_per_s else 0.0


_choice = chunk_choice


def _completion_id() -> str:
    return "chatcmpl-sim-" + random_hex(24)


def _completion(ctx: CallContext, choices: list[JSONDict], usage: JSONDict) -> JSONDict:
    return {
        "id": _completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": ctx.public_model,
        "choices": choices,
        "usage": usage,
        "system_fingerprint": FINGERPRINT,
    }


def _apply_stop(words: list[str], stop: Any, finish: str) -> tuple[list[str], str, str | None]:
    """The words up to the first stop sequence, as a server cuts them (the
    sequence left out), and which one it was: reported as vLLM does, in the
    choice's ``stop_reason``, which OpenAI's shape lacks and Anthropic's
    ``stop_sequence`` needs."""
    stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if isinstance(s, str)]
    text = "".join(words)
    found = [(at, s) for s in stops if s and (at := text.find(s)) >= 0]
    if not found:
        return words, finish, None
    cut, matched = min(found, key=lambda hit: hit[0])
    kept, length = [], 0
    for word in words:
        if length + len(word) > cut:
            if cut > length:
                kept.append(word[: cut - length])
            break
        kept.append(word)
        length += len(word)
    return kept, "stop", matched


def _check_embedding_size(inputs: int, dimensions: int) -> None:
    if dimensions > MAX_DIMENSIONS:
        raise InvalidRequest(
            f"The simulator makes vectors of at most {MAX_DIMENSIONS} dimensions.",
            param="dimensions",
        )
    if inputs * dimensions > MAX_EMBEDDING_NUMBERS:
        raise InvalidRequest(
            f"The simulator answers at most {MAX_EMBEDDING_NUMBERS:,} numbers a request "
            f"({inputs} inputs x {dimensions} dimensions asked): send fewer inputs at once.",
            param="input",
        )


def _embedding_inputs(raw: Any) -> list[str]:
    """Strings as given; token-id arrays are hashed by their decimal text."""
    if isinstance(raw, str):
        return [raw]
    items = list(raw or [])
    if items and all(isinstance(x, int) for x in items):
        return [" ".join(map(str, items))]
    return [x if isinstance(x, str) else " ".join(map(str, x)) for x in items]
