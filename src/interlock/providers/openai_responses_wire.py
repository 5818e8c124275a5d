"""A chat request as OpenAI's Responses API takes it (``POST /responses``),
for deployments with ``api: responses``; no I/O.

OpenAI serves some models on the Responses API alone (gpt-5-codex, o3-pro,
codex-mini ...), and its chat completions answer a 404 for them. The
pipeline carries chat's shape, so the adapter writes the chat body the
stages left (redactions included) as a Responses request, and reads the
answer back as chat (``openai_responses_answer.py``, ``_stream.py``).

The two APIs say nearly the same things: messages become input items
(assistant tool calls ``function_call`` / ``custom_tool_call`` items, tool
messages their outputs), tools and ``tool_choice`` lose chat's nesting,
``response_format`` and ``verbosity`` are ``text``, ``reasoning_effort`` is
``reasoning.effort`` (and the Responses edge's summary wish, a marker,
``reasoning.summary``), ``max_(completion_)tokens`` is ``max_output_tokens``,
``logprobs`` an ``include``, ``web_search_options`` a ``web_search`` tool.
What the Responses API has no word for (``n`` above 1, ``stop``, ``seed``,
penalties, ``logit_bias``, audio, predictions) is a 400 naming it, unless
the deployment drops it (``drop_params``). ``store`` is false unless the
client asked: a chat completion is not stored upstream by default.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from interlock.chat_markers import (
    BODY_MARKERS,
    HOSTED_WEB_SEARCH,
    LEGACY_COMPLETION,
    OFFLINE,
    REASONING_SUMMARY,
    cached_search,
    is_openai_reasoning,
)
from interlock.errors import InvalidRequest
from interlock.providers.base import JSONDict
from interlock.providers.openai_request import checked_params, tool_result_text
from interlock.providers.prompt_cache import BREAKPOINT

__all__ = ["responses_body"]

SUPPORTED = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "logprobs",
        "top_logprobs",
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
# Chat's fields said another way here, or meaning nothing upstream: never
# forwarded as they are. Everything else the client sent (``user``,
# ``metadata``, ``service_tier``, ``prompt_cache_key`` ...) has the same
# name in both APIs and is.
_TRANSLATED = SUPPORTED | {
    "model",
    "messages",
    "stream",
    "stream_options",
    "store",
    "verbosity",
    "n",
    "suffix",
    LEGACY_COMPLETION,
    *BODY_MARKERS,
}
_LOGPROBS = "message.output_text.logprobs"
# A reasoning model's reasoning, sealed, in each reasoning item: nothing is
# stored upstream (``store``), so the next turn must carry it back.
_REASONING = "reasoning.encrypted_content"
# The pages a search read, which the answer cites (``web_search_call`` items).
_SOURCES = "web_search_call.action.sources"


def responses_body(
    chat: JSONDict, model: str, drop: Collection[str], *, searches: bool = False
) -> JSONDict:
    """The ``/responses`` request saying what ``chat`` says. ``searches``:
    whether the upstream runs the Responses edge's hosted web search (the
    ``HOSTED_WEB_SEARCH`` marker); otherwise the search is left out, as
    every upstream but Anthropic's leaves it."""
    chat = checked_params(chat, "responses-API", SUPPORTED, drop)
    body: JSONDict = {k: v for k, v in chat.items() if k not in _TRANSLATED}
    body["model"] = model
    body["input"] = _input(chat.get("messages"))
    body["store"] = bool(chat.get("store"))
    limit = chat.get("max_completion_tokens") or chat.get("max_tokens")
    if limit is not None:
        body["max_output_tokens"] = limit
    for name in ("temperature", "top_p", "parallel_tool_calls"):
        if chat.get(name) is not None:
            body[name] = chat[name]
    body["include"] = [_REASONING]
    if chat.get("logprobs"):
        body["include"].append(_LOGPROBS)
        if chat.get("top_logprobs"):
            body["top_logprobs"] = chat["top_logprobs"]
    reasoning = {"effort": chat.get("reasoning_effort"), "summary": chat.get(REASONING_SUMMARY)}
    if any(reasoning.values()):
        body["reasoning"] = {k: v for k, v in reasoning.items() if v is not None}
    text = _text(chat)
    if text:
        body["text"] = text
    tools = _tools(chat)
    wish = chat.get(HOSTED_WEB_SEARCH)
    if searches and isinstance(wish, dict):
        tools.append(_hosted_search(wish))
    if tools:
        body["tools"] = tools
    if any(tool["type"] == "web_search" for tool in tools):
        body["include"].append(_SOURCES)
    choice = _tool_choice(chat)
    if choice is not None:
        body["tool_choice"] = choice
    return body


