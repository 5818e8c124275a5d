"""Gemini request translation, no I/O: an OpenAI chat body to a
``GenerateContentRequest``, and the tool-call ids that carry Gemini's thought
signatures. ``gemini.py`` holds the adapter that does the calls (its
docstring says what is and is not translated); ``gemini_response.py`` the
way back.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from interlock.errors import InvalidRequest
from interlock.providers.base import JSONDict
from interlock.providers.documents import document_of
from interlock.providers.gemini_schema import gemini_schema
from interlock.providers.openai_request import (
    FunctionTool,
    function_tools,
    image_of,
    reasoning_budget,
    response_format,
    tool_calls_of,
    tool_choice,
    tool_names_by_id,
    tool_result_text,
)

__all__ = [
    "SIGNATURE_SEPARATOR",
    "chat_request",
    "embedding_texts",
    "split_call_id",
    "with_signature",
]

_SYSTEM_ROLES = frozenset({"system", "developer"})
_SAMPLING = {
    "temperature": "temperature",
    "top_p": "topP",
    "n": "candidateCount",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}

# -- thought signatures in tool-call ids -------------------------------------
#
# Gemini 2.5+ puts an opaque ``thoughtSignature`` on a functionCall part and
# Gemini 3 refuses the next turn (400) unless that part comes back with it.
# OpenAI's history has no place for it except the call's id, which every
# client echoes verbatim in the assistant message and in the tool result, so
# the id carries it: ``<call id>.ts.<signature>``. The signature is base64
# (standard or URL-safe), whose alphabets have no ``.``, so the last
# ``.ts.`` always starts it.
SIGNATURE_SEPARATOR = ".ts."
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+=*")


def with_signature(call_id: str, signature: Any) -> str:
    """The OpenAI tool-call id for a call Gemini signed (``call_id`` when not)."""
    if isinstance(signature, str) and _BASE64.fullmatch(signature):
        return f"{call_id}{SIGNATURE_SEPARATOR}{signature}"
    return call_id


def split_call_id(call_id: str) -> tuple[str, str | None]:
    """``(call id, thought signature or None)`` of an id ``with_signature`` made."""
    head, separator, signature = call_id.rpartition(SIGNATURE_SEPARATOR)
    if separator and head and _BASE64.fullmatch(signature):
        return head, signature
    return call_id, None


# -- the request -------------------------------------------------------------


def chat_request(body: JSONDict) -> JSONDict:
    """The ``GenerateContentRequest`` for an OpenAI chat request body whose
    parameters ``checked_params`` has passed and whose remote images are
    already inlined."""
    system, contents = _contents(body.get("messages") or [])
    if not contents:
        raise InvalidRequest(
            "Gemini needs at least one user or assistant message.", param="messages"
        )
    request: JSONDict = {"contents": contents}
    if system:
        request["systemInstruction"] = {"parts": system}
    tools = function_tools(body)
    choice = tool_choice(body)  # checked even without tools: it may name one
    if tools:
        where = "tools[{}].function.parameters" if "tools" in body else "functions[{}].parameters"
        declarations = [_declaration(t, where.format(i)) for i, t in enumerate(tools)]
        request["tools"] = [{"functionDeclarations": declarations}]
        if body.get("tool_choice", body.get("function_call")) is not None:
            config: JSONDict = {"mode": _MODES[choice.kind]}
            if choice.name is not None:
                config["allowedFunctionNames"] = [choice.name]
            request["toolConfig"] = {"functionCallingConfig": config}
    generation = _generation_config(body)
    if generation:
        request["generationConfig"] = generation
    return request


def _declaration(tool: FunctionTool, param: str) -> JSONDict:
    out: JSONDict = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    parameters = gemini_schema(tool.parameters, param)
    # Gemini refuses an OBJECT with no properties; a function without
    # arguments is declared without ``parameters``.
    if parameters.get("properties") or parameters.get("anyOf"):
        out["parameters"] = parameters
    return out


def _contents(messages: list[Any]) -> tuple[list[JSONDict], list[JSONDict]]:
    """``systemInstruction`` parts and the ``contents`` turns; consecutive
    turns of one role are merged, because Gemini wants them to alternate."""
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest("A message must be an object.", param=f"messages[{i}]")
    names = tool_names_by_id(messages)
    system: list[JSONDict] = []
    contents: list[JSONDict] = []
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        role = message.get("role")
        if role in _SYSTEM_ROLES:
            system.extend(_text_parts(message.get("content"), param))
            continue
        if role == "user":
            turn, parts = "user", _user_parts(message.get("content"), param)
        elif role == "assistant":
            turn, parts = "model", _model_parts(message, param)
        elif role in ("tool", "function"):
            turn, parts = "user", [_function_response(message, names, param)]
        else:
            raise InvalidRequest(
                f"`{role}` messages are not supported for Gemini deployments.",
                param=f"{param}.role",
            )
        if contents and contents[-1]["role"] == turn:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": turn, "parts": parts})
    return system, contents


def _content_list(content: Any, param: str) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise InvalidRequest(
            "Message content must be a string or a list of content parts.",
            param=f"{param}.content",
        )
    return content


def _text_parts(content: Any, param: str) -> list[JSONDict]:
    parts = []
    for j, part in enumerate(_content_list(content, param)):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text" or not isinstance(part.get("text"), str):
            raise InvalidRequest(
                f"Only text content parts are accepted here, not `{kind}`.",
                param=f"{param}.content[{j}]",
            )
        parts.append({"text": part["text"]})
    return parts


def _user_parts(content: Any, param: str) -> list[JSONDict]:
    parts = []
    for j, part in enumerate(_content_list(content, param)):
        kind = part.get("type") if isinstance(part, dict) else None
        where = f"{param}.content[{j}]"
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = image_of(part, where)
            if isinstance(image, str):  # the adapter inlines every URL it may fetch first
                raise InvalidRequest(
                    "Gemini deployments take images inline only: send a `data:` URL.",
                    param=f"{where}.image_url.url",
                )
            parts.append({"inlineData": {"mimeType": image.media_type, "data": image.data}})
        elif kind == "file":
            document = document_of(part, where)
            parts.append({"inlineData": {"mimeType": document.media_type, "data": document.data}})
        else:
            raise InvalidRequest(
                f"Gemini deployments accept text, image and file content parts, not `{kind}`.",
                param=where,
            )
    return parts


def _model_parts(message: JSONDict, param: str) -> list[JSONDict]:
    """Text first, then one ``functionCall`` part per tool call, each with
    the thought signature its id carries."""
    calls = tool_calls_of(message, param)
    content = message.get("content")
    if content is None and calls:
        parts = []
    else:
        parts = [p for p in _assistant_text(content, param) if p["text"] or not calls]
    for call_id, name, arguments in calls:
        part: JSONDict = {"functionCall": {"name": name, "args": arguments}}
        _, signature = split_call_id(call_id)
        if signature is not None:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _assistant_text(content: Any, param: str) -> list[JSONDict]:
    # An assistant's ``refusal`` parts are its words too.
    if isinstance(content, list):
        content = [
            {"type": "text", "text": p.get("refusal")}
            if isinstance(p, dict) and p.get("type") == "refusal"
            else p
            for p in content
        ]
    return _text_parts(content, param)


def _function_response(message: JSONDict, names: dict[str, str], param: str) -> JSONDict:
    """A ``tool`` (or legacy ``function``) message as a ``functionResponse``
    part: Gemini keys results by function name, not by call id."""
    if message.get("role") == "function":
        name = message.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("A `function` message needs a `name`.", param=f"{param}.name")
    else:
        call_id = message.get("tool_call_id")
        name = names.get(call_id) if isinstance(call_id, str) else None
        if name is None:
            raise InvalidRequest(
                "`tool_call_id` does not name a tool call of an earlier assistant message.",
                param=f"{param}.tool_call_id",
            )
    text = tool_result_text(message.get("content"), param)
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    response = parsed if isinstance(parsed, dict) else {"result": text}
    return {"functionResponse": {"name": name, "response": response}}


def _generation_config(body: JSONDict) -> JSONDict:
    config: JSONDict = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    for ours, theirs in _SAMPLING.items():
        if body.get(ours) is not None:
            config[theirs] = body[ours]
    wanted = response_format(body)
    if wanted is not None:
        config["responseMimeType"] = "application/json"
        if wanted.schema is not None:
            config["responseSchema"] = gemini_schema(wanted.schema, "response_format")
    budget = reasoning_budget(body)
    if budget is not None:
        # Without includeThoughts Gemini thinks but shows none of it.
        thinking: JSONDict = {"thinkingBudget": budget}
        if budget:
            thinking["includeThoughts"] = True
        config["thinkingConfig"] = thinking
    return config


def embedding_texts(raw: Any) -> list[str]:
    """The ``input`` strings; Gemini embeds text only, so token ids are refused."""
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidRequest(
            "Gemini deployments embed a string or a non-empty list of strings "
            "(token-id arrays are not supported).",
            param="input",
        )
    return texts
