"""A fake Anthropic Messages API (``POST /v1/messages``) that speaks the
documented wire format and follows the shared fake-server contract.

It checks what the real API checks and a translation can get wrong: the
``x-api-key`` (401) and ``anthropic-version`` (400) headers, roles that
alternate, ``tool_result`` blocks first in their user turn and answering the
previous turn's ``tool_use`` ids, non-empty text, and thinking's rules
(budget under ``max_tokens``, no forced tool, no temperature but 1, the
thinking block sent back before a tool loop's ``tool_use``). A broken rule is
a 400 ``invalid_request_error`` in Anthropic's error shape.

Its answer is decided by the request alone (the contract, in order): an
overload or rate-limit error when the last user text asks for one; tool calls
when tools may be called and the last user turn holds no tool results (the
first two on "parallel", streamed interleaved; else the named or the first
tool; the forced ``json_response`` tool of JSON mode gets
``{"answer": "Paris"}``); "Tool said: ..." after tool results; JSON of the
schema an ``output_config.format`` names; a description of an image or a
document (its media type and size in bytes); else
"Hello from anthropic". Offered its ``web_search_20250305`` server tool,
it searches (a ``server_tool_use`` call, its ``web_search_tool_result`` and
an answer citing it; "pause" in the question stops the turn after the
result with ``pause_turn``). Its schema-less client tools (``bash_20250124``,
``text_editor_...``, each under the name its version must have) are called
with ``{"command": "ls"}`` and a ``view`` of ``/``. With thinking on, a signed thinking
block comes first. Any ``cache_control`` marker reports 100 cache-read and 50
cache-write tokens; more than four (a top-level one counted) is Anthropic's
400. Tool search as Anthropic runs it: a tool with
``defer_loading`` is not called until a tool result's ``tool_reference``
block loads it (a reference to a tool not in ``tools`` is the 400 "Tool
reference 'X' not found in available tools"; every tool deferred, a 400); a
result's references read as "loaded <name>".
"""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson
from aiohttp import web

__all__ = ["anthropic_app"]

JSON_OBJECT_TOOL = "json_response"
SIGNATURE = "c2lnbmVkLWJ5LXRoZS1mYWtl"  # what a thinking block's signature looks like: opaque
_EXAMPLES: dict[str, Any] = {
    "string": "Paris",
    "integer": 3,
    "number": 1.5,
    "boolean": True,
    "array": [],
    "object": {},
}

Block = dict[str, Any]

# Anthropic's server tool the fake runs, and what its search finds.
WEB_SEARCH_TOOL = "web_search_20250305"
SEARCH_RESULT: Block = {
    "type": "web_search_result",
    "title": "Paris",
    "url": "https://example.com/paris",
    "encrypted_content": "ZW5jcnlwdGVkLXBhZ2U=",
    "page_age": "2 days ago",
}
CITED_ANSWER: Block = {
    "type": "text",
    "text": "Paris is the capital of France.",
    "citations": [
        {
            "type": "web_search_result_location",
            "url": "https://example.com/paris",
            "title": "Paris",
            "encrypted_index": "aW5kZXg=",
            "cited_text": "Paris is the capital and largest city of France.",
        }
    ],
}


class Invalid(Exception):
    """A request the real API answers with 400 invalid_request_error."""


def anthropic_app(requests: list[dict[str, Any]] | None = None) -> web.Application:
    """The fake; each request's path, parsed body and lower-cased headers are
    appended to ``requests`` when given."""

    async def messages(request: web.Request) -> web.StreamResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        if requests is not None:
            requests.append({"path": request.path, "body": body, "headers": headers})
        if not headers.get("x-api-key"):
            return _error(401, "authentication_error", "x-api-key header is required")
        if not headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        try:
            _validate(body)
        except Invalid as exc:
            return _error(400, "invalid_request_error", str(exc))
        said = _last_user_text(body["messages"])
        if said == "overload me":
            return _error(529, "overloaded_error", "Overloaded")
        if said == "rate limit me":
            return _error(
                429, "rate_limit_error", "Number of request tokens has exceeded your rate limit"
            )
        blocks, stop_reason = _answer(body)
        message = _message(body, blocks, stop_reason)
        if body.get("stream"):
            return await _stream(request, message)
        return web.json_response(message)

    app = web.Application(client_max_size=32 * 1024 * 1024)
    app.router.add_post("/v1/messages", messages)
    return app


def _error(status: int, kind: str, text: str) -> web.Response:
    payload = {"type": "error", "error": {"type": kind, "message": text}, "request_id": "req_fake"}
    return web.json_response(payload, status=status)


