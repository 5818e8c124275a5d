"""Bedrock Converse wire translation, no I/O: an OpenAI chat request -> a
Converse request; a Converse response and ConverseStream events -> OpenAI
objects. ``bedrock.py`` signs, sends and decodes; its docstring says what is
translated and what is refused.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from interlock.errors import InvalidRequest
from interlock.providers.base import JSONDict
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
from interlock.providers.shapes import (
    chunk_bytes,
    chunk_choice,
    tool_call,
    tool_call_arguments_piece,
    tool_call_opened,
)

__all__ = ["SUPPORTED", "ChunkStream", "Converse", "ShapeError", "completion", "converse_request"]

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
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_SYSTEM_ROLES = frozenset({"system", "developer"})
_CACHE_TTLS = frozenset({"5m", "1h"})
_JSON_TOOL_DESCRIPTION = (
    "Give the final answer by calling this tool: its input is the answer, "
    "as JSON that matches the input schema."
)


class ShapeError(Exception):
    """A 200 answer that is not the shape Converse documents; the adapter names itself."""


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
    return Converse(out, json_tool)


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
            blocks = _parts(message.get("content"), param, images=False)
            blocks += [
                {"toolUse": {"toolUseId": call_id, "name": name, "input": arguments}}
                for call_id, name, arguments in tool_calls_of(message, param)
            ]
        elif role in ("tool", "function"):
            blocks = [_tool_result(message, param)]
        else:
            raise InvalidRequest(f"Unknown message role `{role}`.", param=f"{param}.role")
        blocks = _marked(blocks, message)
        wire_role = "assistant" if role == "assistant" else "user"
        if not blocks:
            continue  # Converse refuses empty turns; an empty message says nothing
        if turns and turns[-1]["role"] == wire_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": wire_role, "content": blocks})
    if not turns:
        raise InvalidRequest(
            "Bedrock needs at least one user or assistant message with content.",
            param="messages",
        )
    return system, turns


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
        else:
            raise InvalidRequest(
                f"Content parts of type `{kind}` are not supported by bedrock deployments "
                "here; send `text` parts (and `image_url` parts in user messages).",
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
    a part or a tool) carries a ``cache_control`` marker."""
    marker = source.get("cache_control")
    if not isinstance(marker, dict) or not blocks:
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


# -- responses ---------------------------------------------------------------


def completion(response: Any, model: str, json_tool: str | None) -> JSONDict:
    """The ``chat.completion`` for a Converse response."""
    output = response.get("output") if isinstance(response, dict) else None
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise ShapeError("upstream response has no `output.message.content` list")
    assert isinstance(response, dict)
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[JSONDict] = []
    for block in content:
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            arguments = orjson.dumps(use.get("input") or {}).decode()
            if use.get("name") == json_tool:
                texts.append(arguments)
            else:
                calls.append(tool_call(str(use.get("toolUseId")), str(use.get("name")), arguments))
        elif isinstance(block.get("reasoningContent"), dict):
            thought = block["reasoningContent"].get("reasoningText")
            if isinstance(thought, dict) and isinstance(thought.get("text"), str):
                reasoning.append(thought["text"])
        # Redacted reasoning, citations and the like have no place in OpenAI's message.
    answer: JSONDict = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if reasoning:
        answer["reasoning_content"] = "".join(reasoning)
    if calls:
        answer["tool_calls"] = calls
    finish = _finish_reason(response.get("stopReason"), bool(calls))
    return {
        "id": _completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": answer, "logprobs": None, "finish_reason": finish}],
        "usage": usage(response.get("usage")),
        "system_fingerprint": None,
    }


def _finish_reason(stop_reason: Any, has_calls: bool) -> str:
    finish = _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    if has_calls and finish == "stop":
        return "tool_calls"
    if not has_calls and finish == "tool_calls":
        return "stop"  # the forced structured-answer tool: its input is the content
    return finish


def usage(raw: Any) -> JSONDict:
    """OpenAI usage for Converse ``usage``. ``inputTokens`` counts only the
    input neither read from nor written to the prompt cache (AWS's prompt
    caching guide), so the cache counts are added to make ``prompt_tokens``
    every input token, as OpenAI's is."""
    raw = raw if isinstance(raw, dict) else {}
    read = _count(raw.get("cacheReadInputTokens"))
    written = _count(raw.get("cacheWriteInputTokens"))
    prompt = _count(raw.get("inputTokens")) + read + written
    completion_tokens = _count(raw.get("outputTokens"))
    out: JSONDict = {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }
    if read or written:
        out["prompt_tokens_details"] = {"cached_tokens": read, "cache_write_tokens": written}
    return out


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _completion_id() -> str:
    # Converse answers carry no id of their own.
    return f"chatcmpl-{os.urandom(12).hex()}"


