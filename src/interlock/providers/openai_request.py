"""The parts of an OpenAI chat request that translating adapters share, read
and checked once: parameters a provider cannot honour, function tools and
``tool_choice``, tool calls and results in the history, image parts,
``response_format`` and ``reasoning_effort``.

No I/O and no provider knowledge: each adapter (``anthropic_wire``,
``gemini_wire``, ``bedrock_wire``) maps these neutral shapes to its own
wire format. Every refusal is an ``InvalidRequest`` (400) naming the
parameter, in OpenAI's error shape.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson

from interlock.chat_markers import ANTHROPIC_TOOLS, TOOL_HINTS
from interlock.errors import InvalidRequest
from interlock.ids import random_hex
from interlock.providers.base import JSONDict

__all__ = [
    "METADATA_PARAMS",
    "FunctionTool",
    "InlineImage",
    "ResponseFormat",
    "ToolChoice",
    "base64_data_url",
    "checked_params",
    "function_tools",
    "image_of",
    "new_tool_call_id",
    "reasoning_budget",
    "response_format",
    "tool_call_arguments",
    "tool_calls_of",
    "tool_choice",
    "tool_names_by_id",
    "tool_result_text",
]

# Parameters that describe the caller or the call, not the answer: a provider
# without a counterpart ignores them (nothing about the output changes). And
# ``verbosity``, a preference for shorter or longer answers that binds no
# model to anything: Codex sends it with every request, and a 400 for a hint
# would stop it on every upstream but OpenAI's.
METADATA_PARAMS = frozenset(
    {
        "verbosity",
        "model",
        "messages",
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
    }
)
# Every other chat-completions parameter OpenAI documents. Each changes the
# answer, so a provider that cannot honour one refuses it (400) unless the
# deployment lists it in ``drop_params``.
ANSWER_PARAMS = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        "response_format",
        "reasoning_effort",
        "audio",
        "modalities",
        "prediction",
        "web_search_options",
    }
)
# Values that ask for nothing beyond the default, so no provider refuses them.
_NEUTRAL: Mapping[str, Any] = {
    "n": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logprobs": False,
    "top_logprobs": 0,
    "logit_bias": {},
    "parallel_tool_calls": True,
    "modalities": ["text"],
}


def checked_params(
    body: JSONDict, provider: str, supported: Collection[str], drop: Collection[str]
) -> JSONDict:
    """``body`` without the parameters the deployment drops; a 400 naming the
    first parameter the provider cannot honour that it does not drop."""
    dropped: list[str] = []
    for name in ANSWER_PARAMS.intersection(body):
        value = body[name]
        if name in supported or value is None or _NEUTRAL.get(name, ...) == value:
            continue
        if name in drop:
            dropped.append(name)
            continue
        raise InvalidRequest(
            f"`{name}` is not supported by {provider} deployments. An operator can let "
            f"the gateway drop it for this deployment with `drop_params: [{name}]`.",
            param=name,
            code="unsupported_parameter",
        )
    if not dropped:
        return body
    return {k: v for k, v in body.items() if k not in dropped}


# -- tools -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FunctionTool:
    name: str
    description: str | None
    # JSON Schema of the arguments; an object schema with no properties when absent.
    parameters: JSONDict
    strict: bool
    # Anthropic's prompt-caching marker on the tool, passed through where understood.
    cache_control: JSONDict | None
    # The Messages edge's other tool fields for Anthropic upstreams (``TOOL_HINTS``).
    native: JSONDict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolChoice:
    kind: Literal["auto", "none", "required", "function"]
    name: str | None = None


_EMPTY_PARAMETERS: JSONDict = {"type": "object", "properties": {}}


def function_tools(body: JSONDict) -> list[FunctionTool]:
    """``tools`` (or the legacy ``functions``) as function declarations."""
    tools = body.get("tools")
    if tools is None and body.get("functions") is not None:
        return [_function(f, f"functions[{i}]", None) for i, f in enumerate(body["functions"])]
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequest("`tools` must be a list of tools.", param="tools")
    out = []
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else type(tool).__name__
            raise InvalidRequest(
                f"Only `function` tools can be translated for this provider, not `{kind}`.",
                param=f"{param}.type",
            )
        found = _function(tool.get("function"), f"{param}.function", tool.get("cache_control"))
        native = {name: tool[name] for name in TOOL_HINTS if tool.get(name) is not None}
        out.append(replace(found, native=native) if native else found)
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise InvalidRequest("Tool names must be unique.", param="tools")
    return out


def _function(spec: Any, param: str, cache_control: Any) -> FunctionTool:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise InvalidRequest("A function tool needs a `name`.", param=f"{param}.name")
    parameters = spec.get("parameters")
    if parameters is None:
        parameters = _EMPTY_PARAMETERS
    if not isinstance(parameters, dict):
        raise InvalidRequest(
            "`parameters` must be a JSON Schema object.", param=f"{param}.parameters"
        )
    description = spec.get("description")
    cache = cache_control if isinstance(cache_control, dict) else spec.get("cache_control")
    return FunctionTool(
        name=spec["name"],
        description=description if isinstance(description, str) else None,
        parameters=parameters,
        strict=spec.get("strict") is True,
        cache_control=cache if isinstance(cache, dict) else None,
    )


def tool_choice(body: JSONDict) -> ToolChoice:
    """``tool_choice`` (or the legacy ``function_call``); ``auto`` when unset."""
    raw = body.get("tool_choice", body.get("function_call"))
    param = "tool_choice" if "tool_choice" in body else "function_call"
    if raw is None or raw == "auto":
        return ToolChoice("auto")
    if raw in ("none", "required"):
        return ToolChoice(raw)
    if isinstance(raw, dict):
        # {"type": "function", "function": {"name": ...}}, or legacy {"name": ...}
        named = raw.get("function") if raw.get("type") == "function" else raw
        name = named.get("name") if isinstance(named, dict) else None
        if isinstance(name, str) and name:
            if name not in {t.name for t in function_tools(body)} | _anthropic_tool_names(body):
                raise InvalidRequest(
                    f"`{param}` names the function `{name}`, which is not in `tools`.",
                    param=param,
                )
            return ToolChoice("function", name)
    raise InvalidRequest(
        f"`{param}` must be `auto`, `none`, `required` or a named function.", param=param
    )


def _anthropic_tool_names(body: JSONDict) -> set[str]:
    """Names of Anthropic's own tools the Messages edge kept (a choice may name one)."""
    tools = body.get(ANTHROPIC_TOOLS)
    if not isinstance(tools, list):
        return set()
    return {t["name"] for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)}


