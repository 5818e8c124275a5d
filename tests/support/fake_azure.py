"""A fake Azure OpenAI data plane on loopback, speaking Azure's wire format.

``azure_app(requests)`` serves::

    POST /openai/deployments/{deployment}/chat/completions?api-version=...
    POST /openai/deployments/{deployment}/embeddings?api-version=...

as Azure does: without an ``api-key`` header a 401, without ``api-version``
a 404, both in Azure's error shape; answers in OpenAI's shape with Azure's
extras (``prompt_filter_results`` first, ``content_filter_results`` on
choices; in a stream, a first chunk with empty ``choices`` carrying the
prompt's filter results). Each request is appended to ``requests`` as
``{"path", "query", "body", "headers"}`` (headers lower-cased).

What it answers follows the test suite's shared fake-server contract,
decided from the request alone:

1. tools, a tool choice other than ``none`` and no tool results in the last
   turn: tool calls (the first two tools if the last user text has the word
   "parallel", streamed interleaved; else the named tool, else the first),
   arguments from each property's ``enum`` (its first value) or type (string
   "Paris", integer 3, number 1.5, boolean true, array [], object {});
   finish reason ``tool_calls``.
   Custom (freeform) tools are taken as OpenAI's own API takes them: a call
   to one carries ``CUSTOM_INPUT`` as its input;
2. tool results in the last turn: "Tool said: " and their texts joined by "; ";
3. ``response_format``: JSON from the schema by the same rule (``json_object``:
   ``{"answer": "Paris"}``);
4. an image in the last user message: "I see a <media type> image of <N> bytes"
   (a ``file`` part: "I read a <media type> document of <N> bytes");
5. otherwise "Hello from azure", streamed in three pieces;
6. last user text "overload me": Azure's 503 overload error; "rate limit me":
   its 429 with ``Retry-After``; "filter me": its 400 ``content_filter`` error.

Argument JSON and JSON content stream in at least three fragments.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

__all__ = ["CUSTOM_INPUT", "MODEL", "azure_app"]

# What Azure reports as ``model``: the deployment's underlying model version.
MODEL = "gpt-4o-2024-08-06"
# A custom tool's input in a call: a patch, with what JSON must escape in it.
CUSTOM_INPUT = '*** Begin Patch\n*** Add File: a.py\n+print("hi \\ there")\n*** End Patch'
EMBEDDING_MODEL = "text-embedding-3-small"
_SAFE = {"filtered": False, "severity": "safe"}
COMPLETION_FILTERS: dict[str, Any] = {
    "hate": _SAFE,
    "self_harm": _SAFE,
    "sexual": _SAFE,
    "violence": _SAFE,
}
PROMPT_FILTERS: list[dict[str, Any]] = [
    {
        "prompt_index": 0,
        "content_filter_results": {
            **COMPLETION_FILTERS,
            "jailbreak": {"filtered": False, "detected": False},
        },
    }
]
_LEAVES: dict[str, Any] = {
    "string": "Paris",
    "integer": 3,
    "number": 1.5,
    "boolean": True,
    "array": [],
    "object": {},
}
_PARALLEL = re.compile(r"\bparallel\b", re.IGNORECASE)


def azure_app(requests: list[dict[str, Any]] | None = None) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body, refused = await _admit(request, requests)
        if refused is not None:
            return refused
        failure = _failure(_last_user_text(body.get("messages") or []))
        if failure is not None:
            return failure
        answer = _answer(body)
        if body.get("stream"):
            return await _stream(request, body, answer)
        return web.json_response(_completion(body, answer))

    async def embeddings(request: web.Request) -> web.StreamResponse:
        body, refused = await _admit(request, requests)
        if refused is not None:
            return refused
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else [str(x) for x in raw or []]
        dimensions = int(body.get("dimensions") or 8)
        tokens = sum(_tokens(text) for text in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": _vector(text, dimensions)}
                    for i, text in enumerate(inputs)
                ],
                "model": EMBEDDING_MODEL,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    app = web.Application()
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", chat)
    app.router.add_post("/openai/deployments/{deployment}/embeddings", embeddings)
    return app


async def _admit(
    request: web.Request, requests: list[dict[str, Any]] | None
) -> tuple[dict[str, Any], web.Response | None]:
    """The request's body, recorded; or Azure's refusal of it."""
    body = await request.json()
    if requests is not None:
        requests.append(
            {
                "path": request.path,
                "query": dict(request.query),
                "body": body,
                "headers": {k.lower(): v for k, v in request.headers.items()},
            }
        )
    if not request.headers.get("api-key"):
        message = (
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
            "to provide a valid key for an active subscription and use a correct regional "
            "API endpoint for your resource."
        )
        return body, _error(401, {"code": "401", "message": message})
    if not request.query.get("api-version"):
        return body, _error(404, {"code": "404", "message": "Resource not found"})
    return body, None


def _error(status: int, error: dict[str, Any], **headers: str) -> web.Response:
    return web.json_response({"error": error}, status=status, headers=headers)


def _failure(text: str) -> web.Response | None:
    if text == "overload me":
        message = (
            "That model is currently overloaded with other requests. You can retry your "
            "request, or contact us through an Azure support request if the error persists."
        )
        error = {"message": message, "type": "server_error", "param": None, "code": None}
        return _error(503, error)
    if text == "rate limit me":
        message = (
            "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
            "2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing "
            "tier. Please retry after 1 second."
        )
        return _error(429, {"code": "429", "message": message}, **{"retry-after": "1"})
    if text == "filter me":
        message = (
            "The response was filtered due to the prompt triggering Azure OpenAI's content "
            "management policy. Please modify your prompt and retry."
        )
        inner = {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {
                **COMPLETION_FILTERS,
                "violence": {"filtered": True, "severity": "medium"},
            },
        }
        error = {
            "message": message,
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": inner,
        }
        return _error(400, error)
    return None


# -- what to answer ------------------------------------------------------------


@dataclass
class _Answer:
    content: str | None = None
    # id, name, arguments (a custom tool's call: its input), whether custom
    calls: list[tuple[str, str, str, bool]] = field(default_factory=list)
    structured: bool = False

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.calls else "stop"

    def generated(self) -> str:
        return self.content if self.content is not None else "".join(c[2] for c in self.calls)


def _answer(body: dict[str, Any]) -> _Answer:
    messages = body.get("messages") or []
    results = _tool_results(messages)
    if results is not None:
        return _Answer("Tool said: " + "; ".join(results))
    tools = [t.get("function") or {**t["custom"], "custom": True} for t in body.get("tools") or []]
    choice = body.get("tool_choice", "auto")
    if tools and choice != "none":
        parallel = body.get("parallel_tool_calls") is not False  # honoured, as OpenAI does
        if parallel and _PARALLEL.search(_last_user_text(messages)):
            chosen = tools[:2]
        elif isinstance(choice, dict):
            named = (choice.get("function") or choice.get("custom"))["name"]
            chosen = [t for t in tools if t["name"] == named]
        else:
            chosen = tools[:1]
        return _Answer(calls=[_call(t) for t in chosen])
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        return _Answer('{"answer":"Paris"}', structured=True)
    if fmt.get("type") == "json_schema":
        schema = fmt["json_schema"]["schema"]
        return _Answer(orjson.dumps(_from_schema(schema)).decode(), structured=True)
    image = _last_image(messages)
    if image is not None:
        return _Answer(image)
    return _Answer("Hello from azure")


def _tool_results(messages: list[dict[str, Any]]) -> list[str] | None:
    """Texts of the tool messages after the last assistant message."""
    found = []
    for message in reversed(messages):
        if message.get("role") == "assistant":
            break
        if message.get("role") == "tool":
            content = message.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content)
            found.append(str(content or ""))
    return found[::-1] or None


def _last_user(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return next((m for m in reversed(messages) if m.get("role") == "user"), {})


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    content = _last_user(messages).get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if p.get("type") == "text")
    return content if isinstance(content, str) else ""


def _last_image(messages: list[dict[str, Any]]) -> str | None:
    content = _last_user(messages).get("content")
    for part in content if isinstance(content, list) else ():
        if part.get("type") == "file":  # a document, OpenAI's way: a data: URL
            header, _, data = part["file"]["file_data"][5:].partition(",")
            size = len(base64.b64decode(data))
            return f"I read a {header.split(';')[0]} document of {size} bytes"
        if part.get("type") != "image_url":
            continue
        url = part["image_url"]["url"]
        if not url.startswith("data:"):
            return f"I see an image at {url}"
        header, _, data = url[5:].partition(",")
        return f"I see a {header.split(';')[0]} image of {len(base64.b64decode(data))} bytes"
    return None


def _call(tool: dict[str, Any]) -> tuple[str, str, str, bool]:
    if tool.get("custom"):
        return _call_id(), tool["name"], CUSTOM_INPUT, True
    return _call_id(), tool["name"], _arguments(tool), False


def _arguments(function: dict[str, Any]) -> str:
    return orjson.dumps(_from_schema(function.get("parameters") or {})).decode()


def _from_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The contract's rule: each property a fixed value of its type."""
    properties = schema.get("properties") or {}
    return {
        name: spec["enum"][0] if spec.get("enum") else _LEAVES.get(spec.get("type"), "Paris")
        for name, spec in properties.items()
    }


