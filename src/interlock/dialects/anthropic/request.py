"""An Anthropic Messages request -> an OpenAI chat-completions body (no I/O).

What goes where:

- ``system`` (a string, or text blocks) -> a ``system`` message; blocks keep
  their ``cache_control`` as parts, so prompt caching survives a round trip
  through the Anthropic adapter, which passes the markers back on;
- user blocks: ``text`` and ``image`` (base64 -> a ``data:`` URL, url -> the
  URL) as parts, ``document`` (PDF or plain text) -> a ``file`` part with a
  base64 ``data:`` URL; ``tool_result`` blocks -> ``role: tool`` messages,
  ahead of the rest of the turn as OpenAI wants them (an image or document
  inside a result rides in the user message after them: a tool message
  holds only text);
- assistant blocks: text, ``tool_use`` -> ``tool_calls`` (input as JSON
  arguments), ``thinking`` / ``redacted_thinking`` -> ``thinking_blocks``,
  the convention the Anthropic and Bedrock adapters send back upstream, and
  the thinking's text -> ``reasoning_content``, which an OpenAI-wire
  upstream that needs it back gets (DeepSeek; ``providers/openai_messages.py``);
- a ``cache_control`` on a ``tool_use`` or ``tool_result`` block -> on its
  message (the adapters mark a marked message's last block: the same one);
- ``tools`` -> function tools (``cache_control`` kept on the tool),
  ``tool_choice`` auto/any/tool/none -> auto/required/named/none,
  ``disable_parallel_tool_use`` -> ``parallel_tool_calls: false``;
- ``stop_sequences`` -> ``stop``; ``temperature``, ``top_p``, ``top_k``;
  ``metadata.user_id`` -> ``user``; ``stream`` (with usage, which the
  answer's ``message_delta`` reports).

Thinking: ``{type: enabled, budget_tokens}`` is kept as the body's native
``thinking`` object, which the Anthropic adapter sends as it is (the exact
budget), *and* becomes ``reasoning_effort`` at the nearest level (up to
1,024 ``low``, up to 2,048 ``medium``, else ``high``), which the Gemini and
Bedrock adapters translate; they ignore ``thinking``. The edge cannot know
which upstream will answer (the router decides, and may fail over to another
provider), so it cannot pick one for the upstream. The OpenAI-compatible
adapter forwards unknown fields, so its upstream gets both: servers that
ignore unknown fields (vLLM, Ollama) read ``reasoning_effort``; OpenAI
itself refuses unknown fields, and only that adapter, which knows its
upstream, could drop ``thinking`` there. The edge does not guess.
``adaptive`` thinking is kept native only (how much other providers think
by default is theirs to choose); ``disabled`` is Anthropic's default and
sends nothing.

``max_tokens`` stays ``max_tokens`` (every OpenAI-compatible server reads
it), except with thinking on: then ``max_completion_tokens``, which OpenAI's
reasoning models require and which, like Anthropic's ``max_tokens``,
includes the reasoning. (The OpenAI-wire adapter sends either by the name
its upstream takes: ``max_tokens_field``, ADR 0034.)
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from pydantic import BaseModel

from interlock.chat_markers import (
    ANTHROPIC_TOOLS,
    CONTENT_BLOCKS,
    DEFERRED_TOOLS,
    IMAGE_TRANSFORMATIONS,
    NATIVE_HINTS,
    TOOL_HINTS,
    TOOL_REFERENCES,
)
from interlock.dialects.anthropic.schemas import (
    AnthropicTool,
    CacheControl,
    CountTokensRequest,
    DocumentBlock,
    ImageBlock,
    Message,
    MessagesRequest,
    OutputConfig,
    PlainTextSource,
    RedactedThinkingBlock,
    SearchResultBlock,
    ServerBlock,
    TextBlock,
    Thinking,
    ThinkingBlock,
    Tool,
    ToolChoice,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolReferenceBlock,
    ToolResultBlock,
    ToolUseBlock,
)

__all__ = ["chat_body", "reasoning_effort"]

JSONDict = dict[str, Any]

# Thinking budgets up to these map to the OpenAI effort level (the adapters
# map back: low 1,024, medium 2,048, high 4,096).
_EFFORTS = ((1024, "low"), (2048, "medium"))
# Prefixed to a tool result marked ``is_error``: OpenAI's tool messages have
# no such flag, and the model should still know the call failed.
ERROR_PREFIX = "Error: "


def chat_body(request: CountTokensRequest) -> JSONDict:
    """The OpenAI chat body for an Anthropic request (a count_tokens request
    has no sampling or output fields; its translation is the prompt's)."""
    body: JSONDict = {"model": request.model, "messages": _messages(request)}
    if request.tools:
        tools = [tool for tool in request.tools if isinstance(tool, Tool)]
        if tools:
            body["tools"] = [_tool(tool) for tool in tools]
        native = [tool for tool in request.tools if isinstance(tool, AnthropicTool)]
        if native:  # a marker: for Anthropic upstreams alone (ADR 0027)
            body[ANTHROPIC_TOOLS] = [tool.model_dump(exclude_none=True) for tool in native]
    if request.tool_choice is not None:
        _add_tool_choice(body, request.tool_choice)
    if _searches_tools(request, body["messages"]):
        body[DEFERRED_TOOLS] = True
    thinking = request.thinking
    if thinking is not None and thinking.type != "disabled":
        body["thinking"] = thinking.model_dump(exclude_none=True)
        effort = reasoning_effort(thinking)
        if effort is not None:
            body["reasoning_effort"] = effort
    if request.output_config is not None:
        _add_output_config(body, request.output_config)
    if isinstance(request, MessagesRequest):
        _add_sampling(body, request)
    return body


def _searches_tools(request: CountTokensRequest, messages: list[JSONDict]) -> bool:
    """Whether a tool is deferred or a result references one (tool search)."""
    tools = request.tools or ()
    if any(isinstance(tool, Tool) and tool.defer_loading for tool in tools):
        return True
    return any(TOOL_REFERENCES in message for message in messages)


def _add_output_config(body: JSONDict, config: OutputConfig) -> None:
    """``output_config`` as it is, for Anthropic upstreams (a marker, like
    ``thinking``: taken out for the others), and its ``format`` as chat's
    ``response_format``, which every upstream's adapter honours. ``effort``
    has no counterpart elsewhere: OpenAI's ``reasoning_effort`` is for
    reasoning models alone (others refuse it) and would turn thinking on at
    Anthropic's, so only Anthropic upstreams see it."""
    body["output_config"] = config.model_dump(by_alias=True, exclude_none=True)
    if config.format is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": config.format.json_schema, "strict": True},
        }


