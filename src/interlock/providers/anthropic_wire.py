"""Anthropic Messages wire translation, no I/O: an OpenAI chat request -> a
``POST /v1/messages`` body. ``anthropic_answer.py`` translates a message
back, ``anthropic_stream.py`` stream events; ``anthropic.py`` holds the
adapter that does the calls, and its module docstring says what is and is
not translated.

Structured outputs (``response_format``) use the forced-tool mechanism
Anthropic documents for JSON output: one extra tool whose ``input_schema`` is
the wanted schema, and a ``tool_choice`` that makes the model call it; the
call's ``input`` is handed back as the message content. It works on every
Claude model and is generally available, where the ``output_format`` beta
covers only some models and needs a beta header whose shape may still change.
Its one cost: Anthropic refuses thinking together with a forced tool, so
``reasoning_effort`` with ``response_format`` is a 400. A request from the
Messages edge that brought its own ``output_config`` keeps it instead: sent
natively, its format answered as Anthropic's structured output, no tool.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from interlock.chat_markers import (
    ANTHROPIC_TOOLS,
    CONTENT_BLOCKS,
    HOSTED_WEB_SEARCH,
    IMAGE_TRANSFORMATIONS,
    NATIVE_HINTS,
    SAID_BY_CHAT,
    TOOL_REFERENCES,
    cached_search,
    is_openai_reasoning,
    still_said,
)
from interlock.errors import InvalidRequest
from interlock.providers.base import JSONDict
from interlock.providers.documents import InlineDocument, document_of
from interlock.providers.openai_request import (
    FunctionTool,
    ResponseFormat,
    ToolChoice,
    checked_params,
    function_tools,
    image_of,
    reasoning_budget,
    response_format,
    tool_calls_of,
    tool_choice,
)
from interlock.providers.prompt_cache import automatic_marker, kept_latest, part_marker
from interlock.providers.upstream_errors import ShapeError

__all__ = ["JSON_OBJECT_TOOL", "SUPPORTED", "ShapeError", "WireRequest", "chat_request"]

# Anthropic requires max_tokens; OpenAI clients often leave it out.
DEFAULT_MAX_TOKENS = 4096
# The forced tool's name for ``response_format`` ``json_object`` (no schema name).
JSON_OBJECT_TOOL = "json_response"
SUPPORTED = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        "response_format",
        "reasoning_effort",
        "web_search_options",
    }
)
# Anthropic's web search server tool, for the Responses API's hosted one and
# chat's ``web_search_options``.
WEB_SEARCH_TOOL = "web_search_20250305"
WEB_SEARCH_NAME = "web_search"
# Anthropic documents top_p from 0.95 to 1 as allowed with thinking on.
_THINKING_TOP_P = (0.95, 1.0)


@dataclass(frozen=True, slots=True)
class WireRequest:
    body: JSONDict
    # The forced tool that carries ``response_format``'s JSON, if any: its
    # call is the answer's content, not a tool call.
    json_tool: str | None = None


# -- requests ----------------------------------------------------------------


def chat_request(
    body: JSONDict, model: str, drop: Collection[str], cache_every_request: bool = False
) -> WireRequest:
    """The Messages body for an OpenAI chat body; a 400 for what cannot be
    sent. ``cache_every_request``: the deployment's ``prompt_caching: auto``."""
    body = checked_params(body, "anthropic", SUPPORTED, drop)
    thinking = _thinking(body)
    thinking_on = thinking is not None and thinking.get("type") != "disabled"
    system, messages = _messages(body.get("messages") or [])
    out: JSONDict = {"model": model, "messages": messages}
    if system:
        out["system"] = system
    out["max_tokens"] = _max_tokens(body, thinking if thinking_on else None)
    if thinking is not None:
        out["thinking"] = thinking
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    out.update(_sampling(body, thinking_on, drop))
    if body.get("user"):
        out["metadata"] = {"user_id": body["user"]}
    for name in NATIVE_HINTS:
        if body.get(name) is not None:
            out[name] = body[name]
    native = body.get("output_config")
    if isinstance(native, dict):
        # The Messages edge's own output_config: sent as it came, and its
        # format is the answer's, not a forced tool's.
        out["output_config"] = native
        if "format" in native:
            body = {k: v for k, v in body.items() if k != "response_format"}
    json_tool = _add_tools(out, body, thinking_on)
    if not kept_latest(_blocks(out)) and "cache_control" not in out:
        marker = automatic_marker(body, cache_every_request)
        if marker is not None:
            out["cache_control"] = marker
    return WireRequest(out, json_tool)