# -- validation: what the real API refuses -------------------------------------


def _validate(body: Any) -> None:
    if not isinstance(body, dict):
        raise Invalid("request body must be a JSON object")
    if not isinstance(body.get("model"), str):
        raise Invalid("model: Field required")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        raise Invalid("max_tokens: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("messages: at least one message is required")
    tools = body.get("tools") or []
    for i, tool in enumerate(tools):
        if tool.get("type") not in (None, "custom"):
            _check_server_tool(tool, i)
            continue
        schema = tool.get("input_schema")
        if not tool.get("name") or not isinstance(schema, dict) or schema.get("type") != "object":
            raise Invalid(f"tools.{i}: a tool needs a name and an object input_schema")
    choice = body.get("tool_choice") or {"type": "auto"}
    if choice.get("type") == "tool" and choice.get("name") not in {t["name"] for t in tools}:
        raise Invalid("tool_choice: names a tool that is not in tools")
    if tools and all(tool.get("defer_loading") for tool in tools):
        raise Invalid("tools: at least one tool must not be deferred (defer_loading)")
    for name in _referenced(messages):
        if name not in {t.get("name") for t in tools}:
            raise Invalid(f"Tool reference '{name}' not found in available tools")
    previous: list[Block] = []
    for i, message in enumerate(messages):
        blocks = _blocks(message, i, last=i == len(messages) - 1)
        if i > 0 and message["role"] == messages[i - 1]["role"]:
            raise Invalid(
                'messages: roles must alternate between "user" and "assistant", but found '
                f'multiple "{message["role"]}" roles in a row'
            )
        _check_turn(message["role"], blocks, previous, i)
        previous = blocks
    if _thinking_on(body):
        _check_thinking(body, messages)
    _check_output_config(body.get("output_config"))
    _check_cache_markers(body)


def _check_cache_markers(body: Block) -> None:
    """Anthropic's limit: four blocks marked ``cache_control`` in a request
    (the request's own top-level marker apart); a marker is ephemeral, its
    ttl 5m or 1h."""
    blocks = [*(body.get("tools") or [])]
    if isinstance(body.get("system"), list):
        blocks += body["system"]
    for message in body["messages"]:
        if isinstance(message.get("content"), list):
            blocks += message["content"]
    markers = [b["cache_control"] for b in blocks if isinstance(b, dict) and "cache_control" in b]
    if isinstance(body.get("cache_control"), dict):
        markers.append(body["cache_control"])
    if len(markers) > 4:
        raise Invalid(
            f"A maximum of 4 blocks with cache_control may be provided. Found {len(markers)}."
        )
    for marker in markers:
        if marker.get("type") != "ephemeral" or marker.get("ttl", "5m") not in ("5m", "1h"):
            raise Invalid(f"cache_control: invalid marker {marker}")


# Anthropic's schema-less client tools and the name each version must have.
CLIENT_TOOLS = {
    "bash_20250124": "bash",
    "text_editor_20250728": "str_replace_based_edit_tool",
    "text_editor_20250124": "str_replace_editor",
}


def _check_server_tool(tool: Block, i: int) -> None:
    if tool["type"] in CLIENT_TOOLS:
        if tool.get("name") != CLIENT_TOOLS[tool["type"]]:
            raise Invalid(f"tools.{i}.name: must be '{CLIENT_TOOLS[tool['type']]}'")
        return
    if tool["type"] != WEB_SEARCH_TOOL:
        raise Invalid(f"tools.{i}.type: unknown tool type '{tool['type']}'")
    if tool.get("name") != "web_search":
        raise Invalid(f"tools.{i}.name: the web search tool must be named 'web_search'")
    if not isinstance(tool.get("max_uses", 1), int):
        raise Invalid(f"tools.{i}.max_uses: must be an integer")


def _blocks(message: Any, i: int, last: bool) -> list[Block]:
    role = message.get("role") if isinstance(message, dict) else None
    if role not in ("user", "assistant"):
        raise Invalid(f"messages.{i}.role: must be 'user' or 'assistant'")
    content = message.get("content")
    if isinstance(content, str):
        if not content and not (last and role == "assistant"):
            raise Invalid(f"messages.{i}: all messages must have non-empty content")
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list) or not (content or (last and role == "assistant")):
        raise Invalid(f"messages.{i}: all messages must have non-empty content")
    for j, block in enumerate(content):
        if block.get("type") == "text" and not block.get("text"):
            raise Invalid(f"messages.{i}.content.{j}: text content blocks must be non-empty")
        if block.get("type") == "image":
            _check_image(block.get("source") or {}, f"messages.{i}.content.{j}")
        if block.get("type") == "document":
            _check_document(block.get("source") or {}, f"messages.{i}.content.{j}")
        if block.get("type") == "tool_reference":
            raise Invalid(
                f"messages.{i}.content.{j}: tool_reference blocks belong in a tool_result"
            )
    return content