def new_tool_call_id() -> str:
    """An id for a call the provider gave none (Gemini): OpenAI's ``call_`` form."""
    return f"call_{random_hex(24)}"


def tool_calls_of(message: JSONDict, param: str) -> list[tuple[str, str, JSONDict]]:
    """An assistant message's calls as (id, function name, arguments object)."""
    calls = message.get("tool_calls")
    if calls is None and isinstance(message.get("function_call"), dict):
        legacy = message["function_call"]
        calls = [{"id": f"call_{legacy.get('name')}", "type": "function", "function": legacy}]
    if not calls:
        return []
    if not isinstance(calls, list):
        raise InvalidRequest("`tool_calls` must be a list.", param=f"{param}.tool_calls")
    out = []
    for j, call in enumerate(calls):
        where = f"{param}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        call_id = call.get("id") if isinstance(call, dict) else None
        if not isinstance(name, str) or not isinstance(call_id, str):
            raise InvalidRequest(
                "A tool call needs an `id` and a `function` with a `name`.", param=where
            )
        assert isinstance(function, dict)  # a name was found in it
        arguments = tool_call_arguments(function.get("arguments"), f"{where}.function.arguments")
        out.append((call_id, name, arguments))
    return out


def tool_call_arguments(raw: Any, param: str) -> JSONDict:
    """A call's ``arguments`` (a JSON string in OpenAI's shape) as an object,
    which is what Anthropic, Gemini and Bedrock take."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        parsed = orjson.loads(raw) if isinstance(raw, str | bytes) else None
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidRequest("Tool call `arguments` must be a JSON object.", param=param)
    return parsed


def tool_names_by_id(messages: list[JSONDict]) -> dict[str, str]:
    """Function name per tool-call id in the history: a provider that keys
    results by name (Gemini) learns which call a ``tool`` message answers."""
    names: dict[str, str] = {}
    for i, message in enumerate(messages):
        if isinstance(message, dict) and message.get("role") == "assistant":
            for call_id, name, _ in tool_calls_of(message, f"messages[{i}]"):
                names[call_id] = name
    return names


def tool_result_text(content: Any, param: str) -> str:
    """A ``tool`` message's content as text (a string or text parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise InvalidRequest(
                    "A tool result's content must be text.", param=f"{param}.content[{j}]"
                )
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise InvalidRequest("A tool result's content must be text.", param=f"{param}.content")