def _call_id() -> str:
    return "call_" + os.urandom(12).hex()


# -- responses -----------------------------------------------------------------


def _usage(body: dict[str, Any], answer: _Answer) -> dict[str, Any]:
    prompt = sum(4 + _tokens(orjson.dumps(m.get("content")).decode()) for m in body["messages"])
    completion = _tokens(answer.generated())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _completion(body: dict[str, Any], answer: _Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.content, "refusal": None}
    if answer.calls:
        message["tool_calls"] = [
            {"id": i, "type": "custom", "custom": {"name": n, "input": a}}
            if custom
            else {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
            for i, n, a, custom in answer.calls
        ]
    return {
        "id": "chatcmpl-azure-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL,
        "system_fingerprint": "fp_azure_fake",
        "prompt_filter_results": PROMPT_FILTERS,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": answer.finish_reason,
                "content_filter_results": {} if answer.calls else COMPLETION_FILTERS,
            }
        ],
        "usage": _usage(body, answer),
    }


async def _stream(
    request: web.Request, body: dict[str, Any], answer: _Answer
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8"})
    await response.prepare(request)
    created = int(time.time())

    async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
        chunk = {
            "id": "chatcmpl-azure-fake",
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL,
            "system_fingerprint": "fp_azure_fake",
            "choices": choices,
            **extra,
        }
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")

    def choice(delta: dict[str, Any], filters: Any, finish: str | None = None) -> dict[str, Any]:
        return {
            "index": 0,
            "delta": delta,
            "logprobs": None,
            "finish_reason": finish,
            "content_filter_results": filters,
        }

    # Azure's first chunk: no choices, the prompt's filter results, blank fields.
    first = {"choices": [], "created": 0, "id": "", "model": "", "object": ""}
    first["prompt_filter_results"] = PROMPT_FILTERS
    await response.write(b"data: " + orjson.dumps(first) + b"\n\n")
    if answer.calls:
        await send([choice({"role": "assistant", "content": None, "refusal": None}, {})])
        for delta in _call_deltas(answer.calls):
            await send([choice(delta, {})])
    else:
        await send([choice({"role": "assistant", "content": "", "refusal": None}, {})])
        text = answer.content or ""
        for piece in _fragments(text) if answer.structured else _words(text):
            await send([choice({"content": piece}, COMPLETION_FILTERS)])
    await send([choice({}, {}, answer.finish_reason)])
    if (body.get("stream_options") or {}).get("include_usage"):
        await send([], usage=_usage(body, answer))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def _call_deltas(calls: list[tuple[str, str, str, bool]]) -> list[dict[str, Any]]:
    """Each call opened, then its argument fragments, the calls interleaved."""
    streams = []
    for index, (call_id, name, arguments, custom) in enumerate(calls):
        if custom:  # as OpenAI streams them: the input's pieces under ``custom``
            opened = {"index": index, "id": call_id, "type": "custom"}
            opened["custom"] = {"name": name, "input": ""}
            pieces = [{"index": index, "custom": {"input": p}} for p in _fragments(arguments)]
        else:
            opened = {"index": index, "id": call_id, "type": "function"}
            opened["function"] = {"name": name, "arguments": ""}
            pieces = [{"index": index, "function": {"arguments": p}} for p in _fragments(arguments)]
        streams.append([opened, *pieces])
    longest = max(len(s) for s in streams)
    return [{"tool_calls": [s[i]]} for i in range(longest) for s in streams if i < len(s)]


def _fragments(text: str) -> list[str]:
    """``text`` in at least three pieces (when it has three characters)."""
    size = max(1, math.ceil(len(text) / 3))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [words[0], *(" " + w for w in words[1:])]


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def _vector(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    values = [digest[i % len(digest)] / 255 - 0.5 for i in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]