def reasoning_effort(thinking: Thinking) -> str | None:
    """The nearest OpenAI ``reasoning_effort`` for an enabled thinking budget."""
    budget = thinking.budget_tokens
    if thinking.type != "enabled" or budget is None:
        return None
    return next((level for limit, level in _EFFORTS if budget <= limit), "high")


def _add_sampling(body: JSONDict, request: MessagesRequest) -> None:
    for name in NATIVE_HINTS:  # markers, as ``thinking``: for Anthropic upstreams
        value = getattr(request, name)
        if value is not None:
            body[name] = (
                value.model_dump(exclude_none=True) if isinstance(value, BaseModel) else value
            )
    thinking_on = "reasoning_effort" in body
    body["max_completion_tokens" if thinking_on else "max_tokens"] = request.max_tokens
    if request.stop_sequences:
        body["stop"] = request.stop_sequences
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.metadata is not None and request.metadata.user_id:
        body["user"] = request.metadata.user_id
    if request.stream:
        # No usage chunk is asked for: the pipeline reads the upstream's for
        # its accounting, and the edge takes it from the request's record.
        body["stream"] = True


# -- messages ----------------------------------------------------------------


def _messages(request: CountTokensRequest) -> list[JSONDict]:
    out: list[JSONDict] = []
    system = request.system
    if isinstance(system, str) and system:
        out.append({"role": "system", "content": system})
    elif isinstance(system, list) and system:
        out.append({"role": "system", "content": _text_content(system)})
    for message in request.messages:
        if message.role == "user":
            out += _user(message)
        else:
            out.append(_assistant(message))
    return out