# -- messages -----------------------------------------------------------------


def _input(messages: Any) -> list[JSONDict]:
    if not isinstance(messages, list):
        raise InvalidRequest("`messages` must be a list.", param="messages")
    items: list[JSONDict] = []
    custom_calls: set[str] = set()  # their outputs are custom_tool_call_output items
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest("A message must be an object.", param=param)
        role = message.get("role")
        if role in ("system", "developer", "user"):
            content = _content(message.get("content"), param)
            items.append({"type": "message", "role": role, "content": content})
        elif role == "assistant":
            items += _assistant(message, param, custom_calls)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise InvalidRequest("A `tool` message needs its `tool_call_id`.", param=param)
            output = tool_result_text(message.get("content"), param)
            kind = "custom_tool_call_output" if call_id in custom_calls else "function_call_output"
            items.append({"type": kind, "call_id": call_id, "output": output})
        else:
            raise InvalidRequest(
                f"`{role}` messages are not supported by responses-API deployments.",
                param=f"{param}.role",
            )
    return items


def _content(content: Any, param: str) -> str | list[JSONDict]:
    """A system, developer or user message's content as input parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest("A message's content must be a string or parts.", param=param)
    parts = []
    for j, part in enumerate(content):
        where = f"{param}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"type": "input_text", "text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url")
            image = image if isinstance(image, dict) else {"url": image}
            parts.append(
                {
                    "type": "input_image",
                    "image_url": image.get("url"),
                    "detail": image.get("detail") or "auto",
                }
            )
        elif kind == "file":
            document = part.get("file")
            if not isinstance(document, dict):
                raise InvalidRequest("A file part needs its `file`.", param=where)
            parts.append({"type": "input_file", **document})
        else:
            raise InvalidRequest(
                f"`{kind}` content parts are not supported by responses-API deployments.",
                param=f"{where}.type",
            )
        if isinstance(part.get(BREAKPOINT), dict):  # the Responses API reads it alike
            parts[-1][BREAKPOINT] = part[BREAKPOINT]
    return parts


def _assistant(message: JSONDict, param: str, custom_calls: set[str]) -> list[JSONDict]:
    items = _reasoning(message.get("thinking_blocks"))
    said = _said(message.get("content"), param)
    if message.get("refusal"):
        said += str(message["refusal"])
    if said:
        items.append({"type": "message", "role": "assistant", "content": said})
    for j, call in enumerate(message.get("tool_calls") or ()):
        where = f"{param}.tool_calls[{j}]"
        if not isinstance(call, dict) or not isinstance(call.get("id"), str):
            raise InvalidRequest("A tool call needs its `id`.", param=where)
        if call.get("type") == "custom":
            custom = call.get("custom") or {}
            custom_calls.add(call["id"])
            items.append(
                {
                    "type": "custom_tool_call",
                    "call_id": call["id"],
                    "name": custom.get("name"),
                    "input": custom.get("input") or "",
                }
            )
            continue
        function = call.get("function") or {}
        items.append(
            {
                "type": "function_call",
                "call_id": call["id"],
                "name": function.get("name"),
                "arguments": function.get("arguments") or "",
            }
        )
    return items


def _reasoning(blocks: Any) -> list[JSONDict]:
    """The turn's reasoning items, as this kind of upstream wrote them
    (``OPENAI_REASONING``), each before the items that followed it (the API
    refuses one without them); another vendor's signed thinking is left out."""
    items = []
    for block in blocks if isinstance(blocks, list) else ():
        if is_openai_reasoning(block):
            sealed = block.get("encrypted_content")
            if isinstance(sealed, str) and sealed:
                summary = block.get("summary")
                item = {
                    "type": "reasoning",
                    "id": block.get("id"),
                    "encrypted_content": sealed,
                    "summary": summary if isinstance(summary, list) else [],
                }
                items.append({k: v for k, v in item.items() if v is not None})
    return items


