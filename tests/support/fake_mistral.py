"""A fake Mistral chat API on loopback, as strict about fields as the real
one (its OpenAI-compatible ``/v1/chat/completions`` validates the body with
pydantic, extra fields forbidden)::

    POST /v1/chat/completions

``mistral_app(requests)`` appends each request body to ``requests``. A
field Mistral does not take (``stream_options``, ``max_completion_tokens``,
``seed``, ``user`` ...) is its 422 ``extra_forbidden``, naming it. The
answer is ``Bonjour from Mistral.``; streamed, a role chunk, one chunk per
word, and the usage on the last one, with its finish reason, unasked, as
Mistral sends it.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

__all__ = ["ANSWER", "mistral_app"]

ANSWER = "Bonjour from Mistral."
# The chat request fields Mistral documents.
_FIELDS = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "stream",
        "stop",
        "random_seed",
        "response_format",
        "tools",
        "tool_choice",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "prediction",
        "parallel_tool_calls",
        "prompt_mode",
        "safe_prompt",
    }
)
_USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def mistral_app(requests: list[dict[str, Any]] | None = None) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if requests is not None:
            requests.append(body)
        extra = sorted(set(body) - _FIELDS)
        if extra:
            detail = [
                {
                    "type": "extra_forbidden",
                    "loc": ["body", name],
                    "msg": "Extra inputs are not permitted",
                }
                for name in extra
            ]
            error = {
                "object": "error",
                "message": {"detail": detail},
                "type": "invalid_request_error",
            }
            return web.json_response(error, status=422)
        head = {"id": "cmpl-mistral", "created": 1, "model": body["model"]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": ANSWER}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return web.json_response(
                {**head, "object": "chat.completion", "choices": [choice], "usage": _USAGE}
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        words = ANSWER.split(" ")
        deltas = [{"role": "assistant", "content": ""}]
        deltas += [{"content": word if i == 0 else " " + word} for i, word in enumerate(words)]
        for i, delta in enumerate(deltas):
            last = i == len(deltas) - 1
            choice = {"index": 0, "delta": delta, "finish_reason": "stop" if last else None}
            chunk: dict[str, Any] = {**head, "object": "chat.completion.chunk", "choices": [choice]}
            if last:
                chunk["usage"] = _USAGE
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app
