"""Bedrock Converse wire translation, no I/O: an OpenAI chat request -> a
Converse request body. ``bedrock_answer.py`` translates a Converse response
back, ``bedrock_stream.py`` ConverseStream events; ``bedrock.py`` signs,
sends and decodes, and its docstring says what is translated and what is
refused.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import orjson

from interlock.chat_markers import is_openai_reasoning
from interlock.errors import InvalidRequest
from interlock.providers.base import JSONDict
from interlock.providers.documents import DOCUMENT_TYPES, InlineDocument, document_of
from interlock.providers.openai_request import (
    FunctionTool,
    ResponseFormat,
    function_tools,
    image_of,
    reasoning_budget,
    response_format,
    tool_calls_of,
    tool_choice,
    tool_result_text,
)
from interlock.providers.prompt_cache import MAX_MARKERS, part_marker
from interlock.providers.upstream_errors import ShapeError

__all__ = ["SUPPORTED", "Converse", "ShapeError", "converse_request"]

# The OpenAI parameters Converse can honour; checked_params refuses the others.
SUPPORTED = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "response_format",
        "reasoning_effort",
    }
)
# Claude needs maxTokens above the thinking budget; a caller that set no
# max_tokens gets this much room for the answer on top of the budget.
ANSWER_TOKENS = 4096
_IMAGE_FORMATS = {f"image/{kind}": kind for kind in ("png", "jpeg", "gif", "webp")}
# What a document block's name may not hold (Converse's rule).
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9\s\-()\[\]]")
_SYSTEM_ROLES = frozenset({"system", "developer"})
_CACHE_TTLS = frozenset({"5m", "1h"})
_JSON_TOOL_DESCRIPTION = (
    "Give the final answer by calling this tool: its input is the answer, "
    "as JSON that matches the input schema."
)


@dataclass(frozen=True, slots=True)
class Converse:
    """A translated request: the Converse body, and the name of the tool
    that carries a structured answer (None without ``response_format``)."""

    body: JSONDict
    json_tool: str | None


# -- requests ----------------------------------------------------------------


def converse_request(body: JSONDict) -> Converse:
    """The Converse body for an OpenAI chat body whose parameters were checked
    (``checked_params``) and whose remote images were inlined."""
    system, turns = _turns(body.get("messages"))
    out: JSONDict = {"messages": turns}
    if system:
        out["system"] = system
    budget = reasoning_budget(body)
    inference = _inference_config(body, budget)
    if inference:
        out["inferenceConfig"] = inference
    tools, json_tool = _tool_config(body, turns)
    if tools is not None:
        out["toolConfig"] = tools
    if budget:
        # Claude's extended thinking; Converse passes the field to the model as is.
        thinking = {"type": "enabled", "budget_tokens": budget}
        out["additionalModelRequestFields"] = {"thinking": thinking}
    _latest_cache_points(out)
    return Converse(out, json_tool)


def _latest_cache_points(out: JSONDict) -> None:
    """All but the latest ``MAX_MARKERS`` cache points taken out, as OpenAI
    writes the latest four breakpoints (Converse refuses more)."""
    lists = [out.get("toolConfig", {}).get("tools") or [], out.get("system") or []]
    lists += [turn["content"] for turn in out["messages"]]
    points = [(blocks, block) for blocks in lists for block in blocks if "cachePoint" in block]
    for blocks, block in points[:-MAX_MARKERS]:
        blocks.remove(block)


def _turns(messages: Any) -> tuple[list[JSONDict], list[JSONDict]]:
    """The ``system`` blocks and the alternating ``messages`` turns: tool
    results become user turns, and runs of one role merge (Converse wants
    user and assistant to alternate)."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("`messages` must be a non-empty list.", param="messages")
    system: list[JSONDict] = []
    turns: list[JSONDict] = []
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest("Each message must be an object.", param=param)
        role = message.get("role")
        if role in _SYSTEM_ROLES:
            system += _marked(_parts(message.get("content"), param, images=False), message)
            continue
        if role == "user":
            blocks = _parts(message.get("content"), param, images=True)
        elif role == "assistant":
            blocks = _assistant_blocks(message, param)
        elif role in ("tool", "function"):
            blocks = [_tool_result(message, param)]
        else:
            raise InvalidRequest(f"Unknown message role `{role}`.", param=f"{param}.role")
        blocks = _marked(blocks, message)
        wire_role = "assistant" if role == "assistant" else "user"
        if not blocks:
            continue  # Converse refuses empty turns; an empty message says nothing
        if turns and turns[-1]["role"] == wire_role:
            merged = turns[-1]["content"] + blocks
            # Reasoning leads its assistant turn, as Claude requires.
            reasoning = [block for block in merged if "reasoningContent" in block]
            turns[-1]["content"] = reasoning + [b for b in merged if "reasoningContent" not in b]
        else:
            turns.append({"role": wire_role, "content": blocks})
    if not turns:
        raise InvalidRequest(
            "Bedrock needs at least one user or assistant message with content.",
            param="messages",
        )
    return system, turns


