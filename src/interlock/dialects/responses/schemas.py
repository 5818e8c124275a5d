"""The Responses API's request (``POST /v1/responses``), as pydantic models.

They validate the client's body (a 400 naming the field, as the pipeline's
own schemas do) and give the translation typed access. Only what the
gateway can honour is declared (``prompt_cache_key``, ``service_tier`` and
``safety_identifier`` too, which chat names alike and an OpenAI upstream
reads); other fields that only describe the caller (``truncation``, ...)
are accepted and ignored, and ``prompt`` (a stored prompt template), which
would change the answer in a way no chat model can, is refused by name.
The Conversations API's bodies (``ConversationCreate``, ...) are here too:
a conversation's items are Responses input items.

Input items are told apart by ``type``; a message may leave it out
(``{"role": "user", "content": "..."}``, the SDK's easy form). Items the
gateway itself wrote (a stored or echoed response's ``output``: assistant
messages, function calls, reasoning) are input too, which is how a client
continues a conversation without ``previous_response_id``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from interlock.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)

__all__ = [
    "HOSTED_TOOLS",
    "LOGPROBS",
    "AdditionalTools",
    "ApplyPatchCall",
    "ApplyPatchCallOutput",
    "ApplyPatchTool",
    "BuiltinTool",
    "CompactRequest",
    "CompactionItem",
    "CompactionTrigger",
    "ConfigurationUpdate",
    "ContentPart",
    "ContextManagement",
    "ConversationCreate",
    "ConversationItemsCreate",
    "ConversationUpdate",
    "CustomTool",
    "CustomToolCall",
    "CustomToolCallOutput",
    "FunctionCall",
    "FunctionCallOutput",
    "FunctionTool",
    "GrammarInput",
    "HostedTool",
    "InputFile",
    "InputImage",
    "InputItem",
    "InputText",
    "ItemReference",
    "JsonObjectFormat",
    "JsonSchemaFormat",
    "LocalShellCall",
    "LocalShellCallOutput",
    "LocalShellTool",
    "Message",
    "NamespaceTool",
    "OutputText",
    "Reasoning",
    "ReasoningItem",
    "Refusal",
    "ResponsesRequest",
    "ShellCall",
    "ShellCallOutput",
    "ShellTool",
    "TextConfig",
    "TextFormat",
    "Tool",
    "ToolChoiceAllowed",
    "ToolChoiceBuiltin",
    "ToolChoiceCustom",
    "ToolChoiceFunction",
    "ToolSearchCall",
    "ToolSearchOutput",
    "ToolSearchTool",
    "WebSearchCall",
    "input_items",
    "validate_body",
    "validate_request",
]


class _Open(BaseModel):
    # Extra fields pass (the SDK echoes ``status``, ``logprobs`` and more on
    # items it got back); types are strict, as OpenAI's are.
    model_config = ConfigDict(extra="allow", strict=True)


class InputText(_Open):
    type: Literal["input_text"]
    text: str


class InputImage(_Open):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["low", "high", "auto"] | None = None


class InputFile(_Open):
    """A document: ``file_data`` is a base64 ``data:`` URL (PDF or plain text)."""

    type: Literal["input_file"]
    file_data: str | None = None
    filename: str | None = None
    file_id: str | None = None
    file_url: str | None = None


class OutputText(_Open):
    """An assistant message's text, as the gateway answered it."""

    type: Literal["output_text"]
    text: str


class Refusal(_Open):
    type: Literal["refusal"]
    refusal: str


def _tag(value: Any) -> str | None:
    found = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return found if isinstance(found, str) else None


ContentPart = Annotated[
    Annotated[InputText, Tag("input_text")]
    | Annotated[InputImage, Tag("input_image")]
    | Annotated[InputFile, Tag("input_file")]
    | Annotated[OutputText, Tag("output_text")]
    | Annotated[Refusal, Tag("refusal")],
    Discriminator(_tag),
]


class Message(_Open):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: str | None = None


class FunctionCall(_Open):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    id: str | None = None
    namespace: str | None = None  # the call of a namespace's tool (``namespaces.py``)


class FunctionCallOutput(_Open):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[ContentPart]
    id: str | None = None