def _referenced(messages: list[Any]) -> list[str]:
    """The tools the conversation's tool results loaded (tool search)."""
    names = []
    for message in messages:
        for block in _content_blocks(message):
            content = block.get("content") if block.get("type") == "tool_result" else None
            for part in content if isinstance(content, list) else ():
                if part.get("type") == "tool_reference":
                    names.append(part.get("tool_name"))
    return names


def _check_document(source: Block, where: str) -> None:
    if source.get("type") == "text" and source.get("media_type") == "text/plain":
        if not isinstance(source.get("data"), str):
            raise Invalid(f"{where}.source.data: a text document's data must be a string")
    elif source.get("type") == "base64" and source.get("media_type") == "application/pdf":
        try:
            base64.b64decode(source.get("data") or "", validate=True)
        except ValueError:
            raise Invalid(f"{where}.source.data: invalid base64 data") from None
    else:
        raise Invalid(f"{where}.source: a document source must be a base64 PDF or text")


def _check_image(source: Block, where: str) -> None:
    if source.get("type") == "base64" and source.get("media_type") and source.get("data"):
        try:
            base64.b64decode(source["data"], validate=True)
        except ValueError:  # binascii.Error is one
            raise Invalid(f"{where}.source.data: invalid base64 data") from None
    elif source.get("type") != "url" or not str(source.get("url", "")).startswith("http"):
        raise Invalid(f"{where}.source: an image source must be base64 or a URL")


def _check_turn(role: str, blocks: list[Block], previous: list[Block], i: int) -> None:
    if i == 0 and role != "user":
        raise Invalid('messages: first message must use the "user" role')
    kinds = [b.get("type") for b in blocks]
    if "tool_result" in kinds:
        if role != "user":
            raise Invalid(f"messages.{i}: tool_result blocks belong in a user message")
        first_other = next((k for k, kind in enumerate(kinds) if kind != "tool_result"), len(kinds))
        if "tool_result" in kinds[first_other:]:
            raise Invalid(
                f"messages.{i}: tool_result blocks must come first in the user message, "
                "before any other content"
            )
    asked = {b["id"] for b in previous if b.get("type") == "tool_use"}
    answered = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
    if answered - asked:
        raise Invalid(
            f"messages.{i}: unexpected `tool_use_id` found in `tool_result` blocks: "
            f"{sorted(map(str, answered - asked))}. Each `tool_result` block must have a "
            "corresponding `tool_use` block in the previous message."
        )
    if asked and role == "user" and asked - answered:
        raise Invalid(
            f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
            f"immediately after: {sorted(asked - answered)}"
        )


def _check_output_config(config: Any) -> None:
    if config is None:
        return
    if not isinstance(config, dict) or set(config) - {"effort", "format"}:
        raise Invalid("output_config: only effort and format are allowed")
    if config.get("effort") not in (None, "low", "medium", "high", "xhigh", "max"):
        raise Invalid("output_config.effort: not a known effort")
    fmt = config.get("format")
    if fmt is not None and (fmt.get("type") != "json_schema" or "schema" not in fmt):
        raise Invalid("output_config.format: a json_schema format needs its schema")


def _check_thinking(body: Block, messages: list[Block]) -> None:
    budget = body["thinking"].get("budget_tokens")
    if not isinstance(budget, int) or budget < 1024 or budget >= body["max_tokens"]:
        raise Invalid("thinking.budget_tokens: must be at least 1024 and less than max_tokens")
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        raise Invalid("Thinking may not be enabled when tool_choice forces tool use.")
    if body.get("temperature", 1) != 1 or "top_k" in body:
        raise Invalid("temperature may only be set to 1 when thinking is enabled")
    assistants = [m for m in messages if m["role"] == "assistant"]
    last = _content_blocks(assistants[-1]) if assistants else []
    if any(b.get("type") == "tool_use" for b in last) and last[0].get("type") not in (
        "thinking",
        "redacted_thinking",
    ):
        raise Invalid(
            "Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` "
            "is enabled, a final `assistant` message must start with a thinking block."
        )