def _assistant_blocks(message: JSONDict, param: str) -> list[JSONDict]:
    """Reasoning first (Claude needs its signed reasoning back in tool loops
    with thinking on), then text, then tool calls."""
    given = message.get("thinking_blocks") or []
    if not isinstance(given, list):
        raise InvalidRequest("`thinking_blocks` must be a list.", param=f"{param}.thinking_blocks")
    blocks = [
        _reasoning(b, f"{param}.thinking_blocks[{k}]")
        for k, b in enumerate(given)
        if not is_openai_reasoning(b)  # another vendor's: it cannot be verified here
    ]
    blocks += _parts(message.get("content"), param, images=False)
    blocks += [
        {"toolUse": {"toolUseId": call_id, "name": name, "input": arguments}}
        for call_id, name, arguments in tool_calls_of(message, param)
    ]
    return blocks


def _reasoning(block: Any, param: str) -> JSONDict:
    """A ``thinking_blocks`` entry (as an answer gave it) as ``reasoningContent``."""
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "thinking" and isinstance(block.get("thinking"), str):
        text: JSONDict = {"text": block["thinking"]}
        if isinstance(block.get("signature"), str):  # optional in Converse; Claude signs
            text["signature"] = block["signature"]
        return {"reasoningContent": {"reasoningText": text}}
    if kind == "redacted_thinking" and _is_base64(block.get("data")):
        return {"reasoningContent": {"redactedContent": block["data"]}}
    raise InvalidRequest(
        "A thinking block must be a `thinking` block with its text and `signature` or a "
        "`redacted_thinking` block with its base64 `data`, as the answer gave them.",
        param=param,
    )