def _blocks(out: JSONDict) -> Iterator[JSONDict]:
    """The request's tools and blocks, in the prompt's order (tools, system, messages)."""
    yield from out.get("tools") or ()
    system = out.get("system")
    if isinstance(system, list):
        yield from system
    for turn in out["messages"]:
        if isinstance(turn["content"], list):
            yield from turn["content"]


def _thinking(body: JSONDict) -> JSONDict | None:
    """A native ``thinking`` object as it is, else one for ``reasoning_effort``."""
    native = body.get("thinking")
    if isinstance(native, dict):
        return native
    budget = reasoning_budget(body)
    return {"type": "enabled", "budget_tokens": budget} if budget else None


def _max_tokens(body: JSONDict, thinking: JSONDict | None) -> int:
    wanted = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    budget = thinking.get("budget_tokens") if thinking else None
    # Anthropic wants max_tokens above the thinking budget; the caller's limit
    # is then what the answer itself may use.
    if isinstance(budget, int) and isinstance(wanted, int) and wanted <= budget:
        return budget + wanted
    return int(wanted)


def _sampling(body: JSONDict, thinking_on: bool, drop: Collection[str]) -> JSONDict:
    out: JSONDict = {}
    for name in ("temperature", "top_p", "top_k"):
        value = body.get(name)
        if value is None:
            continue
        if thinking_on and not _allowed_with_thinking(name, value):
            if name in drop:
                continue
            raise InvalidRequest(
                f"`{name}` cannot be combined with extended thinking on anthropic deployments "
                "(`reasoning_effort` or `thinking`). An operator can let the gateway drop it "
                f"for this deployment with `drop_params: [{name}]`.",
                param=name,
                code="unsupported_parameter",
            )
        out[name] = value
    return out


def _allowed_with_thinking(name: str, value: Any) -> bool:
    if name == "temperature":
        return bool(value == 1)
    if name == "top_p":
        low, high = _THINKING_TOP_P
        return isinstance(value, int | float) and low <= value <= high
    return False  # top_k


def _add_tools(out: JSONDict, body: JSONDict, thinking_on: bool) -> str | None:
    """Tools and ``tool_choice`` into ``out``; the JSON tool's name, if one is added."""
    tools = function_tools(body)
    choice = tool_choice(body)
    fmt = response_format(body)
    if thinking_on and (fmt is not None or choice.kind in ("required", "function")):
        param = "response_format" if fmt is not None else "tool_choice"
        raise InvalidRequest(
            f"`{param}` cannot be combined with extended thinking on anthropic deployments: "
            "Anthropic refuses thinking when a tool call is forced.",
            param=param,
        )
    json_tool = _json_tool(fmt, tools) if fmt is not None else None
    native = body.get(ANTHROPIC_TOOLS) or []  # the Messages edge's, as the client sent them
    wish = body.get(HOSTED_WEB_SEARCH)
    if wish is None:
        wish = _search_options(body.get("web_search_options"))
    native = [*native, *_hosted_search(wish, native, tools)]
    wire = _tool_choice(body, choice, json_tool, bool(tools or native))
    if json_tool is not None:
        tools = [*tools, json_tool]
    if not tools and not native:
        return None
    out["tools"] = [*(_tool(t) for t in tools), *native]
    if wire is not None:
        out["tool_choice"] = wire
    return json_tool.name if json_tool else None


def _search_options(options: Any) -> JSONDict | None:
    """Chat's ``web_search_options`` as Anthropic's web search asks it: the
    user's approximate location (``search_context_size`` has no counterpart)."""
    if not isinstance(options, dict):
        return None
    location = options.get("user_location")
    place = location.get("approximate") if isinstance(location, dict) else None
    if not isinstance(place, dict):
        return {}
    found = {k: v for k, v in place.items() if k in _PLACE and isinstance(v, str)}
    return {"user_location": {"type": "approximate", **found}} if found else {}


_PLACE = ("city", "region", "country", "timezone")


def _hosted_search(wish: Any, native: list[Any], tools: list[FunctionTool]) -> list[JSONDict]:
    """Anthropic's web search for the Responses API's hosted one or chat's
    ``web_search_options``, unless the request has a tool of its name."""
    if not isinstance(wish, dict) or cached_search(wish):  # Anthropic's searches are live
        return []
    named = {t.get("name") for t in native if isinstance(t, dict)} | {t.name for t in tools}
    if WEB_SEARCH_NAME in named:
        return []
    return [{"type": WEB_SEARCH_TOOL, "name": WEB_SEARCH_NAME, **wish}]


