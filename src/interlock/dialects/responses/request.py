"""A Responses request as an OpenAI Chat Completions body (the pipeline's shape).

``instructions`` becomes the first (system) message; the conversation
(a stored response's items first, for ``previous_response_id``) becomes
messages: consecutive ``function_call`` (and ``custom_tool_call``) items
are one assistant turn's ``tool_calls``, each ``function_call_output`` (and
``custom_tool_call_output``) a ``tool`` message. Hosted tools
(``web_search`` and the others OpenAI runs itself) are left out; the
built-in tools the client runs (``shell``, ``apply_patch``, ``local_shell``)
are functions of their names (``builtin_tools.py``). Custom
(freeform) tools become chat's own custom tools; the pipeline sends them
as functions to an upstream that has none
(``interlock.pipeline.custom_tools``). A
reasoning item's ``encrypted_content`` carries a provider's signed thinking
blocks (Anthropic's), which go back on the assistant turn that follows it,
as the adapters expect them in a tool loop; its summary's text goes on that
turn as ``reasoning_content``, which an upstream on OpenAI's wire that needs
it back gets (DeepSeek; ``providers/openai_messages.py``).

Parameters are renamed where Chat Completions names them differently
(``max_output_tokens`` -> ``max_completion_tokens``, ``text.format`` ->
``response_format``, ``reasoning.effort`` -> ``reasoning_effort``).
``metadata`` and ``store`` stay at the edge: they describe the stored
response, not the model call.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from interlock.chat_markers import HOSTED_WEB_SEARCH, REASONING_SUMMARY
from interlock.dialects.responses.added_tools import search_call, search_call_id, search_result
from interlock.dialects.responses.builtin_tools import BUILTIN_TOOLS, chat_tool, search_tool
from interlock.dialects.responses.namespaces import flat_name
from interlock.dialects.responses.schemas import (
    AdditionalTools,
    AllowedTool,
    ApplyPatchCall,
    ApplyPatchCallOutput,
    BuiltinTool,
    CompactionItem,
    CompactionTrigger,
    ConfigurationUpdate,
    ContentPart,
    CustomTool,
    CustomToolCall,
    CustomToolCallOutput,
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    GrammarInput,
    HostedTool,
    InputFile,
    InputImage,
    InputItem,
    ItemReference,
    JsonObjectFormat,
    JsonSchemaFormat,
    LocalShellCall,
    LocalShellCallOutput,
    Message,
    NamespaceTool,
    ReasoningItem,
    Refusal,
    ResponsesRequest,
    ShellCall,
    ShellCallOutput,
    TextFormat,
    Tool,
    ToolChoiceAllowed,
    ToolChoiceBuiltin,
    ToolChoiceCustom,
    ToolChoiceFunction,
    ToolSearchCall,
    ToolSearchOutput,
    ToolSearchTool,
    WebSearchCall,
)
from interlock.dialects.responses.web_search import hosted_search
from interlock.errors import InvalidRequest

__all__ = [
    "CLIENT_PARAMS",
    "ITEM_ID_PREFIXES",
    "chat_body",
    "chat_messages",
    "conversation_items",
    "decode_summary",
    "decode_thinking",
    "encode_summary",
    "encode_thinking",
    "kept_by_compaction",
    "latest_compaction",
    "request_items",
    "stored_input",
    "stored_items",
    "summary_message",
]

JSONDict = dict[str, Any]

_IMAGE_SCHEMES = ("data:", "https:", "http:")
_SUMMARY_VERSION = 1  # of a compaction item's content
# What the chat body calls a Responses parameter: an error about one (from a
# deployment that cannot honour it) names the client's instead.
CLIENT_PARAMS = {
    "logprobs": "include",
    "max_completion_tokens": "max_output_tokens",
    "response_format": "text.format",
    "verbosity": "text.verbosity",
    "reasoning_effort": "reasoning.effort",
}
ITEM_ID_PREFIXES = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "custom_tool_call": "ctc",
    "custom_tool_call_output": "ctco",
    "shell_call": "sh",
    "shell_call_output": "sho",
    "apply_patch_call": "apc",
    "apply_patch_call_output": "apco",
    "local_shell_call": "lsh",
    "local_shell_call_output": "lsho",
    "web_search_call": "ws",
    "compaction": "cmp",
    "reasoning": "rs",
    "additional_tools": "at",
    "tool_search_call": "tsc",
    "tool_search_output": "tso",
    "configuration_update": "cfg",
}


_BREAKPOINT = "prompt_cache_breakpoint"
# Parameters chat names and means alike, passed as they are.
_SAID_ALIKE = (
    "temperature",
    "top_p",
    "user",
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
    "service_tier",
    "safety_identifier",
)


def chat_body(request: ResponsesRequest, history: Sequence[InputItem] = ()) -> JSONDict:
    """The chat body for ``request``, after the ``history`` items."""
    messages: list[JSONDict] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    if not history and isinstance(request.input, str):
        messages.append({"role": "user", "content": request.input})  # the usual request
    else:
        # History comes first; an error's index names the request's own item.
        messages += chat_messages([*history, *request_items(request)], start=-len(history))
    if not messages:  # only reasoning items: the model would have nothing to answer
        raise InvalidRequest("The input has no message for the model to answer.", param="input")
    body: JSONDict = {"model": request.model, "messages": messages}
    tools = [chat for tool in request.tools or () for chat in _chat_tools(tool)]
    _unique_names(tools)
    choice = request.tool_choice
    if isinstance(choice, ToolChoiceAllowed):
        # Chat has no such choice everywhere: the tools offered are the allowed ones.
        allowed = {_allowed_name(tool) for tool in choice.tools}
        tools = [tool for tool in tools if _chat_tool_name(tool) in allowed]
        choice = choice.mode
    if tools:
        body["tools"] = tools
    elif choice == "required":  # hosted tools alone: none to call
        raise InvalidRequest(
            "tool_choice 'required' needs a tool the model can call here: hosted tools "
            f"({', '.join(sorted({t.type for t in request.tools or ()}))}) are not offered "
            "through this gateway.",
            param="tool_choice",
            code="unsupported_parameter",
        )
    if choice is not None and tools:  # OpenAI refuses a choice of no tools
        body["tool_choice"] = _tool_choice(choice)
    search = hosted_search(
        tool.model_dump() for tool in request.tools or () if isinstance(tool, HostedTool)
    )
    if search is not None:  # where an upstream can run it (``web_search.py``)
        body[HOSTED_WEB_SEARCH] = search
    if request.parallel_tool_calls is not None and tools:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    text = request.text
    if text is not None and text.format is not None:
        response_format = _response_format(text.format)
        if response_format is not None:
            body["response_format"] = response_format
    if text is not None and text.verbosity is not None:
        body["verbosity"] = text.verbosity
    if request.max_output_tokens is not None:
        body["max_completion_tokens"] = request.max_output_tokens
    for name in _SAID_ALIKE:
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.reasoning is not None and request.reasoning.effort is not None:
        body["reasoning_effort"] = request.reasoning.effort
    if request.reasoning is not None and request.reasoning.summary is not None:
        body[REASONING_SUMMARY] = request.reasoning.summary  # for a Responses upstream
    if request.wants_logprobs:
        body["logprobs"] = True
        if request.top_logprobs:
            body["top_logprobs"] = request.top_logprobs
    if request.stream:
        # No usage chunk is asked for: the pipeline reads the upstream's for
        # its accounting, and the edge takes it from the request's record.
        body["stream"] = True
    return body


def request_items(request: ResponsesRequest) -> list[InputItem]:
    """The request's input as items (a string is one user message)."""
    if isinstance(request.input, str):
        return [Message(role="user", content=request.input)]
    return list(request.input)