def _is_base64(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        return False
    return True


def _parts(content: Any, param: str, *, images: bool) -> list[JSONDict]:
    """A message's content as Converse blocks; a part's ``cache_control``
    marker becomes a cache point after it."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []  # Converse refuses blank text
    if not isinstance(content, list):
        raise InvalidRequest(
            "Message content must be a string or a list of parts.", param=f"{param}.content"
        )
    blocks: list[JSONDict] = []
    for j, part in enumerate(content):
        where = f"{param}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal") and isinstance(part.get(kind), str):
            if part[kind]:
                blocks.append({"text": part[kind]})
        elif kind == "image_url" and images:
            blocks.append(_image(part, where))
        elif kind == "file" and images:
            blocks.append(_document(document_of(part, where), len(blocks)))
        else:
            raise InvalidRequest(
                f"Content parts of type `{kind}` are not supported by bedrock deployments "
                "here; send `text` parts (and `image_url` and `file` parts in user messages).",
                param=f"{where}.type",
            )
        blocks = _marked(blocks, part)
    return blocks


def _image(part: JSONDict, param: str) -> JSONDict:
    image = image_of(part, param)
    if isinstance(image, str):  # the adapter inlines remote images before translating
        raise InvalidRequest(
            "bedrock deployments take images inline only: send a `data:` URL.",
            param=f"{param}.image_url.url",
        )
    return {"image": {"format": _IMAGE_FORMATS[image.media_type], "source": {"bytes": image.data}}}


def _document(document: InlineDocument, position: int) -> JSONDict:
    """A Converse document block. Its ``name`` may hold only letters, digits,
    single spaces, hyphens, parentheses and square brackets, and must differ
    from the message's other documents': the file name, made so, with the
    block's position."""
    stem = (document.filename or "document").rsplit(".", 1)[0]
    name = " ".join(_NOT_IN_NAME.sub(" ", stem).split()) or "document"
    source = {"bytes": document.data}
    return {
        "document": {
            "format": DOCUMENT_TYPES[document.media_type],
            "name": f"{name} ({position + 1})",
            "source": source,
        }
    }


def _tool_result(message: JSONDict, param: str) -> JSONDict:
    call_id: Any = message.get("tool_call_id")
    if message.get("role") == "function":  # legacy: the call is named, not numbered
        call_id = f"call_{message.get('name')}"
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(
            "A `tool` message needs the `tool_call_id` it answers.",
            param=f"{param}.tool_call_id",
        )
    text = tool_result_text(message.get("content"), param)
    result = {"toolUseId": call_id, "content": [_result_content(text)], "status": "success"}
    return {"toolResult": result}


def _result_content(text: str) -> JSONDict:
    """A result that is a JSON object goes as ``json``, which the model reads as structure."""
    if text.lstrip().startswith("{"):
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            return {"json": parsed}
    return {"text": text}


def _marked(blocks: list[JSONDict], source: JSONDict) -> list[JSONDict]:
    """``blocks`` with a cache point after them when ``source`` (a message,
    a part or a tool) carries a ``cache_control`` marker (or an OpenAI
    breakpoint: ``prompt_cache.py``)."""
    marker = part_marker(source)
    if marker is None or not blocks:
        return blocks
    point: JSONDict = {"type": "default"}
    if marker.get("ttl") in _CACHE_TTLS:
        point["ttl"] = marker["ttl"]
    return [*blocks, {"cachePoint": point}]


def _inference_config(body: JSONDict, budget: int | None) -> JSONDict:
    config: JSONDict = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is None and budget:
        max_tokens = budget + ANSWER_TOKENS
    if max_tokens is not None:
        config["maxTokens"] = max_tokens
    if body.get("temperature") is not None:
        config["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        config["topP"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    return config


# -- tools and structured output ----------------------------------------------


def _tool_config(body: JSONDict, turns: list[JSONDict]) -> tuple[JSONDict | None, str | None]:
    """``toolConfig`` and the structured-answer tool's name.

    Structured output is a forced tool: Converse has no JSON mode, but a
    tool's input is JSON that follows the tool's schema. With tools of the
    caller's beside it, the model must call one of them or answer through it.
    """
    tools = function_tools(body)
    choice = tool_choice(body)
    answer = response_format(body)
    specs = [entry for tool in tools for entry in _tool_entries(tool)]
    json_tool = None
    if answer is not None:
        json_tool = _json_tool_name(answer, tools)
        specs.append({"toolSpec": _json_tool_spec(json_tool, answer)})
    if choice.kind == "none" and json_tool is None:
        if _holds_tool_blocks(turns):
            raise InvalidRequest(
                "`tool_choice: none` cannot be translated for bedrock deployments once the "
                "conversation holds tool calls or results: Converse has no `none` choice and "
                "needs the tools declared for that history. Send `auto` instead.",
                param="tool_choice",
            )
        return None, None
    if not specs:
        if _holds_tool_blocks(turns):
            raise InvalidRequest(
                "bedrock deployments need `tools` declared when the conversation holds tool "
                "calls or results.",
                param="tools",
            )
        return None, None
    if choice.kind == "function":
        wire_choice: JSONDict = {"tool": {"name": choice.name}}
    elif json_tool is not None and (choice.kind == "none" or not tools):
        wire_choice = {"tool": {"name": json_tool}}
    elif choice.kind == "required" or json_tool is not None:
        wire_choice = {"any": {}}
    else:
        wire_choice = {"auto": {}}
    return {"tools": specs, "toolChoice": wire_choice}, json_tool


def _tool_entries(tool: FunctionTool) -> list[JSONDict]:
    spec: JSONDict = {"name": tool.name, "inputSchema": {"json": tool.parameters}}
    if tool.description:
        spec["description"] = tool.description
    return _marked([{"toolSpec": spec}], {"cache_control": tool.cache_control})


def _json_tool_name(answer: ResponseFormat, tools: list[FunctionTool]) -> str:
    name = answer.name
    if name in {tool.name for tool in tools}:
        raise InvalidRequest(
            f"bedrock deployments answer `response_format` through a tool named `{name}`, "
            "which is already one of `tools`; give the schema another name.",
            param="response_format.json_schema.name",
        )
    return name


def _json_tool_spec(name: str, answer: ResponseFormat) -> JSONDict:
    schema = answer.schema if answer.schema is not None else {"type": "object"}
    return {"name": name, "description": _JSON_TOOL_DESCRIPTION, "inputSchema": {"json": schema}}


def _holds_tool_blocks(turns: list[JSONDict]) -> bool:
    return any(
        "toolUse" in block or "toolResult" in block for turn in turns for block in turn["content"]
    )
