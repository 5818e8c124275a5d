"""Anthropic Messages request bodies, as pydantic models: what
``POST /v1/messages`` and ``POST /v1/messages/count_tokens`` take.

They validate; ``request.py`` translates from the validated models. Like
Anthropic's API, an unknown field is a 400 naming it (a misspelt
``cache_control`` would otherwise pass silently), types are strict (``"1"``
is not an integer), and content blocks are told apart by their ``type``.
Features with no counterpart in OpenAI's chat shape (containers, MCP
servers, documents by URL or with citations) are not modelled, so they are
refused the same way, naming the field. PDF and plain-text documents are:
they become chat's ``file`` parts. So is ``output_config``: its ``format``
becomes chat's ``response_format``, and both travel natively to Anthropic
upstreams. Anthropic's own tool types (server tools such as
``web_search_20250305``) and the blocks their answers hold are kept as sent,
for Anthropic upstreams alone (ADR 0027).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from interlock.errors import InvalidRequest

__all__ = [
    "AnthropicTool",
    "Base64Source",
    "Block",
    "CacheControl",
    "ContextManagement",
    "CountTokensRequest",
    "Diagnostics",
    "DocumentBlock",
    "ImageBlock",
    "Message",
    "MessagesRequest",
    "Metadata",
    "OutputConfig",
    "OutputFormat",
    "PlainTextSource",
    "RedactedThinkingBlock",
    "SearchResultBlock",
    "ServerBlock",
    "TextBlock",
    "Thinking",
    "ThinkingBlock",
    "Tool",
    "ToolChoice",
    "ToolChoiceAny",
    "ToolChoiceAuto",
    "ToolChoiceNone",
    "ToolChoiceTool",
    "ToolReferenceBlock",
    "ToolResultBlock",
    "ToolUseBlock",
    "URLSource",
    "validate_request",
]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CacheControl(_Closed):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None
    # Anthropic's prompt-caching-scope beta (Claude Code sends "global" with it):
    # Anthropic's to check, sent on as it came; the other providers' caches ignore it.
    scope: str | None = Field(default=None, min_length=1, max_length=64)


class TextBlock(_Closed):
    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = None
    # Answers carry it (null); clients send answers' blocks back as they are.
    citations: list[dict[str, Any]] | None = None


class Base64Source(_Closed):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str = Field(min_length=1)


class URLSource(_Closed):
    type: Literal["url"]
    url: str = Field(pattern=r"^https?://")


class ImageTransformations(_Closed):
    # Past the model's largest image size: Anthropic scales it down (the default),
    # or refuses it naming the sizes.
    oversized_image: Literal["downsize", "error"] | None = None


class ImageBlock(_Closed):
    type: Literal["image"]
    source: Annotated[Base64Source | URLSource, Field(discriminator="type")]
    cache_control: CacheControl | None = None
    # What Anthropic does to the image before the model sees it: an Anthropic
    # deployment is sent it, other upstreams size images their own way.
    transformations: ImageTransformations | None = None


class PDFSource(_Closed):
    type: Literal["base64"]
    media_type: Literal["application/pdf"]
    data: str = Field(min_length=1)


class PlainTextSource(_Closed):
    type: Literal["text"]
    media_type: Literal["text/plain"]
    data: str


class Citations(_Closed):
    enabled: bool


class DocumentBlock(_Closed):
    """A PDF or plain-text document. ``citations`` (answers that cite its
    passages) has no counterpart in other upstreams' answers: it can be
    turned off, not on; ``context`` is read as text before the document."""

    type: Literal["document"]
    source: Annotated[PDFSource | PlainTextSource, Field(discriminator="type")]
    title: str | None = Field(default=None, max_length=500)
    context: str | None = None
    citations: Citations | None = None
    cache_control: CacheControl | None = None

    @field_validator("citations")
    @classmethod
    def _no_citations(cls, value: Citations | None) -> Citations | None:
        return _citations_off(value, "a document's passages")


class SearchResultBlock(_Closed):
    """A search result (answers grounded in a retrieval's results), in a user
    turn or a tool's result: its text, where it came from, its title. Every
    upstream reads it as text; ``citations`` (an answer citing it) is turned
    off only, as a document's."""

    type: Literal["search_result"]
    source: str = Field(min_length=1)
    title: str
    content: list[TextBlock] = Field(min_length=1)
    citations: Citations | None = None
    cache_control: CacheControl | None = None

    @field_validator("citations")
    @classmethod
    def _no_citations(cls, value: Citations | None) -> Citations | None:
        return _citations_off(value, "search results")


def _citations_off(value: Citations | None, cited: str) -> Citations | None:
    if value is not None and value.enabled:
        raise PydanticCustomError(
            "unsupported_citations",
            f"citations cannot be turned on through this gateway: only Anthropic "
            f"answers cite {cited}",
            {},
        )
    return value


class ToolUseBlock(_Closed):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]
    cache_control: CacheControl | None = None
    # Answers carry them; clients send answers' blocks back as they are. Who
    # called the tool (programmatic tool calling) and its toolset mean nothing
    # to a translated turn, so they are read and left out.
    caller: dict[str, Any] | None = None
    toolset_name: str | None = None