def stored_input(request: ResponsesRequest, new_id: Callable[[str], str]) -> list[JSONDict]:
    """The request's input as a stored response keeps it (``stored_items``)."""
    if isinstance(request.input, str):  # the usual request: no model to build and dump
        part = {"type": "input_text", "text": request.input}
        return [{"type": "message", "role": "user", "content": [part], "id": new_id("msg")}]
    return stored_items(request_items(request), new_id)


def stored_items(items: Iterable[InputItem], new_id: Callable[[str], str]) -> list[JSONDict]:
    """Items as a stored response keeps them (and ``input_items`` lists
    them): each with an id, a message's text as a part."""
    stored = []
    for item in items:
        record = item.model_dump(by_alias=True, exclude_none=True)
        if isinstance(item, Message) and isinstance(item.content, str):
            kind = "output_text" if item.role == "assistant" else "input_text"
            record["content"] = [{"type": kind, "text": item.content}]
        record.setdefault("id", new_id(ITEM_ID_PREFIXES.get(item.type or "", "item")))
        stored.append(record)
    return stored


def conversation_items(items: Iterable[JSONDict]) -> list[JSONDict]:
    """Stored items as a conversation shows them: each with a ``status``
    (the input's ``completed``; output items carry their own)."""
    return [item if "status" in item else {**item, "status": "completed"} for item in items]