# -- the answer ----------------------------------------------------------------


def _answer(body: Block) -> tuple[list[Block], str]:
    messages = body["messages"]
    last = _content_blocks(messages[-1]) if messages[-1]["role"] == "user" else []
    results = [b for b in last if b.get("type") == "tool_result"]
    loaded = set(_referenced(messages))
    tools = [
        t for t in body.get("tools") or [] if not t.get("defer_loading") or t["name"] in loaded
    ]
    choice = body.get("tool_choice") or {"type": "auto"}
    blocks: list[Block] = []
    if _thinking_on(body):
        blocks.append({"type": "thinking", "thinking": "Let me think.", "signature": SIGNATURE})
    searches = any(t.get("type") == WEB_SEARCH_TOOL for t in tools)
    if searches and choice.get("type") != "none" and choice.get("name") in (None, "web_search"):
        return _searched(body, blocks)
    if tools and choice.get("type") != "none" and not results:
        for k, tool in enumerate(_called(tools, choice, _last_user_text(messages))):
            call_id = f"toolu_{len(messages):02d}{k}fake"
            blocks.append(
                {"type": "tool_use", "id": call_id, "name": tool["name"], "input": _arguments(tool)}
            )
        return blocks, "tool_use"
    output_format = (body.get("output_config") or {}).get("format")
    if results:
        text = "Tool said: " + "; ".join(_result_text(r) for r in results)
    elif output_format is not None:  # structured output: JSON of the schema
        schema = output_format["schema"]
        answer = {name: _example(p) for name, p in (schema.get("properties") or {}).items()}
        text = orjson.dumps(answer).decode()
    elif images := [b for b in last if b.get("type") == "image"]:
        text = _seen(images[0]["source"])
    elif documents := [b for b in last if b.get("type") == "document"]:
        source = documents[0]["source"]
        data = source["data"]
        size = len(data.encode() if source["type"] == "text" else base64.b64decode(data))
        text = f"I read a {source['media_type']} document of {size} bytes"
    else:
        text = "Hello from anthropic"
    blocks.append({"type": "text", "text": text})
    return blocks, "end_turn"


def _searched(body: Block, blocks: list[Block]) -> tuple[list[Block], str]:
    """A web search Anthropic ran: its call and result, then the cited answer;
    asked to "pause", the turn stops after the result (``pause_turn``), and a
    paused turn sent back is continued with the answer alone."""
    messages = body["messages"]
    last = messages[-1]
    if last["role"] == "assistant" and any(
        b.get("type") == "web_search_tool_result" for b in _content_blocks(last)
    ):
        return [*blocks, CITED_ANSWER], "end_turn"
    said = _last_user_text(messages)
    call_id = f"srvtoolu_{len(messages):02d}fake"
    blocks += [
        {"type": "text", "text": "Let me search. "},
        {"type": "server_tool_use", "id": call_id, "name": "web_search", "input": {"query": said}},
        {"type": "web_search_tool_result", "tool_use_id": call_id, "content": [SEARCH_RESULT]},
    ]
    if re.search(r"\bpause\b", said, re.IGNORECASE):
        return blocks, "pause_turn"
    return [*blocks, CITED_ANSWER], "end_turn"


def _called(tools: list[Block], choice: Block, said: str) -> list[Block]:
    parallel = not choice.get("disable_parallel_tool_use")  # honoured, as Anthropic does
    if parallel and re.search(r"\bparallel\b", said, re.IGNORECASE):
        return tools[:2]
    if choice.get("type") == "tool":
        return [t for t in tools if t["name"] == choice["name"]]
    return tools[:1]


def _arguments(tool: Block) -> Any:
    if tool.get("type") in CLIENT_TOOLS:  # schema-less: Anthropic knows the input's shape
        return {"command": "ls"} if tool["name"] == "bash" else {"command": "view", "path": "/"}
    schema = tool["input_schema"]
    if tool["name"] == JSON_OBJECT_TOOL and not schema.get("properties"):
        return {"answer": "Paris"}
    return {name: _example(prop) for name, prop in (schema.get("properties") or {}).items()}


def _example(schema: Any) -> Any:
    if isinstance(schema, dict) and schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(kind, list):  # ["string", "null"]
        kind = next((k for k in kind if k != "null"), None)
    return _EXAMPLES.get(kind, "Paris") if isinstance(kind, str) else "Paris"