def _user(message: Message) -> list[JSONDict]:
    """Tool results first (one ``tool`` message each), then the rest of the turn."""
    if isinstance(message.content, str):
        return [{"role": "user", "content": message.content}]
    results: list[JSONDict] = []
    parts: list[JSONDict] = []
    for block in message.content:
        if isinstance(block, ToolResultBlock):
            result, images = _tool_result(block)
            results.append(result)
            parts += images
        elif isinstance(block, TextBlock):
            parts.append(_text_part(block))
        elif isinstance(block, ImageBlock):
            parts.append(_image_part(block))
        elif isinstance(block, DocumentBlock):
            parts += _document_parts(block)
        elif isinstance(block, SearchResultBlock):
            parts.append(_text_part(_search_result(block, after=bool(parts))))
        # thinking and tool_use blocks belong to assistant turns; Anthropic
        # ignores them in a user turn, and so does the translation
    if parts:
        results.append({"role": "user", "content": _compact(parts)})
    return results


def _assistant(message: Message) -> JSONDict:
    out: JSONDict = {"role": "assistant"}
    if isinstance(message.content, str):
        out["content"] = message.content
        return out
    parts: list[JSONDict] = []
    calls: list[JSONDict] = []
    thinking: list[JSONDict] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            parts.append(_text_part(block))
        elif isinstance(block, ToolUseBlock):
            calls.append(_tool_call(block))
        elif isinstance(block, ThinkingBlock | RedactedThinkingBlock):
            thinking.append(block.model_dump())
    # OpenAI's assistant message needs content or calls; "" stands for none.
    out["content"] = _compact(parts) if parts else (None if calls else "")
    if calls:
        out["tool_calls"] = calls
    if thinking:
        out["thinking_blocks"] = thinking
        said = [block["thinking"] for block in thinking if block.get("type") == "thinking"]
        if any(said):  # for the upstreams that take a turn's reasoning back as text
            out["reasoning_content"] = "\n\n".join(text for text in said if text)
    if any(_anthropic_only(block) for block in message.content):
        # Chat's content and calls say the turn to every upstream; an
        # Anthropic one is sent the blocks as they were (a paused turn's
        # server tool calls, cited text).
        out[CONTENT_BLOCKS] = [block.model_dump(exclude_none=True) for block in message.content]
    last = message.content[-1] if message.content else None
    if isinstance(last, ToolUseBlock) and last.cache_control is not None:
        out["cache_control"] = _marker(last.cache_control)
    return out


def _anthropic_only(block: BaseModel) -> bool:
    if isinstance(block, TextBlock):
        return bool(block.citations)
    return isinstance(block, ServerBlock)


def _tool_call(block: ToolUseBlock) -> JSONDict:
    return {
        "id": block.id,
        "type": "function",
        "function": {"name": block.name, "arguments": orjson.dumps(block.input).decode()},
    }


def _tool_result(block: ToolResultBlock) -> tuple[JSONDict, list[JSONDict]]:
    """The ``tool`` message for a result, and the images it held."""
    content = block.content
    texts: list[TextBlock] = []
    images: list[JSONDict] = []
    references: list[str] = []
    if isinstance(content, str):
        texts.append(TextBlock(type="text", text=content))
    elif content:
        for part in content:
            if isinstance(part, TextBlock):
                texts.append(part)
            elif isinstance(part, ToolReferenceBlock):
                references.append(part.tool_name)
            elif isinstance(part, SearchResultBlock):
                texts.append(_search_result(part, after=bool(texts)))
            elif isinstance(part, DocumentBlock):
                images += _document_parts(part)
            else:
                images.append(_image_part(part))
    if block.is_error:
        texts.insert(0, TextBlock(type="text", text=ERROR_PREFIX))
    message: JSONDict = {"role": "tool", "tool_call_id": block.tool_use_id}
    message["content"] = _text_content(texts) if texts else ""
    if references:
        message[TOOL_REFERENCES] = references
    if block.cache_control is not None:
        message["cache_control"] = _marker(block.cache_control)
    return message, images


