"""Mid-stream failover (opt-in per model group: ``routing.mid_stream_failover``).

If a deployment dies after the client has received part of an answer, the
gateway asks another deployment to continue that answer, sending the
partial text as context, and forwards the continuation as part of the same
stream: same completion id, created time and model, no second role chunk.
The client sees one uninterrupted stream.

Limits, by design: only the first choice (``n`` = 1) and text content are
carried over; the continuation is a new generation, so its wording can
differ from what the first deployment would have said; the usage reported
is the continuation's (the first deployment's partial usage is lost with
the connection); a deployment that failed is not tried again for the same
request; and if no other deployment can continue, the original failure
reaches the client as the usual SSE error event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from interlock.errors import InterlockError, ProviderError
from interlock.providers.base import JSONDict
from interlock.routing.router import CLIENT_ERROR, error_kind
from interlock.telemetry.record import RequestRecord

__all__ = ["CONTINUE_INSTRUCTION", "continue_on_failure"]

CONTINUE_INSTRUCTION = (
    "Your previous answer was cut off. Continue it exactly where it stopped, "
    "without repeating anything and without any preamble."
)

# (body for the continuation, deployments to leave out) -> (first chunk, rest)
Resume = Callable[[JSONDict, frozenset[str]], Awaitable[tuple[bytes | None, AsyncIterator[bytes]]]]


async def continue_on_failure(
    first: bytes | None,
    chunks: AsyncIterator[bytes],
    body: JSONDict,
    record: RequestRecord,
    resume: Resume,
) -> AsyncIterator[bytes]:
    identity: dict[str, Any] = {}
    text: list[str] = []
    failed: set[str] = set()
    current: AsyncIterator[bytes] = chunks
    pending = [first] if first is not None else []
    while True:
        try:
            for chunk in pending:
                _collect(chunk, identity, text)
                yield chunk
            pending = []
            async for chunk in current:
                _collect(chunk, identity, text)
                yield chunk
            return
        except ProviderError as exc:
            if error_kind(exc) == CLIENT_ERROR or not identity:
                raise
            failed.add(record.deployment or "")
            continuation = _continuation_body(body, "".join(text))
            try:
                first_again, current = await resume(continuation, frozenset(failed))
            except InterlockError:
                raise exc from None
            record.failovers_mid_stream += 1
            current = _as_continuation(first_again, current, identity)


def _collect(chunk: bytes, identity: dict[str, Any], text: list[str]) -> None:
    parsed = orjson.loads(chunk)
    if not identity:
        identity.update(
            id=parsed.get("id"), created=parsed.get("created"), model=parsed.get("model")
        )
    for choice in parsed.get("choices") or ():
        content = (choice.get("delta") or {}).get("content")
        if choice.get("index", 0) == 0 and isinstance(content, str):
            text.append(content)


def _continuation_body(body: JSONDict, partial: str) -> JSONDict:
    messages = [
        *body.get("messages", ()),
        {"role": "assistant", "content": partial},
        {"role": "user", "content": CONTINUE_INSTRUCTION},
    ]
    return {**body, "messages": messages}


async def _as_continuation(
    first: bytes | None, rest: AsyncIterator[bytes], identity: dict[str, Any]
) -> AsyncIterator[bytes]:
    """The new deployment's chunks, dressed as the original stream's."""
    if first is not None:
        rewritten = _rewrite(first, identity)
        if rewritten is not None:
            yield rewritten
    async for chunk in rest:
        rewritten = _rewrite(chunk, identity)
        if rewritten is not None:
            yield rewritten


def _rewrite(chunk: bytes, identity: dict[str, Any]) -> bytes | None:
    parsed = orjson.loads(chunk)
    parsed.update(identity)
    for choice in parsed.get("choices") or ():
        delta = choice.get("delta") or {}
        delta.pop("role", None)  # the client already had the role chunk
        if not delta and choice.get("finish_reason") is None:
            return None
    return orjson.dumps(parsed)