def _result_text(result: Block) -> str:
    content = result.get("content", "")
    if isinstance(content, list):
        said = [b.get("text", "") for b in content if b.get("type") == "text"]
        loaded = [f"loaded {b['tool_name']}" for b in content if b.get("type") == "tool_reference"]
        return "".join(said) + ", ".join(loaded)
    return str(content)


def _seen(source: Block) -> str:
    if source["type"] == "url":
        return f"I see an image at {source['url']}"
    size = len(base64.b64decode(source["data"]))
    return f"I see a {source['media_type']} image of {size} bytes"


def _content_blocks(message: Block) -> list[Block]:
    content = message["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _last_user_text(messages: list[Block]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            blocks = _content_blocks(message)
            return "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    return ""


def _thinking_on(body: Block) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") == "enabled"


def _message(body: Block, blocks: list[Block], stop_reason: str) -> Block:
    cached = b"cache_control" in orjson.dumps(body)
    prompt = {k: body.get(k) for k in ("system", "messages", "tools")}
    return {
        "id": f"msg_fake{len(body['messages']):02d}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": max(1, len(orjson.dumps(prompt)) // 4),
            "cache_creation_input_tokens": 50 if cached else 0,
            "cache_read_input_tokens": 100 if cached else 0,
            "output_tokens": max(1, len(orjson.dumps(blocks)) // 4),
            **_server_tool_use(blocks),
        },
    }


def _server_tool_use(blocks: list[Block]) -> Block:
    """Searches run, reported as Anthropic does (they are billed apart)."""
    searches = sum(1 for b in blocks if b["type"] == "server_tool_use")
    return {"server_tool_use": {"web_search_requests": searches}} if searches else {}


# -- streaming -----------------------------------------------------------------


async def _stream(request: web.Request, message: Block) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    for kind, data in _events(message):
        await response.write(
            b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        )
    await response.write_eof()
    return response


def _events(message: Block) -> list[tuple[str, Block]]:
    """The documented sequence; two tool_use blocks stream interleaved."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[tuple[str, Block]] = [
        ("message_start", {"type": "message_start", "message": start})
    ]
    blocks = list(enumerate(message["content"]))
    calls = [(i, b) for i, b in blocks if b["type"] == "tool_use"]
    for i, block in blocks:
        if block["type"] == "tool_use":
            continue
        events += _opened(i, block)
        events += [_delta(i, d) for d in _deltas(block)]
        events.append(_stopped(i))
    for i, block in calls:
        events += _opened(i, block)
    streams = [[_delta(i, d) for d in _deltas(block)] for i, block in calls]
    for step in range(max((len(s) for s in streams), default=0)):
        events += [s[step] for s in streams if step < len(s)]
    events += [_stopped(i) for i, _ in calls]
    events.insert(2, ("ping", {"type": "ping"}))
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    ending = {
        "type": "message_delta",
        "delta": delta,
        "usage": {"output_tokens": usage["output_tokens"], **_server_tool_use(message["content"])},
    }
    events += [("message_delta", ending), ("message_stop", {"type": "message_stop"})]
    return events


def _opened(index: int, block: Block) -> list[tuple[str, Block]]:
    kind = block["type"]
    if kind in ("tool_use", "server_tool_use"):
        empty = {**block, "input": {}}
    elif kind.endswith("_tool_result"):
        empty = block  # a result comes whole in its start
    else:
        empty = {
            "text": {"type": "text", "text": ""},
            "thinking": {"type": "thinking", "thinking": ""},
        }[kind]
    return [
        (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": empty},
        )
    ]


def _deltas(block: Block) -> list[Block]:
    if block["type"].endswith("_tool_result"):
        return []
    if block["type"] == "text":
        cited = [{"type": "citations_delta", "citation": c} for c in block.get("citations") or ()]
        return cited + [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
    if block["type"] == "thinking":
        pieces = [{"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"])]
        return [*pieces, {"type": "signature_delta", "signature": block["signature"]}]
    json = orjson.dumps(block["input"]).decode()
    return [{"type": "input_json_delta", "partial_json": p} for p in _pieces(json)]


def _pieces(text: str, count: int = 3) -> list[str]:
    """``text`` in at least ``count`` pieces; a short one starts with empty
    pieces (Anthropic's tool input often opens with an empty partial_json)."""
    size = max(1, -(-len(text) // count))
    pieces = [text[k : k + size] for k in range(0, len(text), size)]
    return [""] * (count - len(pieces)) + pieces


def _delta(index: int, delta: Block) -> tuple[str, Block]:
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def _stopped(index: int) -> tuple[str, Block]:
    return ("content_block_stop", {"type": "content_block_stop", "index": index})