def _search_result(block: SearchResultBlock, after: bool) -> TextBlock:
    """A search result as the text a model reads: its title, where it came
    from, then its text (its cache marker kept); ``after`` other content, a
    blank line first (text blocks are joined as they are)."""
    said = "\n".join(part.text for part in block.content)
    text = f"Search result: {block.title}\nSource: {block.source}\n{said}"
    if after:
        text = "\n\n" + text
    return TextBlock(type="text", text=text, cache_control=block.cache_control)


def _text_content(blocks: list[TextBlock]) -> str | list[JSONDict]:
    """One string, unless a block carries a cache marker (kept on its part)."""
    if any(block.cache_control is not None for block in blocks):
        return [_text_part(block) for block in blocks]
    return "".join(block.text for block in blocks)


def _compact(parts: list[JSONDict]) -> str | list[JSONDict]:
    """Plain text parts as one string, as most OpenAI-compatible servers take best."""
    if all(part.keys() == {"type", "text"} and part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)
    return parts


def _text_part(block: TextBlock) -> JSONDict:
    return _marked({"type": "text", "text": block.text}, block.cache_control)


def _image_part(block: ImageBlock) -> JSONDict:
    source = block.source
    if source.type == "base64":
        url = f"data:{source.media_type};base64,{source.data}"
    else:
        url = source.url
    part: JSONDict = {"type": "image_url", "image_url": {"url": url}}
    if block.transformations is not None:  # a hint, for Anthropic upstreams
        part[IMAGE_TRANSFORMATIONS] = block.transformations.model_dump(exclude_none=True)
    return _marked(part, block.cache_control)


def _document_parts(block: DocumentBlock) -> list[JSONDict]:
    """A document as chat's ``file`` part (its ``context`` a text part before it)."""
    source = block.source
    if isinstance(source, PlainTextSource):
        encoded = base64.b64encode(source.data.encode()).decode()
    else:
        encoded = source.data
    file: JSONDict = {"file_data": f"data:{source.media_type};base64,{encoded}"}
    if block.title is not None:
        file["filename"] = block.title
    parts = [{"type": "text", "text": block.context}] if block.context else []
    return [*parts, _marked({"type": "file", "file": file}, block.cache_control)]


def _marked(part: JSONDict, marker: CacheControl | None) -> JSONDict:
    if marker is not None:
        part["cache_control"] = _marker(marker)
    return part


def _marker(marker: CacheControl) -> JSONDict:
    return marker.model_dump(exclude_none=True)


# -- tools -------------------------------------------------------------------


def _tool(tool: Tool) -> JSONDict:
    function: JSONDict = {"name": tool.name, "parameters": tool.input_schema}
    if tool.description:
        function["description"] = tool.description
    if tool.strict is not None:
        function["strict"] = tool.strict
    chat_tool: JSONDict = {"type": "function", "function": function}
    for name in TOOL_HINTS:  # markers, as cache_control: for Anthropic upstreams
        value = getattr(tool, name)
        if value is not None:
            chat_tool[name] = value
    return _marked(chat_tool, tool.cache_control)


def _add_tool_choice(body: JSONDict, choice: ToolChoice) -> None:
    if isinstance(choice, ToolChoiceNone):
        body["tool_choice"] = "none"
        return
    if isinstance(choice, ToolChoiceTool):
        body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    else:
        body["tool_choice"] = "required" if choice.type == "any" else "auto"
    if choice.disable_parallel_tool_use:
        body["parallel_tool_calls"] = False