class CustomToolCall(_Open):
    """A call to a custom (freeform) tool: its ``input`` is text, not JSON."""

    type: Literal["custom_tool_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: str
    id: str | None = None
    namespace: str | None = None


class CustomToolCallOutput(_Open):
    type: Literal["custom_tool_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[ContentPart]
    id: str | None = None


class ShellCall(_Open):
    """A ``shell`` built-in tool's call, sent back (``builtin_tools.py``)."""

    type: Literal["shell_call"]
    call_id: str = Field(min_length=1)
    action: dict[str, Any]
    id: str | None = None


class ShellCallOutput(_Open):
    type: Literal["shell_call_output"]
    call_id: str = Field(min_length=1)
    output: list[dict[str, Any]]
    id: str | None = None


class ApplyPatchCall(_Open):
    """An ``apply_patch`` built-in tool's call, sent back."""

    type: Literal["apply_patch_call"]
    call_id: str = Field(min_length=1)
    operation: dict[str, Any]
    id: str | None = None


class ApplyPatchCallOutput(_Open):
    type: Literal["apply_patch_call_output"]
    call_id: str = Field(min_length=1)
    status: Literal["completed", "failed"]
    output: str | None = None
    id: str | None = None


class LocalShellCall(_Open):
    """A ``local_shell`` built-in tool's call, sent back."""

    type: Literal["local_shell_call"]
    call_id: str = Field(min_length=1)
    action: dict[str, Any]
    id: str | None = None


class LocalShellCallOutput(_Open):
    """Its output: ``id`` is the call's id (the model's ``call_id``)."""

    type: Literal["local_shell_call_output"]
    id: str = Field(min_length=1)
    output: str


class WebSearchCall(_Open):
    """A web search a model ran (an Anthropic deployment's, or OpenAI's),
    sent back: the text after it says what the search found, so it is read
    and left out of the call."""

    type: Literal["web_search_call"]
    id: str | None = None


class SummaryText(_Open):
    type: Literal["summary_text"]
    text: str


class ReasoningItem(_Open):
    """A reasoning item the gateway answered: its summary is shown, and
    ``encrypted_content`` carries a provider's signed thinking blocks back."""

    type: Literal["reasoning"]
    summary: list[SummaryText] = Field(default_factory=list)
    encrypted_content: str | None = None
    id: str | None = None


class CompactionItem(_Open):
    """What ``POST /v1/responses/compact`` made of a conversation: its
    summary, opaque to the client (``compaction.py``)."""

    type: Literal["compaction"]
    encrypted_content: str = Field(min_length=1)
    id: str | None = None


class CompactionTrigger(_Open):
    """Asks for the conversation before it to be compacted now, and for
    nothing else (Codex's remote compaction); the input's last item."""

    type: Literal["compaction_trigger"]
    id: str | None = None


class ItemReference(_Open):
    """An item of a stored Response, by its id (what the AI SDK sends for the
    earlier turns' output with ``store`` on); the edge puts the item itself
    in its place (``api/item_references.py``)."""

    type: Literal["item_reference"] | None = "item_reference"
    id: str = Field(min_length=1)


def _item_tag(value: Any) -> str | None:
    if isinstance(value, dict) and value.get("type") is None:
        # The easy form of a message ({"role": ..., "content": ...}), or a
        # reference, whose type may be left out or null.
        return "message" if "role" in value or "id" not in value else "item_reference"
    return _tag(value)


class FunctionTool(_Open):
    type: Literal["function"]
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class PlainTextInput(_Open):
    type: Literal["text"]


class GrammarInput(_Open):
    """The input a custom tool takes: what matches ``definition``."""

    type: Literal["grammar"]
    syntax: Literal["lark", "regex"]
    definition: str = Field(min_length=1)


class CustomTool(_Open):
    """A tool whose input is free-form text (Codex's ``apply_patch``), not JSON."""

    type: Literal["custom"]
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    format: (
        Annotated[
            Annotated[PlainTextInput, Tag("text")] | Annotated[GrammarInput, Tag("grammar")],
            Discriminator(_tag),
        ]
        | None
    ) = None


# Tools OpenAI runs on its own servers. No chat model can call them, so they
# are left out of the call (``HostedTool``) instead of failing the request:
# Codex offers web_search with every request by default.
HOSTED_TOOLS = frozenset(
    {
        "web_search",
        "web_search_2025_08_26",
        "web_search_preview",
        "web_search_preview_2025_03_11",
        "file_search",
        "code_interpreter",
        "image_generation",
        "mcp",
        "tool_search",
    }
)


class LocalEnvironment(_Open):
    type: Literal["local"]


class ShellTool(_Open):
    """The ``shell`` built-in tool, run by the client in its own environment
    (``builtin_tools.py``); OpenAI's hosted containers are OpenAI's alone."""

    type: Literal["shell"]
    environment: LocalEnvironment | None = None

    @field_validator("environment", mode="before")
    @classmethod
    def _local(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("type") != "local":
            raise PydanticCustomError(
                "hosted_container",
                "only a local environment can be used through this gateway: "
                "'{kind}' is a container OpenAI hosts",
                {"kind": value.get("type")},
            )
        return value


class ApplyPatchTool(_Open):
    type: Literal["apply_patch"]


class LocalShellTool(_Open):
    type: Literal["local_shell"]


class HostedTool(_Open):
    """A tool OpenAI runs itself (``HOSTED_TOOLS``): accepted, echoed, not offered."""

    type: str


class ToolSearchTool(_Open):
    """Tool search run by the client (Codex's, for its deferred MCP tools):
    offered to the model as a function of the tool's own parameters, its
    calls answered as ``tool_search_call`` items (``builtin_tools.py``).
    Run by OpenAI's servers (``execution: "server"``), it is a hosted tool."""

    type: Literal["tool_search"]
    execution: Literal["client"]
    description: str | None = None
    parameters: dict[str, Any] | None = None


def _tool_tag(value: Any) -> str | None:
    kind = _tag(value)
    if kind == "tool_search":
        execution = value.get("execution") if isinstance(value, dict) else None
        return "tool_search" if execution == "client" else "hosted"
    return "hosted" if kind in HOSTED_TOOLS else kind


class NamespaceTool(_Open):
    """Function and custom tools grouped under a name (``namespaces.py``)."""

    type: Literal["namespace"]
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    tools: list[
        Annotated[
            Annotated[FunctionTool, Tag("function")] | Annotated[CustomTool, Tag("custom")],
            Discriminator(_tag),
        ]
    ]  # Codex sends empty ones (a server with nothing to offer yet)


# The tools the gateway can offer a model (those the client runs itself),
# and the hosted ones it leaves out.
Tool = Annotated[
    Annotated[FunctionTool, Tag("function")]
    | Annotated[CustomTool, Tag("custom")]
    | Annotated[NamespaceTool, Tag("namespace")]
    | Annotated[ShellTool, Tag("shell")]
    | Annotated[ApplyPatchTool, Tag("apply_patch")]
    | Annotated[LocalShellTool, Tag("local_shell")]
    | Annotated[ToolSearchTool, Tag("tool_search")]
    | Annotated[HostedTool, Tag("hosted")],
    Discriminator(_tool_tag),
]
BuiltinTool = ShellTool | ApplyPatchTool | LocalShellTool


class AdditionalTools(_Open):
    """Tools made available from this point of the conversation (Codex
    sends its ``exec`` tool so); offered with the request's
    (``added_tools.py``)."""

    type: Literal["additional_tools"]
    role: Literal["developer"] = "developer"
    tools: list[Tool]
    id: str | None = None


class ToolSearchCall(_Open):
    """The model's call of the tool search (its arguments: the tool's own
    parameters, an object), run by the client or by OpenAI's servers."""

    type: Literal["tool_search_call"]
    arguments: Any = None
    call_id: str | None = None
    execution: Literal["server", "client"] | None = None
    id: str | None = None


class ToolSearchOutput(_Open):
    """What a tool search found: the tools it loaded, callable from then on."""

    type: Literal["tool_search_output"]
    tools: list[Tool]
    call_id: str | None = None
    execution: Literal["server", "client"] | None = None
    id: str | None = None


InputItem = Annotated[
    Annotated[Message, Tag("message")]
    | Annotated[FunctionCall, Tag("function_call")]
    | Annotated[FunctionCallOutput, Tag("function_call_output")]
    | Annotated[CustomToolCall, Tag("custom_tool_call")]
    | Annotated[CustomToolCallOutput, Tag("custom_tool_call_output")]
    | Annotated[ShellCall, Tag("shell_call")]
    | Annotated[ShellCallOutput, Tag("shell_call_output")]
    | Annotated[ApplyPatchCall, Tag("apply_patch_call")]
    | Annotated[ApplyPatchCallOutput, Tag("apply_patch_call_output")]
    | Annotated[LocalShellCall, Tag("local_shell_call")]
    | Annotated[LocalShellCallOutput, Tag("local_shell_call_output")]
    | Annotated[WebSearchCall, Tag("web_search_call")]
    | Annotated[ReasoningItem, Tag("reasoning")]
    | Annotated[CompactionItem, Tag("compaction")]
    | Annotated[CompactionTrigger, Tag("compaction_trigger")]
    | Annotated[ItemReference, Tag("item_reference")]
    | Annotated[AdditionalTools, Tag("additional_tools")]
    | Annotated[ToolSearchCall, Tag("tool_search_call")]
    | Annotated[ToolSearchOutput, Tag("tool_search_output")]
    | Annotated["ConfigurationUpdate", Tag("configuration_update")],
    Discriminator(_item_tag),
]


class ToolChoiceFunction(_Open):
    type: Literal["function"]
    name: str = Field(min_length=1)


class ToolChoiceCustom(_Open):
    type: Literal["custom"]
    name: str = Field(min_length=1)


class AllowedTool(_Open):
    """One tool of an ``allowed_tools`` choice: a function or custom tool
    by name (and namespace), or a hosted tool by type."""

    type: str = Field(min_length=1)
    name: str | None = None
    namespace: str | None = None


class ToolChoiceAllowed(_Open):
    """The model may call only these of the tools offered (``mode``: may or must)."""

    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[AllowedTool] = Field(min_length=1)


class ToolChoiceBuiltin(_Open):
    """Call this built-in tool (``shell``, ``apply_patch``)."""

    type: Literal["shell", "apply_patch", "local_shell"]


ToolChoiceNamed = Annotated[
    Annotated[ToolChoiceFunction, Tag("function")]
    | Annotated[ToolChoiceCustom, Tag("custom")]
    | Annotated[ToolChoiceAllowed, Tag("allowed_tools")]
    | Annotated[ToolChoiceBuiltin, Tag("shell")]
    | Annotated[ToolChoiceBuiltin, Tag("apply_patch")]
    | Annotated[ToolChoiceBuiltin, Tag("local_shell")],
    Discriminator(_tag),
]


class PlainTextFormat(_Open):
    type: Literal["text"]


class JsonSchemaFormat(_Open):
    type: Literal["json_schema"]
    name: str = Field(min_length=1, max_length=64)
    # ``schema`` would shadow a BaseModel attribute.
    json_schema: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


class JsonObjectFormat(_Open):
    type: Literal["json_object"]


TextFormat = Annotated[
    Annotated[PlainTextFormat, Tag("text")]
    | Annotated[JsonSchemaFormat, Tag("json_schema")]
    | Annotated[JsonObjectFormat, Tag("json_object")],
    Discriminator(_tag),
]


class TextConfig(_Open):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


class Reasoning(_Open):
    effort: Effort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class EffortUpdate(_Open):
    effort: Effort | None = None


class FormatUpdate(_Open):
    format: TextFormat


class ConfigurationUpdate(_Open):
    """Settings for this response and the later ones, until a later update
    replaces them: a reasoning effort, a text format (``conversation_state.py``).
    Clients keep the request's own settings as they were, for the prompt
    cache, and change them so mid-conversation."""

    type: Literal["configuration_update"]
    reasoning: EffortUpdate | None = None
    text: FormatUpdate | None = None
    id: str | None = None


# Fields that change the answer in ways a chat model cannot honour.
_REFUSED = ("prompt",)
# OpenAI's bounds: 16 pairs, keys up to 64 characters, values up to 512.
Metadata = Annotated[
    dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
    Field(max_length=16),
]
# Items one Conversations API call may add (OpenAI's limit).
MAX_NEW_ITEMS = 20


class ConversationRef(_Open):
    id: str = Field(min_length=1)


class ConversationCreate(_Open):
    items: list[InputItem] | None = Field(default=None, max_length=MAX_NEW_ITEMS)
    metadata: Metadata | None = None


class ConversationUpdate(_Open):
    metadata: Metadata


class ConversationItemsCreate(_Open):
    items: list[InputItem] = Field(min_length=1, max_length=MAX_NEW_ITEMS)


# The ``include`` value that asks for the text's token log probabilities.
LOGPROBS = "message.output_text.logprobs"


class ContextManagement(_Open):
    """``context_management``'s entry: server-side compaction, run before the
    model reads a context of at least ``compact_threshold`` tokens
    (``api/responses_compaction.py``)."""

    type: Literal["compaction"]
    compact_threshold: int | None = Field(default=None, ge=1)


class ResponsesRequest(_Open):
    model: str = Field(min_length=1)
    input: str | list[InputItem]
    instructions: str | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["auto", "none", "required"] | ToolChoiceNamed | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    reasoning: Reasoning | None = None
    metadata: Metadata | None = None
    user: str | None = None
    stream: bool | None = None
    store: bool | None = None
    # Run by the batch workers; the client polls (``api/responses.py``).
    background: bool | None = None
    previous_response_id: str | None = Field(default=None, min_length=1)
    # The conversation whose items come first, and which this response's
    # input and output are added to (``api/responses.py``).
    conversation: str | ConversationRef | None = None
    # What the output carries beyond the default; the gateway acts on
    # LOGPROBS (the others name outputs of tools it does not run).
    include: list[str] | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    # For the upstream's own serving, chat's fields of the same names: where
    # OpenAI routes for its prompt cache (Codex sends its conversation's id),
    # the processing tier (and its price), the end user for abuse checks.
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in-memory", "24h"] | None = None
    prompt_cache_options: dict[str, Any] | None = None  # OpenAI's explicit caching
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    safety_identifier: str | None = None
    context_management: list[ContextManagement] | None = Field(default=None, max_length=1)

    @property
    def compaction(self) -> ContextManagement | None:
        """The server-side compaction asked for, if any."""
        return self.context_management[0] if self.context_management else None

    @property
    def compaction_triggered(self) -> bool:
        """The input ends with a ``compaction_trigger``: compact, answer nothing."""
        found = self.input
        return isinstance(found, list) and isinstance(found[-1], CompactionTrigger)

    @property
    def references(self) -> bool:
        """The input names stored items by id (``item_reference``)."""
        found = self.input
        return isinstance(found, list) and any(isinstance(i, ItemReference) for i in found)

    @property
    def wants_logprobs(self) -> bool:
        return LOGPROBS in (self.include or ())

    @property
    def conversation_id(self) -> str | None:
        found = self.conversation
        return found.id if isinstance(found, ConversationRef) else found

    @field_validator("input")
    @classmethod
    def _some_input(cls, value: str | list[Any]) -> str | list[Any]:
        if isinstance(value, list) and not value:
            raise PydanticCustomError("too_short", "at least one input item is needed", {})
        return value


class CompactRequest(_Open):
    """``POST /v1/responses/compact``: the conversation to compact, as a
    response would continue it (``input`` after ``previous_response_id``'s)."""

    model: str = Field(min_length=1)
    input: str | list[InputItem] | None = None
    instructions: str | None = None
    previous_response_id: str | None = Field(default=None, min_length=1)


_ITEMS: TypeAdapter[list[InputItem]] = TypeAdapter(list[InputItem])
# Location labels pydantic adds for union members and tags: not field names.
_UNION_LABELS = (
    "str",
    "int",
    "float",
    "bool",
    "literal[",
    "list[",
    "dict[",
    "function-after[",
    "tagged-union[",
)


def validate_request(body: dict[str, Any]) -> ResponsesRequest:
    """``body`` as a ``ResponsesRequest``, or a 400 naming the field."""
    for name in _REFUSED:
        if body.get(name) not in (None, False):
            raise InvalidRequest(
                f"'{name}' is not supported by this gateway.",
                param=name,
                code="unsupported_parameter",
            )
    try:
        request = ResponsesRequest.model_validate(body)
    except ValidationError as exc:
        raise _invalid(exc) from None
    if request.background:
        if request.store is False:
            raise InvalidRequest(
                "A background response cannot be created with 'store': "
                "it is stored, so that it can be retrieved.",
                param="store",
                code="unsupported_parameter",
            )
        if request.conversation is not None:
            raise InvalidRequest(
                "A background response cannot run in a conversation on this gateway: "
                "continue it with previous_response_id.",
                param="conversation",
                code="unsupported_parameter",
            )
    _check_triggers(request)
    if request.conversation is not None and request.previous_response_id is not None:
        raise InvalidRequest(
            "Mutually exclusive parameters: give 'previous_response_id' or 'conversation', "
            "not both.",
            param="conversation",
            code="mutually_exclusive_parameters",
        )
    return request


def _check_triggers(request: ResponsesRequest) -> None:
    """A ``compaction_trigger`` is the input's last item, its only one, and
    asks for nothing but the compaction."""
    if isinstance(request.input, str):
        return
    last = len(request.input) - 1
    for index, item in enumerate(request.input):
        if isinstance(item, CompactionTrigger) and index != last:
            raise InvalidRequest(
                "The 'compaction_trigger' item must be the final input item.",
                param=f"input[{index}]",
                code="invalid_value",
            )
    if request.compaction_triggered and request.background:
        raise InvalidRequest(
            "A 'compaction_trigger' cannot run in the background: it is answered "
            "once the conversation is compacted.",
            param="background",
            code="unsupported_parameter",
        )


def validate_body(model: type[M], body: dict[str, Any]) -> M:
    """``body`` as ``model`` (a Conversations API or compaction body), or a
    400 naming the field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _invalid(exc) from None


def input_items(items: list[dict[str, Any]]) -> list[InputItem]:
    """Items the gateway stored itself, read back (they were valid when stored)."""
    return _ITEMS.validate_python(items)


def _invalid(exc: ValidationError) -> InvalidRequest:
    # A union reports every member's failure; the deepest one is about what
    # the client meant (the list of items, not "should be a string").
    first = max(exc.errors(include_url=False), key=lambda error: len(error["loc"]))
    param = _param(first["loc"])
    if first["type"] == "union_tag_invalid":
        param += ".type"
        tag = first.get("ctx", {}).get("tag")
        return InvalidRequest(
            f"Invalid value for '{param}': {tag!r} is not supported.",
            param=param,
            code="invalid_value",
        )
    if first["type"] == "missing":
        return InvalidRequest(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    return InvalidRequest(
        f"Invalid value for '{param}': {first['msg']}." if param else first["msg"],
        param=param or None,
        code="invalid_value",
    )


def _param(loc: tuple[int | str, ...]) -> str:
    """``input[0].content[1].text`` from pydantic's location, without the
    labels it adds for union members and tags."""
    out = ""
    previous: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(_UNION_LABELS) or part in _MODEL_LABELS:
            continue  # a label, not a step: what follows is read as if it were not there
        elif part in _TAGS and (isinstance(previous, int) or previous in _TAGGED):
            pass
        else:
            out += f".{part}" if out else part
        previous = part
    return out


_MODEL_LABELS = frozenset({"ConversationRef"})
# Fields whose value is one of several shapes told apart by ``type``.
_TAGGED = frozenset({"format", "tool_choice"})
_TAGS = frozenset(
    {
        "message",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "shell_call",
        "shell_call_output",
        "apply_patch_call",
        "apply_patch_call_output",
        "local_shell_call",
        "local_shell_call_output",
        "web_search_call",
        "shell",
        "apply_patch",
        "local_shell",
        "reasoning",
        "compaction",
        "compaction_trigger",
        "item_reference",
        "additional_tools",
        "tool_search_call",
        "tool_search_output",
        "tool_search",
        "configuration_update",
        "function",
        "custom",
        "namespace",
        "allowed_tools",
        "grammar",
        "input_text",
        "input_image",
        "input_file",
        "output_text",
        "refusal",
        "text",
        "json_schema",
        "json_object",
    }
)