def chat_messages(items: Iterable[InputItem], start: int = 0) -> list[JSONDict]:
    """The conversation as chat messages (``start``: the first item's index
    in the request, for errors)."""
    messages: list[JSONDict] = []
    # From reasoning items, for the next assistant turn: signed thinking, and
    # the reasoning's text (``reasoning_content``, for the upstreams that take
    # it back: DeepSeek's thinking mode needs it in a tool loop).
    thinking: list[JSONDict] = []
    reasoned: list[str] = []
    items = list(items)
    compacted = latest_compaction(items)
    searched = ""  # the last tool search's call id, for a result that names none
    for index, item in enumerate(items, start):
        if index - start < compacted and not kept_by_compaction(item):
            continue  # in the summary, which replaces all but these messages
        if isinstance(item, ReasoningItem):
            if item.encrypted_content:
                thinking += decode_thinking(item.encrypted_content, f"input[{index}]")
            reasoned += [part.text for part in item.summary if part.text]
            continue
        if isinstance(
            item, WebSearchCall | CompactionTrigger | AdditionalTools | ConfigurationUpdate
        ):
            # A search's finding is in the text that follows it; a trigger is
            # no turn; added tools and updated settings are the request's
            # (``conversation_state.py``).
            continue
        if isinstance(item, CompactionItem):
            where = f"input[{index}]"
            message = summary_message(decode_summary(item.encrypted_content, where))
        elif isinstance(item, Message):
            message = _message(item, index)
        elif isinstance(item, FunctionCall):
            message = _assistant_turn(messages)
            message.setdefault("tool_calls", []).append(
                {
                    "id": item.call_id,
                    "type": "function",
                    "function": {"name": _called(item), "arguments": item.arguments},
                }
            )
        elif isinstance(item, CustomToolCall):
            message = _assistant_turn(messages)
            message.setdefault("tool_calls", []).append(
                {
                    "id": item.call_id,
                    "type": "custom",
                    "custom": {"name": _called(item), "input": item.input},
                }
            )
        elif isinstance(item, ShellCall | ApplyPatchCall | LocalShellCall):
            message = _assistant_turn(messages)
            message.setdefault("tool_calls", []).append(_builtin_call(item))
        elif isinstance(item, ShellCallOutput | ApplyPatchCallOutput | LocalShellCallOutput):
            message = _builtin_result(item)
        elif isinstance(item, ToolSearchCall):
            message = _assistant_turn(messages)
            searched = search_call_id(item, index)
            message.setdefault("tool_calls", []).append(search_call(item, searched))
        elif isinstance(item, ToolSearchOutput):
            message = search_result(item, searched)
        elif isinstance(item, ItemReference):  # the edge resolves them where it can
            raise InvalidRequest(
                "An item_reference is not available here: send the item itself.",
                param=f"input[{index}]",
                code="unsupported_parameter",
            )
        else:
            message = _tool_result(item, index)
        if message["role"] == "assistant" and (thinking or reasoned):
            if thinking:
                message["thinking_blocks"] = [*message.get("thinking_blocks", ()), *thinking]
            if reasoned:
                said = [message["reasoning_content"]] if "reasoning_content" in message else []
                message["reasoning_content"] = "\n\n".join([*said, *reasoned])
            thinking, reasoned = [], []
        if not messages or messages[-1] is not message:
            messages.append(message)
    return messages