def _said(content: Any, param: str) -> str:
    """An assistant turn's text: the Responses API takes it as one string."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise InvalidRequest("A message's content must be a string or parts.", param=param)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "refusal":
            texts.append(str(part.get("refusal", "")))
        else:
            raise InvalidRequest(
                "An assistant message's content must be text.", param=f"{param}.content[{j}]"
            )
    return "".join(texts)


# -- tools --------------------------------------------------------------------


def _tools(chat: JSONDict) -> list[JSONDict]:
    tools: list[JSONDict] = []
    for i, tool in enumerate(chat.get("tools") or ()):
        param = f"tools[{i}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function":
            tools.append(_function(tool.get("function"), param))
        elif kind == "custom":
            custom = tool.get("custom")
            if not isinstance(custom, dict) or not custom.get("name"):
                raise InvalidRequest("A custom tool needs its `name`.", param=f"{param}.custom")
            tools.append(_custom(custom))
        else:
            raise InvalidRequest(
                f"`{kind}` tools are not supported by responses-API deployments.",
                param=f"{param}.type",
            )
    for i, spec in enumerate(chat.get("functions") or ()):
        tools.append(_function(spec, f"functions[{i}]"))
    search = chat.get("web_search_options")
    if isinstance(search, dict):
        tools.append(_web_search(search))
    return tools


def _function(spec: Any, param: str) -> JSONDict:
    if not isinstance(spec, dict) or not spec.get("name"):
        raise InvalidRequest("A function tool needs its `name`.", param=param)
    return {"type": "function", **spec}


def _custom(spec: JSONDict) -> JSONDict:
    tool = {"type": "custom", **spec}
    grammar = spec.get("format")
    # Chat nests a grammar's definition and syntax; this API does not.
    if isinstance(grammar, dict) and isinstance(grammar.get("grammar"), dict):
        tool["format"] = {"type": "grammar", **grammar["grammar"]}
    return tool


def _web_search(options: JSONDict) -> JSONDict:
    tool: JSONDict = {"type": "web_search"}
    if options.get("search_context_size"):
        tool["search_context_size"] = options["search_context_size"]
    location = options.get("user_location")
    if isinstance(location, dict) and isinstance(location.get("approximate"), dict):
        tool["user_location"] = {"type": "approximate", **location["approximate"]}
    return tool


def _hosted_search(wish: JSONDict) -> JSONDict:
    """The hosted ``web_search`` tool again, from the marker's wish (as
    Anthropic names its parts: ``allowed_domains``, ``user_location``)."""
    tool: JSONDict = {"type": "web_search"}
    if cached_search(wish):
        tool[OFFLINE] = False  # OpenAI answers from its cache
    if wish.get("allowed_domains"):
        tool["filters"] = {"allowed_domains": list(wish["allowed_domains"])}
    if isinstance(wish.get("user_location"), dict):
        tool["user_location"] = wish["user_location"]
    return tool


def _tool_choice(chat: JSONDict) -> Any:
    choice = chat.get("tool_choice")
    if choice is None:
        choice = chat.get("function_call")  # the legacy functions' own
        if isinstance(choice, dict):
            return {"type": "function", "name": choice.get("name")}
        return choice
    if not isinstance(choice, dict):
        return choice  # auto, none, required
    kind = choice.get("type")
    if kind in ("function", "custom"):
        named = choice.get(kind)
        return {"type": kind, "name": named.get("name") if isinstance(named, dict) else None}
    if kind == "allowed_tools":
        allowed = choice.get("allowed_tools") or {}
        return {
            "type": "allowed_tools",
            "mode": allowed.get("mode", "auto"),
            "tools": [_tool_ref(tool) for tool in allowed.get("tools") or ()],
        }
    raise InvalidRequest(
        f"A `{kind}` tool_choice is not supported by responses-API deployments.",
        param="tool_choice",
    )


def _tool_ref(tool: Any) -> Any:
    """A tool named in ``allowed_tools``: chat nests the name, this API does not."""
    if isinstance(tool, dict) and tool.get("type") in ("function", "custom"):
        named = tool.get(tool["type"])
        if isinstance(named, dict):
            return {"type": tool["type"], "name": named.get("name")}
    return tool


# -- text ---------------------------------------------------------------------


def _text(chat: JSONDict) -> JSONDict:
    text: JSONDict = {}
    wanted = chat.get("response_format")
    if isinstance(wanted, dict):
        kind = wanted.get("type")
        if kind == "json_schema":
            schema = wanted.get("json_schema") or {}
            text["format"] = {"type": "json_schema", **schema}
        elif kind in ("json_object", "text"):
            text["format"] = {"type": kind}
    if chat.get("verbosity") is not None:
        text["verbosity"] = chat["verbosity"]
    return text