# -- images ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InlineImage:
    media_type: str
    # The bytes, base64-encoded (as every provider's inline form takes them).
    data: str

    def raw(self) -> bytes:
        return base64.b64decode(self.data)


# What the providers' inline forms accept between them; others are refused
# here, with one message, instead of by each upstream in its own words.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def image_of(part: JSONDict, param: str) -> InlineImage | str:
    """An ``image_url`` part: the inline image of a ``data:`` URL, or the
    ``http(s):`` URL as a string (the caller decides whether its provider
    takes URLs)."""
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    param = f"{param}.image_url.url"
    if not isinstance(url, str) or not url:
        raise InvalidRequest("An `image_url` part needs a `url`.", param=param)
    if url.startswith(("https://", "http://")):
        return url
    if not url.startswith("data:"):
        raise InvalidRequest("An image URL must be a `data:` URL or an `https:` URL.", param=param)
    media_type, payload = base64_data_url(url, param, "data:image/png;base64,...")
    if media_type not in IMAGE_TYPES:
        raise InvalidRequest(
            f"Image type `{media_type or 'unknown'}` is not supported; send PNG, JPEG, "
            "GIF or WebP.",
            param=param,
        )
    return InlineImage(media_type, payload)


def base64_data_url(url: str, param: str, example: str) -> tuple[str, str]:
    """A ``data:`` URL's media type (lower case) and its base64 payload, or
    a 400 naming ``param`` (``example``: the form to send instead)."""
    header, sep, payload = url.removeprefix("data:").partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64":
        raise InvalidRequest(f"A `data:` URL must be base64-encoded (`{example}`).", param=param)
    try:
        base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("The `data:` URL is not valid base64.", param=param) from None
    return media_type.lower(), payload


# -- structured output ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    kind: Literal["json_object", "json_schema"]
    name: str = "response"
    schema: JSONDict | None = None
    strict: bool = False


def response_format(body: JSONDict) -> ResponseFormat | None:
    """``response_format``; None for unset or ``text``."""
    raw = body.get("response_format")
    kind = raw.get("type") if isinstance(raw, dict) else None
    if raw is None or kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object")
    if kind == "json_schema":
        spec = raw.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "`response_format.json_schema.schema` must be a JSON Schema object.",
                param="response_format.json_schema.schema",
            )
        assert isinstance(spec, dict)
        name = spec.get("name")
        return ResponseFormat(
            "json_schema",
            name if isinstance(name, str) and name else "response",
            schema,
            spec.get("strict") is True,
        )
    raise InvalidRequest(
        "`response_format.type` must be `text`, `json_object` or `json_schema`.",
        param="response_format.type",
    )


# -- reasoning -----------------------------------------------------------------

# Thinking-token budgets for OpenAI's ``reasoning_effort`` levels, for
# providers that take a budget (Anthropic ``budget_tokens``, Gemini
# ``thinkingBudget``). The same ladder LiteLLM documents, so agents moving
# between gateways see the same behaviour.
REASONING_BUDGETS: Mapping[str, int] = {
    "minimal": 1024,
    "low": 1024,
    "medium": 2048,
    "high": 4096,
    # Past high: Codex's and OpenAI's newer efforts, and Anthropic's own top one.
    "xhigh": 8192,
    "max": 16384,
}


def reasoning_budget(body: JSONDict) -> int | None:
    """The thinking budget ``reasoning_effort`` asks for: None when unset,
    0 for ``none`` (thinking off)."""
    effort = body.get("reasoning_effort")
    if effort is None:
        return None
    if effort == "none":
        return 0
    if effort not in REASONING_BUDGETS:
        raise InvalidRequest(
            "`reasoning_effort` must be `none`, `minimal`, `low`, `medium`, `high`, `xhigh` "
            "or `max`.",
            param="reasoning_effort",
        )
    return REASONING_BUDGETS[effort]
