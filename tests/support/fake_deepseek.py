"""A fake DeepSeek chat API on loopback, strict where the real one is
(its thinking-mode guide, ``api-docs.deepseek.com/guides/thinking_mode``,
and the 400s its users meet)::

    POST /chat/completions

``deepseek_app(requests)`` appends each request body to ``requests``.
``refuses_max_tokens``: refuse ``max_tokens`` as OpenAI's reasoning models
(gpt-5, o-series) do, asking for ``max_completion_tokens``.
``empty_is_missing``: refuse "" as Moonshot's Kimi (K2.5, K2.6) does, where
DeepSeek takes it. ``fixed_temperature``: refuse any ``temperature`` but the
one Kimi K2.5 and K2.6 fix, 1 in thinking mode and 0.6 out of it ("invalid
temperature: only 1 is allowed for this model", the 400 their users meet).
``field``: the name it writes and reads a turn's reasoning by,
``reasoning_content`` (DeepSeek) or ``reasoning`` (as vLLM since 0.16,
Ollama and OpenRouter write it; vLLM reads no other, though it refuses
nothing: the fake is as strict under either name, so a test shows the
reasoning came back under the name the server reads).

- Roles are ``system``, ``user``, ``assistant`` and ``tool``: any other
  (``developer``) is DeepSeek's 400 for a body it cannot read.
- Thinking mode is on unless ``thinking: {"type": "disabled"}``. In it, once
  the conversation holds a tool call, every assistant message must carry
  its reasoning back (``field``, a string: "" will do): else the 400
  "Missing `reasoning_content` field in the assistant message at message
  index N".
- The answer: in thinking mode its reasoning (``field``) is ``REASONED``
  followed by the round (``REASONED + " 1"`` first: one per assistant
  message so far, plus one), so a test can tell which turn's reasoning came
  back. With ``tools`` and a user message last, it calls the first tool
  (``arguments`` ``{}``, call id ``call_<round>``, finish ``tool_calls``);
  after a tool's result it answers ``Tool said: <result>.``; else
  ``Hello from DeepSeek.``. Streamed (``stream``) as DeepSeek does: a role
  chunk, the reasoning in two pieces, the text in words or the call in
  one chunk, a finish chunk, the usage chunk (``stream_options.include_usage``),
  then ``[DONE]``. Usage: 10 prompt tokens, ``CACHE_HITS`` of them from the
  context cache, in DeepSeek's own fields (``prompt_cache_hit_tokens``).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

__all__ = ["CACHE_HITS", "MODEL", "REASONED", "deepseek_app"]

MODEL = "deepseek-v4-flash"
REASONED = "Let me think about round"
CACHE_HITS = 6  # of every prompt's 10 tokens, read from DeepSeek's context cache
_ROLES = ("system", "user", "assistant", "tool")


def deepseek_app(
    requests: list[dict[str, Any]] | None = None,
    field: str = "reasoning_content",
    *,
    empty_is_missing: bool = False,
    refuses_max_tokens: bool = False,
    fixed_temperature: bool = False,
) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if requests is not None:
            requests.append(body)
        refused = _refused(body, field, empty_is_missing)
        if refuses_max_tokens and "max_tokens" in body:
            refused = (
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead."
            )
        if fixed_temperature and "temperature" in body:
            fixed = 1 if _thinking(body) else 0.6
            if body["temperature"] != fixed:
                refused = f"invalid temperature: only {fixed} is allowed for this model"
        if refused is not None:
            error = {"message": refused, "type": "invalid_request_error", "param": None}
            return web.json_response(
                {"error": {**error, "code": "invalid_request_error"}}, status=400
            )
        answer = _answer(body, field)
        if body.get("stream"):
            return await _stream(request, body, answer, field)
        return web.json_response(
            {
                **_head(body, "chat.completion"),
                "choices": [{"index": 0, "message": answer, "finish_reason": _finish(answer)}],
                "usage": _usage(answer, field),
            }
        )

    app = web.Application()
    app.router.add_post("/chat/completions", chat)
    return app


def _refused(body: dict[str, Any], field: str, empty_is_missing: bool) -> str | None:
    messages = body.get("messages") or []
    for index, message in enumerate(messages):
        if message.get("role") not in _ROLES:
            return (
                "Failed to deserialize the JSON body into the target type: "
                f"messages[{index}].role: unknown variant `{message.get('role')}`, "
                "expected one of `system`, `user`, `assistant`, `tool`"
            )
    if not _thinking(body) or not any(m.get("tool_calls") for m in messages):
        return None
    for index, message in enumerate(messages):
        kept = message.get(field)
        if message.get("role") == "assistant" and (
            not isinstance(kept, str) or (empty_is_missing and not kept)
        ):
            return (
                f"Missing `{field}` field in the assistant message at message "
                f"index {index}. For more information, please refer to "
                "https://api-docs.deepseek.com/guides/thinking_mode#tool-calls"
            )
    return None


def _thinking(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return not (isinstance(thinking, dict) and thinking.get("type") == "disabled")


def _answer(body: dict[str, Any], field: str) -> dict[str, Any]:
    messages = body["messages"]
    rounds = sum(1 for m in messages if m.get("role") == "assistant") + 1
    answer: dict[str, Any] = {"role": "assistant", "content": None}
    if _thinking(body):
        answer[field] = f"{REASONED} {rounds}."
    last = messages[-1]
    tools = body.get("tools") or []
    if last.get("role") == "user" and tools:
        name = tools[0]["function"]["name"]
        answer["tool_calls"] = [
            {
                "id": f"call_{rounds}",
                "type": "function",
                "function": {"name": name, "arguments": "{}"},
            }
        ]
    elif last.get("role") == "tool":
        answer["content"] = f"Tool said: {last.get('content')}."
    else:
        answer["content"] = "Hello from DeepSeek."
    return answer


def _finish(answer: dict[str, Any]) -> str:
    return "tool_calls" if answer.get("tool_calls") else "stop"


def _head(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return {"id": "ds-fake-1", "object": kind, "created": 1, "model": body.get("model", MODEL)}


def _usage(answer: dict[str, Any], field: str) -> dict[str, Any]:
    reasoning = len((answer.get(field) or "").split())
    said = len((answer.get("content") or "").split()) + len(answer.get("tool_calls") or ())
    return {
        "prompt_tokens": 10,
        "completion_tokens": reasoning + said,
        "total_tokens": 10 + reasoning + said,
        # DeepSeek's own names for its context cache's share of the prompt.
        "prompt_cache_hit_tokens": CACHE_HITS,
        "prompt_cache_miss_tokens": 10 - CACHE_HITS,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


async def _stream(
    request: web.Request, body: dict[str, Any], answer: dict[str, Any], field: str
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    head = _head(body, "chat.completion.chunk")

    async def write(delta: dict[str, Any], finish: str | None = None) -> None:
        chunk = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")

    await write({"role": "assistant", "content": ""})
    reasoning = answer.get(field)
    if reasoning:
        middle = len(reasoning) // 2
        await write({field: reasoning[:middle]})
        await write({field: reasoning[middle:]})
    for index, call in enumerate(answer.get("tool_calls") or ()):
        await write({"tool_calls": [{"index": index, **call}]})
    words = (answer.get("content") or "").split(" ")
    for at, word in enumerate(words if answer.get("content") else ()):
        await write({"content": word if at == 0 else " " + word})
    await write({}, _finish(answer))
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {**head, "choices": [], "usage": _usage(answer, field)}
        await response.write(b"data: " + orjson.dumps(usage) + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response