def latest_compaction(items: Sequence[InputItem]) -> int:
    """The position of the last ``compaction`` item (0 where there is none).

    Before it the conversation is the summary's: only the messages
    compaction keeps (``kept_by_compaction``) are read again, whether
    the client dropped the rest (OpenAI's advice) or chained its responses
    (``previous_response_id``, where the gateway holds the whole of it)."""
    for position in range(len(items) - 1, -1, -1):
        if isinstance(items[position], CompactionItem):
            return position
    return 0


def kept_by_compaction(item: InputItem) -> bool:
    """An item compaction keeps as it was: the user's words, the system's
    and the developer's instructions (an agent's rules and environment,
    which a summary must not paraphrase away) and the tools they added."""
    if isinstance(item, Message):
        return item.role != "assistant"
    return isinstance(item, AdditionalTools | ConfigurationUpdate)


def _called(item: FunctionCall | CustomToolCall) -> str:
    """The tool's name as the model was offered it."""
    return item.name if item.namespace is None else flat_name(item.namespace, item.name)


def _builtin_call(item: ShellCall | ApplyPatchCall | LocalShellCall) -> JSONDict:
    """A built-in tool's call as the function call the model made (``builtin_tools.py``)."""
    if isinstance(item, ApplyPatchCall):
        name, arguments = "apply_patch", item.operation
    elif isinstance(item, ShellCall):
        name, arguments = "shell", item.action
    else:
        name = "local_shell"
        arguments = {k: v for k, v in item.action.items() if k != "type"}  # always "exec"
    arguments = {k: v for k, v in arguments.items() if v is not None and v != {}}  # unsaid
    function = {"name": name, "arguments": orjson.dumps(arguments).decode()}
    return {"id": item.call_id, "type": "function", "function": function}


def _builtin_result(
    item: ShellCallOutput | ApplyPatchCallOutput | LocalShellCallOutput,
) -> JSONDict:
    """A built-in tool's output as the result of its function call."""
    if isinstance(item, ShellCallOutput):  # each command's stdout, stderr and outcome
        return {
            "role": "tool",
            "tool_call_id": item.call_id,
            "content": orjson.dumps(item.output).decode(),
        }
    if isinstance(item, ApplyPatchCallOutput):
        said = item.status if not item.output else f"{item.status}: {item.output}"
        return {"role": "tool", "tool_call_id": item.call_id, "content": said}
    return {"role": "tool", "tool_call_id": item.id, "content": item.output}


def _assistant_turn(messages: list[JSONDict]) -> JSONDict:
    """The assistant turn a function call belongs to: the last message when
    it is the assistant's (its text, or calls before this one), else a new one."""
    if messages and messages[-1]["role"] == "assistant":
        return messages[-1]
    return {"role": "assistant", "content": None}


def _message(item: Message, index: int) -> JSONDict:
    where = f"input[{index}].content"
    if item.role == "assistant":
        # Chat assistants take text; an echoed answer's parts are joined.
        return {"role": "assistant", "content": _text(item.content, where)}
    content = item.content
    if isinstance(content, str):
        return {"role": item.role, "content": content}
    return {
        "role": item.role,
        "content": [_part(part, f"{where}[{i}]") for i, part in enumerate(content)],
    }


def _tool_result(item: FunctionCallOutput | CustomToolCallOutput, index: int) -> JSONDict:
    return {
        "role": "tool",
        "tool_call_id": item.call_id,
        "content": _text(item.output, f"input[{index}].output"),
    }