# -- streaming ---------------------------------------------------------------


@dataclass(slots=True)
class _Block:
    """A streamed content block: a tool call (``index`` counts OpenAI tool
    calls) or the structured answer (``index`` None)."""

    index: int | None
    has_input: bool = False


class ChunkStream:
    """ConverseStream events in, ``chat.completion.chunk`` bytes out.

    Pure state, no I/O: ``feed`` each event (its ``:event-type`` and JSON
    payload); ``finished`` turns true at the ``metadata`` event that follows
    ``messageStop``; ``close`` once the stream has ended.
    """

    def __init__(self, model: str, json_tool: str | None, include_usage: bool):
        self._id = _completion_id()
        self._created = int(time.time())
        self._model = model
        self._json_tool = json_tool
        self._include_usage = include_usage
        self._blocks: dict[Any, _Block] = {}  # by contentBlockIndex
        self._calls = 0
        self._started = False
        self._stopped = False
        self.finished = False

    def feed(self, kind: str, event: JSONDict) -> list[bytes]:
        out = self._start() if not self._started and kind != "metadata" else []
        if kind == "contentBlockStart":
            out += self._block_start(event)
        elif kind == "contentBlockDelta":
            out += self._delta(event)
        elif kind == "contentBlockStop":
            out += self._block_stop(event)
        elif kind == "messageStop":
            self._stopped = True
            finish = _finish_reason(event.get("stopReason"), self._calls > 0)
            out.append(self._chunk([chunk_choice(0, {}, finish)]))
        elif kind == "metadata" and self._stopped:
            self.finished = True
            if self._include_usage:
                out.append(self._chunk([], usage(event.get("usage"))))
        # messageStart is the role chunk; event types added later carry nothing we use.
        return out

    def close(self) -> list[bytes]:
        """The stream ended: usage that no metadata event brought, or an
        error for a stream cut before ``messageStop``."""
        if not self._stopped:
            raise ShapeError("upstream stream ended before messageStop")
        if self.finished or not self._include_usage:
            return []
        self.finished = True
        return [self._chunk([], usage(None))]

    def _start(self) -> list[bytes]:
        self._started = True
        return [self._chunk([chunk_choice(0, {"role": "assistant", "content": ""})])]

    def _block_start(self, event: JSONDict) -> list[bytes]:
        start = event.get("start")
        use = start.get("toolUse") if isinstance(start, dict) else None
        if not isinstance(use, dict):
            return []
        key = event.get("contentBlockIndex")
        if use.get("name") == self._json_tool:
            self._blocks[key] = _Block(None)
            return []
        if not isinstance(use.get("toolUseId"), str) or not isinstance(use.get("name"), str):
            raise ShapeError("upstream toolUse start has no `toolUseId` or `name`")
        index, self._calls = self._calls, self._calls + 1
        self._blocks[key] = _Block(index)
        return [self._delta_chunk(tool_call_opened(index, use["toolUseId"], use["name"]))]

    def _delta(self, event: JSONDict) -> list[bytes]:
        delta = event.get("delta")
        if not isinstance(delta, dict):
            raise ShapeError("upstream contentBlockDelta has no `delta` object")
        return [self._delta_chunk(piece) for piece in self._pieces(event, delta)]

    def _pieces(self, event: JSONDict, delta: JSONDict) -> Iterator[JSONDict]:
        if isinstance(delta.get("text"), str) and delta["text"]:
            yield {"content": delta["text"]}
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict) and isinstance(reasoning.get("text"), str):
            yield {"reasoning_content": reasoning["text"]}  # signatures stay upstream
        use = delta.get("toolUse")
        if isinstance(use, dict) and isinstance(use.get("input"), str) and use["input"]:
            block = self._blocks.get(event.get("contentBlockIndex"))
            if block is None:
                raise ShapeError("upstream sent toolUse input for a block it never started")
            block.has_input = True
            if block.index is None:
                yield {"content": use["input"]}
            else:
                yield tool_call_arguments_piece(block.index, use["input"])

    def _block_stop(self, event: JSONDict) -> list[bytes]:
        block = self._blocks.pop(event.get("contentBlockIndex"), None)
        if block is None or block.has_input:
            return []
        # A call without arguments streams no input; OpenAI's arguments are still an object.
        if block.index is None:
            return [self._delta_chunk({"content": "{}"})]
        return [self._delta_chunk(tool_call_arguments_piece(block.index, "{}"))]

    def _delta_chunk(self, delta: JSONDict) -> bytes:
        return self._chunk([chunk_choice(0, delta)])

    def _chunk(self, choices: list[JSONDict], usage: JSONDict | None = None) -> bytes:
        return chunk_bytes(
            self._id,
            self._created,
            self._model,
            choices,
            include_usage=self._include_usage,
            usage=usage,
        )