def _tool_choice(
    body: JSONDict, choice: ToolChoice, json_tool: FunctionTool | None, caller_tools: bool
) -> JSONDict | None:
    """Anthropic's ``tool_choice``; None leaves its default (auto)."""
    if json_tool is not None and (choice.kind == "none" or not caller_tools):
        wire: JSONDict = {"type": "tool", "name": json_tool.name}
    elif choice.kind == "function":
        wire = {"type": "tool", "name": choice.name}
    elif choice.kind == "required" or json_tool is not None:
        wire = {"type": "any"}  # in JSON mode: one of the caller's tools or the JSON one
    elif choice.kind == "none":
        return {"type": "none"}  # which takes no disable_parallel_tool_use
    elif {"tool_choice", "function_call"} & body.keys() or body.get("parallel_tool_calls") is False:
        wire = {"type": "auto"}
    else:
        return None
    if body.get("parallel_tool_calls") is False:
        wire["disable_parallel_tool_use"] = True
    return wire


def _json_tool(fmt: ResponseFormat, tools: list[FunctionTool]) -> FunctionTool:
    name = fmt.name if fmt.kind == "json_schema" else JSON_OBJECT_TOOL
    if any(t.name == name for t in tools):
        raise InvalidRequest(
            f"`response_format` is named `{name}`, like one of the `tools`; rename one.",
            param="response_format",
        )
    return FunctionTool(
        name=name,
        description="Give the answer by calling this tool: its input is the response.",
        parameters=fmt.schema or {"type": "object"},
        strict=fmt.strict,
        cache_control=None,
    )


def _tool(tool: FunctionTool) -> JSONDict:
    schema = tool.parameters
    out: JSONDict = {
        "name": tool.name,
        # Anthropic requires an object schema; OpenAI lets `type` go unsaid.
        "input_schema": schema if "type" in schema else {"type": "object", **schema},
    }
    if tool.description:
        out["description"] = tool.description
    if tool.cache_control:
        out["cache_control"] = tool.cache_control
    out.update(tool.native)
    return out


# -- messages ----------------------------------------------------------------


def _messages(messages: Any) -> tuple[str | list[JSONDict], list[JSONDict]]:
    """``system`` and the alternating turns. Same-role runs merge (Anthropic
    requires alternation): ``tool`` results become one user turn, with any
    user text that follows after them (Anthropic wants tool results first)."""
    if not isinstance(messages, list):
        raise InvalidRequest("`messages` must be a list.", param="messages")
    system: list[list[JSONDict]] = []
    turns: list[JSONDict] = []
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest("A message must be an object.", param=param)
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_cached(_parts(message.get("content"), param, False), message))
            continue
        if role == "user":
            blocks = _parts(message.get("content"), param, True)
        elif role == "assistant":
            blocks = _assistant_blocks(message, param)
        elif role in ("tool", "function"):
            role, blocks = "user", [_tool_result(message, param)]
        else:
            raise InvalidRequest(f"`{role}` messages are not supported.", param=f"{param}.role")
        _append(turns, role, _cached(blocks, message))
    return _system(system), [_compact(turn) for turn in turns]


def _parts(content: Any, param: str, images: bool) -> list[JSONDict]:
    if content is None:
        return []
    if isinstance(content, str):
        # Anthropic rejects empty text blocks; an empty string adds nothing.
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(
            "Message content must be a string or a list of parts.", param=f"{param}.content"
        )
    blocks = []
    for j, part in enumerate(content):
        where = f"{param}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else type(part).__name__
        if kind == "text" and isinstance(part.get("text"), str):
            if not part["text"]:
                continue
            block: JSONDict = {"type": "text", "text": part["text"]}
        elif kind == "image_url" and images:
            block = _image(image_of(part, where))
        elif kind == "file" and images:
            block = _document(document_of(part, where))
        else:
            allowed = (
                "`text`, `image_url` and `file` parts are" if images else "only `text` parts are"
            )
            raise InvalidRequest(
                f"Content parts of type `{kind}` are not supported by anthropic deployments "
                f"here; {allowed}.",
                param=f"{where}.type",
            )
        marker = part_marker(part)
        if marker is not None:
            block["cache_control"] = marker
        if kind == "image_url" and isinstance(part.get(IMAGE_TRANSFORMATIONS), dict):
            block["transformations"] = part[IMAGE_TRANSFORMATIONS]
        blocks.append(block)
    return blocks


def _image(image: Any) -> JSONDict:
    if isinstance(image, str):  # Anthropic fetches URLs itself; the gateway does not
        return {"type": "image", "source": {"type": "url", "url": image}}
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": image.media_type, "data": image.data},
    }