def _text(content: str | list[ContentPart], where: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for i, part in enumerate(content):
        if isinstance(part, InputImage | InputFile):
            raise InvalidRequest(
                "Images and files are supported in user messages only.",
                param=f"{where}[{i}]",
                code="unsupported_parameter",
            )
        texts.append(part.refusal if isinstance(part, Refusal) else part.text)
    return "".join(texts)


def _part(part: ContentPart, where: str) -> JSONDict:
    if isinstance(part, InputImage):
        out = _image(part, where)
    elif isinstance(part, InputFile):
        out = _file(part, where)
    elif isinstance(part, Refusal):
        out = {"type": "text", "text": part.refusal}
    else:
        out = {"type": "text", "text": part.text}
    extra = part.model_extra
    if extra and isinstance(extra.get(_BREAKPOINT), dict):
        # OpenAI's explicit cache breakpoint: chat names it alike, and an
        # upstream that caches only where marked reads it (prompt_cache.py).
        out[_BREAKPOINT] = extra[_BREAKPOINT]
    return out


def _image(part: InputImage, where: str) -> JSONDict:
    if part.image_url is None:
        # A file id names an upload at OpenAI; the gateway has no such file.
        raise InvalidRequest(
            "An input_image needs an image_url (a data: or https: URL); file_id is not supported.",
            param=f"{where}.image_url",
            code="unsupported_parameter",
        )
    if not part.image_url.startswith(_IMAGE_SCHEMES):
        raise InvalidRequest(
            "image_url must be a data: or https: URL.",
            param=f"{where}.image_url",
            code="invalid_value",
        )
    image: JSONDict = {"url": part.image_url}
    if part.detail is not None:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


def _file(part: InputFile, where: str) -> JSONDict:
    """A document as chat's ``file`` part; the adapters check its data. A
    ``file_id`` names an upload to this gateway, read by the edge
    (``api/file_inputs.py``)."""
    if part.file_data is None and part.file_id is not None:
        named: JSONDict = {"file_id": part.file_id}
        if part.filename is not None:
            named["filename"] = part.filename
        return {"type": "file", "file": named}
    if part.file_data is None:
        raise InvalidRequest(
            "An input_file needs its file_data (a base64 data: URL) or the file_id of an "
            "upload to this gateway; file_url names a file this gateway does not fetch.",
            param=f"{where}.file_url" if part.file_url else f"{where}.file_data",
            code="unsupported_parameter",
        )
    if not part.file_data.startswith("data:"):
        raise InvalidRequest(
            "file_data must be a base64 data: URL (data:application/pdf;base64,...).",
            param=f"{where}.file_data",
            code="invalid_value",
        )
    file: JSONDict = {"file_data": part.file_data}
    if part.filename is not None:
        file["filename"] = part.filename
    return {"type": "file", "file": file}


def _chat_tools(tool: Tool) -> list[JSONDict]:
    """A tool as the chat tools it offers: a namespace's each under its
    flat name, a hosted tool none."""
    if isinstance(tool, HostedTool):
        return []
    if isinstance(tool, ToolSearchTool):
        return [search_tool(tool.description, tool.parameters)]
    if isinstance(tool, BuiltinTool):
        return [chat_tool(tool.type)]
    if isinstance(tool, NamespaceTool):
        return [
            _chat_tool(inner.model_copy(update={"name": flat_name(tool.name, inner.name)}))
            for inner in tool.tools
        ]
    return [_chat_tool(tool)]


def _chat_tool(tool: FunctionTool | CustomTool) -> JSONDict:
    if isinstance(tool, CustomTool):
        custom: JSONDict = {"name": tool.name}
        if tool.description is not None:
            custom["description"] = tool.description
        if isinstance(tool.format, GrammarInput):  # nested one level deeper in chat
            grammar = {"definition": tool.format.definition, "syntax": tool.format.syntax}
            custom["format"] = {"type": "grammar", "grammar": grammar}
        elif tool.format is not None:
            custom["format"] = {"type": "text"}
        return {"type": "custom", "custom": custom}
    fields = tool.model_dump(exclude_none=True)
    function = {
        k: fields[k] for k in ("name", "description", "parameters", "strict") if k in fields
    }
    return {"type": "function", "function": function}


def _unique_names(tools: list[JSONDict]) -> None:
    """A model is offered each tool by name: two of one name (a function
    named ``shell`` and the ``shell`` tool, say) cannot both be offered."""
    seen: set[str | None] = set()
    for tool in tools:
        name = _chat_tool_name(tool)
        if name in seen:
            raise InvalidRequest(
                f"Two tools are offered to the model as `{name}`; rename one.",
                param="tools",
                code="invalid_value",
            )
        seen.add(name)


def _allowed_name(tool: AllowedTool) -> str | None:
    """The chat tool name an allowed tool stands for (a hosted tool: none)."""
    if tool.type in BUILTIN_TOOLS:
        return tool.type  # offered as the function of its name
    if tool.name is None:
        return None
    return tool.name if tool.namespace is None else flat_name(tool.namespace, tool.name)


def _chat_tool_name(tool: JSONDict) -> str | None:
    spec = tool.get("function") or tool.get("custom") or {}
    name = spec.get("name")
    return name if isinstance(name, str) else None


def _tool_choice(
    choice: str | ToolChoiceFunction | ToolChoiceCustom | ToolChoiceBuiltin,
) -> str | JSONDict:
    if isinstance(choice, ToolChoiceFunction):
        return {"type": "function", "function": {"name": choice.name}}
    if isinstance(choice, ToolChoiceBuiltin):
        return {"type": "function", "function": {"name": choice.type}}
    if isinstance(choice, ToolChoiceCustom):
        return {"type": "custom", "custom": {"name": choice.name}}
    return choice


def _response_format(fmt: TextFormat) -> JSONDict | None:
    if isinstance(fmt, JsonSchemaFormat):
        schema: JSONDict = {"name": fmt.name, "schema": fmt.json_schema}
        if fmt.description is not None:
            schema["description"] = fmt.description
        if fmt.strict is not None:
            schema["strict"] = fmt.strict
        return {"type": "json_schema", "json_schema": schema}
    if isinstance(fmt, JsonObjectFormat):
        return {"type": "json_object"}
    return None  # plain text: the default


def encode_thinking(blocks: list[JSONDict]) -> str:
    """Signed thinking blocks as a reasoning item's opaque ``encrypted_content``."""
    return base64.urlsafe_b64encode(orjson.dumps(blocks)).decode()


def decode_thinking(content: str, where: str) -> list[JSONDict]:
    try:
        blocks = orjson.loads(base64.urlsafe_b64decode(content))
    except (binascii.Error, ValueError):
        blocks = None
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise InvalidRequest(
            "encrypted_content was not made by this gateway.",
            param=f"{where}.encrypted_content",
            code="invalid_value",
        )
    return blocks


# How a compaction's summary comes back to the model (``compaction.py``).
_SUMMARY_INTRO = (
    "The earlier part of this conversation was compacted. A summary of it "
    "follows; continue the work from it.\n\n"
)


def encode_summary(summary: str) -> str:
    return base64.urlsafe_b64encode(
        orjson.dumps({"v": _SUMMARY_VERSION, "summary": summary})
    ).decode()


def decode_summary(content: str, where: str) -> str:
    try:
        found = orjson.loads(base64.urlsafe_b64decode(content))
    except (binascii.Error, ValueError):
        found = None
    summary = found.get("summary") if isinstance(found, dict) else None
    if not isinstance(summary, str):
        raise InvalidRequest(
            "This compaction item was not made by this gateway: its "
            "encrypted_content cannot be read here.",
            param=f"{where}.encrypted_content",
            code="invalid_value",
        )
    return summary


def summary_message(summary: str) -> JSONDict:
    """A compaction item as the chat message the model reads."""
    return {"role": "user", "content": _SUMMARY_INTRO + summary}