class ToolReferenceBlock(_Closed):
    """In a tool's result: a deferred tool (``defer_loading``) it loads for the
    model, by name (Anthropic's tool search; Claude Code's ToolSearch)."""

    type: Literal["tool_reference"]
    tool_name: str = Field(min_length=1, max_length=128)
    cache_control: CacheControl | None = None


_ResultPart = Annotated[
    TextBlock | ImageBlock | DocumentBlock | SearchResultBlock | ToolReferenceBlock,
    Field(discriminator="type"),
]


class ToolResultBlock(_Closed):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[_ResultPart] | None = None
    is_error: bool | None = None
    cache_control: CacheControl | None = None
    toolset_name: str | None = None  # as on its tool_use: read and left out


class ThinkingBlock(_Closed):
    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingBlock(_Closed):
    type: Literal["redacted_thinking"]
    data: str


# Anthropic's server-side blocks: its tool calls (``server_tool_use``,
# ``mcp_tool_use``), every ``..._tool_result`` and a ``container_upload``.
SERVER_BLOCK_TYPES = r"^(server_tool_use|mcp_tool_use|container_upload|[a-z_]+_tool_result)$"


class ServerBlock(BaseModel):
    """A block of Anthropic's server tools in an answer sent back (a
    ``server_tool_use`` call, a ``web_search_tool_result`` ...): its content
    is Anthropic's to read, so it is kept as it came, for Anthropic upstreams
    (a paused turn is continued by sending it back)."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: str = Field(pattern=SERVER_BLOCK_TYPES)


_BLOCK_TAGS = frozenset(
    (
        "text",
        "image",
        "document",
        "search_result",
        "tool_use",
        "tool_result",
        "thinking",
        "redacted_thinking",
    )
)


def _block_kind(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if kind in _BLOCK_TAGS:
        return str(kind)
    return "server" if isinstance(kind, str) else None


Block = Annotated[
    Annotated[TextBlock, Tag("text")]
    | Annotated[ImageBlock, Tag("image")]
    | Annotated[DocumentBlock, Tag("document")]
    | Annotated[SearchResultBlock, Tag("search_result")]
    | Annotated[ToolUseBlock, Tag("tool_use")]
    | Annotated[ToolResultBlock, Tag("tool_result")]
    | Annotated[ThinkingBlock, Tag("thinking")]
    | Annotated[RedactedThinkingBlock, Tag("redacted_thinking")]
    | Annotated[ServerBlock, Tag("server")],
    Discriminator(_block_kind),
]


class Message(_Closed):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class Tool(_Closed):
    """A client tool: the caller runs it, any upstream can call it."""

    type: Literal["custom"] | None = None
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    input_schema: dict[str, Any]
    cache_control: CacheControl | None = None
    strict: bool | None = None
    # Anthropic's own (``chat_markers.TOOL_HINTS``): for Anthropic upstreams alone.
    input_examples: list[dict[str, Any]] | None = None
    defer_loading: bool | None = None
    eager_input_streaming: bool | None = None
    allowed_callers: list[str] | None = None


class AnthropicTool(BaseModel):
    """One of Anthropic's own tool types, versioned by date: a server tool it
    runs itself (``web_search_20250305``, ``web_fetch_20250910``,
    ``code_execution_...``) or one of its schema-less client tools
    (``bash_20250124``, ``text_editor_...``). Kept as sent (their fields are
    Anthropic's to check) for Anthropic upstreams; for a model with none, the
    pipeline offers the client tools it knows the schemas of as functions and
    runs a web search itself (ADR 0029, 0030), and refuses the rest."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: str = Field(pattern=r"^[a-z][a-z0-9_]*_\d{8}$")
    name: str = Field(min_length=1, max_length=128)
    cache_control: CacheControl | None = None


def _tool_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "client" if kind in (None, "custom") else "anthropic"


AnyTool = Annotated[
    Annotated[Tool, Tag("client")] | Annotated[AnthropicTool, Tag("anthropic")],
    Discriminator(_tool_kind),
]


class ToolChoiceAuto(_Closed):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(_Closed):
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(_Closed):
    type: Literal["tool"]
    name: str = Field(min_length=1)
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(_Closed):
    type: Literal["none"]


ToolChoice = Annotated[
    ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone, Field(discriminator="type")
]


class Thinking(_Closed):
    """``enabled`` with a budget, ``disabled``, or ``adaptive`` (the model decides)."""

    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(default=None, ge=1024)
    display: Literal["summarized", "omitted"] | None = None

    @model_validator(mode="after")
    def _budgeted(self) -> Thinking:
        if self.type == "enabled" and self.budget_tokens is None:
            raise PydanticCustomError(
                "missing_budget", "`budget_tokens` is required when thinking is enabled", {}
            )
        return self


class Metadata(_Closed):
    user_id: str | None = None


class OutputFormat(_Closed):
    """Structured output: the answer is JSON of this schema."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    type: Literal["json_schema"]
    # ``schema`` would shadow a BaseModel attribute.
    json_schema: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Closed):
    """How much effort the answer gets, and its format."""

    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: OutputFormat | None = None


class _Edit(BaseModel):
    # Open: Anthropic adds edit kinds and fields, and Claude Code sends them as
    # it learns them; what the gateway itself reads is typed below.
    model_config = ConfigDict(extra="allow", strict=True)


class _Amount(_Closed):
    type: Literal["input_tokens", "tool_uses"]
    value: int = Field(ge=0)


class _ThinkingTurns(_Closed):
    type: Literal["thinking_turns"]
    value: int = Field(ge=0)


class ClearToolUses(_Edit):
    type: Literal["clear_tool_uses_20250919"]
    trigger: _Amount | None = None
    keep: _Amount | None = None
    clear_at_least: _Amount | None = None
    exclude_tools: list[str] | None = None
    clear_tool_inputs: bool | None = None


class ClearThinking(_Edit):
    type: Literal["clear_thinking_20251015"]
    keep: Literal["all"] | _ThinkingTurns = "all"


class OtherEdit(_Edit):
    type: str = Field(min_length=1)


def _edit_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in ("clear_tool_uses_20250919", "clear_thinking_20251015") else "other"


class ContextManagement(_Closed):
    """Anthropic's context editing (Claude Code sends it): an Anthropic
    deployment applies it, the gateway applies the edits it knows for any
    other (``pipeline/context_edits.py``)."""

    edits: list[
        Annotated[
            Annotated[ClearToolUses, Tag("clear_tool_uses_20250919")]
            | Annotated[ClearThinking, Tag("clear_thinking_20251015")]
            | Annotated[OtherEdit, Tag("other")],
            Discriminator(_edit_kind),
        ]
    ] = Field(default_factory=list, max_length=16)


class CountTokensRequest(_Closed):
    """``POST /v1/messages/count_tokens``: the prompt part of a request."""

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[AnyTool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None
    context_management: ContextManagement | None = None


class Diagnostics(_Closed):
    previous_message_id: str | None = None


class MessagesRequest(CountTokensRequest):
    """``POST /v1/messages``."""

    max_tokens: int = Field(ge=1)
    # Hints for Anthropic's own serving, with no counterpart in the chat shape:
    # kept for Anthropic upstreams (``chat_markers.NATIVE_HINTS``), left out for others.
    cache_control: CacheControl | None = None  # mark the last cacheable block
    speed: Literal["standard", "fast"] | None = None
    inference_geo: str | None = None
    diagnostics: Diagnostics | None = None
    metadata: Metadata | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    # Which capacity Anthropic serves from; the gateway's router decides here.
    service_tier: Literal["auto", "standard_only"] | None = None


M = TypeVar("M", bound=BaseModel)


def validate_request(schema: type[M], body: dict[str, Any]) -> M:
    """``body`` as ``schema``, or a 400 naming the offending field."""
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        # A union reports one error per member; the deepest is the member
        # the body meant (a list of blocks, not a string).
        error = max(exc.errors(include_url=False), key=lambda e: len(e["loc"]))
        missing = error["type"] == "missing"
        param = _param(error["loc"], body, missing)
        if missing:
            message = f"{param}: Field required"
        elif param:
            message = f"{param}: {error['msg']}"
        else:
            message = str(error["msg"])
        raise InvalidRequest(message, param=param or None) from None


def _param(loc: tuple[int | str, ...], body: Any, missing: bool) -> str:
    """``messages[0].content[1].source`` from pydantic's location, walking
    the body to skip what pydantic adds: union member names
    (``list[tagged-union[...]]``, ``str``) and block tags (``text``)."""
    out, node = "", body
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        last = i == len(loc) - 1
        if isinstance(node, dict) and (part in node or (last and missing)):
            if part == node.get("type") and not last:
                continue  # the tag of a tagged union, followed by the field
            out += f".{part}" if out else part
            node = node.get(part)
        # else: a union member's name, not a field
    return out