def _document(document: InlineDocument) -> JSONDict:
    if document.media_type == "text/plain":  # Anthropic takes plain text as text
        source = {"type": "text", "media_type": "text/plain", "data": document.text()}
    else:
        source = {"type": "base64", "media_type": document.media_type, "data": document.data}
    block: JSONDict = {"type": "document", "source": source}
    if document.filename:
        block["title"] = document.filename
    return block


def _assistant_blocks(message: JSONDict, param: str) -> list[JSONDict]:
    """Thinking first (Anthropic needs it back in tool loops), then text, then
    calls; or the turn's blocks as Anthropic wrote them, where the Messages
    edge kept them (server tool calls and results, cited text)."""
    given = message.get("thinking_blocks") or []
    if not isinstance(given, list):
        raise InvalidRequest("`thinking_blocks` must be a list.", param=f"{param}.thinking_blocks")
    blocks = [
        _thinking_block(b, f"{param}.thinking_blocks[{k}]")
        for k, b in enumerate(given)
        if not is_openai_reasoning(b)  # another vendor's: it cannot be verified here
    ]
    texts = _parts(message.get("content"), param, False)
    calls = tool_calls_of(message, param)
    written = message.get(CONTENT_BLOCKS)
    if isinstance(written, list) and all(isinstance(b, dict) for b in written):
        said = "".join(block.get("text", "") for block in texts)
        if still_said(written, said, [(call_id, arguments) for call_id, _, arguments in calls]):
            return list(written)
        # Rewritten (a guardrail): the server blocks, then what the message says.
        blocks += [b for b in written if b.get("type") not in SAID_BY_CHAT]
    blocks += texts
    for call_id, name, arguments in calls:
        blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": arguments})
    return blocks


def _thinking_block(block: Any, param: str) -> JSONDict:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "thinking" and isinstance(block.get("signature"), str):
        return {
            "type": kind,
            "thinking": str(block.get("thinking", "")),
            "signature": block["signature"],
        }
    if kind == "redacted_thinking" and isinstance(block.get("data"), str):
        return {"type": kind, "data": block["data"]}
    raise InvalidRequest(
        "A thinking block must be a `thinking` block with its `signature` or a "
        "`redacted_thinking` block with its `data`, as the answer gave them.",
        param=param,
    )


def _tool_result(message: JSONDict, param: str) -> JSONDict:
    call_id = message.get("tool_call_id")
    if message.get("role") == "function":  # legacy: answers the call named after it
        call_id = f"call_{message.get('name')}"
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest("A `tool` message needs its `tool_call_id`.", param=param)
    result: JSONDict = {"type": "tool_result", "tool_use_id": call_id}
    content = message.get("content")
    if isinstance(content, str) and content:
        result["content"] = content
    elif content:
        blocks = _parts(content, param, False)  # text parts, cache markers kept
        if blocks:
            result["content"] = blocks
    references = message.get(TOOL_REFERENCES)
    if references:  # the deferred tools a tool search loaded (the Messages edge's)
        said = result.get("content")
        blocks = [{"type": "text", "text": said}] if isinstance(said, str) else said or []
        loaded = [{"type": "tool_reference", "tool_name": name} for name in references]
        result["content"] = [*blocks, *loaded]
    return result


def _cached(blocks: list[JSONDict], message: JSONDict) -> list[JSONDict]:
    """A message-level ``cache_control`` marks the message's last block."""
    marker = part_marker(message)
    if marker is not None and blocks:
        blocks[-1] = {**blocks[-1], "cache_control": marker}
    return blocks


def _append(turns: list[JSONDict], role: str, blocks: list[JSONDict]) -> None:
    if not blocks:
        return  # an empty message: Anthropic refuses empty content, and it says nothing
    if not turns or turns[-1]["role"] != role:
        turns.append({"role": role, "content": blocks})
        return
    merged = turns[-1]["content"] + blocks
    results = [b for b in merged if b["type"] == "tool_result"]
    turns[-1]["content"] = results + [b for b in merged if b["type"] != "tool_result"]


def _compact(turn: JSONDict) -> JSONDict:
    """A turn of one plain text block is sent as a string, as people write them."""
    blocks = turn["content"]
    if len(blocks) == 1 and blocks[0].keys() == {"type", "text"} and blocks[0]["type"] == "text":
        return {"role": turn["role"], "content": blocks[0]["text"]}
    return turn


def _system(messages: list[list[JSONDict]]) -> str | list[JSONDict]:
    """One string, or text blocks when any carries a cache marker (to keep it)."""
    blocks = [block for message in messages for block in message]
    if any("cache_control" in block for block in blocks):
        return blocks
    texts = ("".join(block["text"] for block in message) for message in messages)
    return "\n\n".join(text for text in texts if text)
