"""A chat completion as a Responses API ``Response`` object.

``response_shell`` is the Response before any output (what the request set,
echoed back, as OpenAI does); ``finished`` completes it with the output
items, the status and the usage. One assistant message becomes, in order:

- a ``reasoning`` item when the model reasoned: its ``reasoning_content`` as
  the summary text, and signed thinking blocks (Anthropic's) as the opaque
  ``encrypted_content`` that carries them into the next turn;
- a ``message`` item with an ``output_text`` part (and a ``refusal`` part if
  the model refused), unless the turn is only tool calls;
- a ``function_call`` item per tool call (``call_id`` is the chat call's id),
  a ``custom_tool_call`` item for a call to a custom (freeform) tool, or
  a built-in tool's item (``shell_call`` ...) for a call to its function.

``finish_reason`` ``length`` makes the response ``incomplete`` with
``incomplete_details.reason`` ``max_output_tokens`` (``content_filter`` the
same, with that reason). ``output_text`` is left to the SDKs, which add it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from interlock.chat_markers import CONTENT_BLOCKS, cached_prompt_tokens, reasoning_text
from interlock.dialects.responses.builtin_tools import builtin_call, id_prefix, offered
from interlock.dialects.responses.namespaces import namespaced
from interlock.dialects.responses.request import ITEM_ID_PREFIXES, encode_thinking
from interlock.dialects.responses.schemas import ResponsesRequest
from interlock.dialects.responses.web_search import searched_turn
from interlock.ids import random_hex

__all__ = [
    "JSONDict",
    "as_builtin",
    "custom_tool_call_item",
    "finished",
    "fresh_item_id",
    "function_call_item",
    "item_id",
    "item_source",
    "message_item",
    "namespace_call",
    "new_id",
    "output_items",
    "output_text",
    "reasoning_item",
    "response_shell",
    "status_of",
    "to_response",
    "token_logprobs",
    "usage_of",
]

JSONDict = dict[str, Any]

_CALLS = frozenset({"function_call", "custom_tool_call"})
_HEX = re.compile(r"[0-9a-f]+")
# Chat finish reasons that cut the answer short -> incomplete_details.reason.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_id(prefix: str) -> str:
    """``resp_``, ``msg_``, ``fc_``, ``rs_`` ids as OpenAI writes them: 48
    hex digits, the first 8 the time in seconds, so stored responses go in
    near the end of the id index; the rest random, not secret, as a stored
    response is found by its id and the key that made it."""
    return f"{prefix}_{int(time.time()):08x}{random_hex(40)}"


def item_id(prefix: str, response_id: str, index: int) -> str:
    """The id of the output item at ``index`` of Response ``response_id``:
    that Response's digits and the index, so an ``item_reference`` to it is
    one lookup of the stored Response (``item_source``). 50 hex digits, as
    OpenAI's item ids have; past 256 items, an id of its own."""
    if index > 0xFF:
        return new_id(prefix)
    return f"{prefix}_{response_id[5:]}{index:02x}"


def item_source(found_id: str) -> tuple[str, int] | None:
    """The Response (its id) and the output index an item id names, where it
    is one ``item_id`` makes."""
    _, _, digits = found_id.partition("_")
    if len(digits) != 50 or not _HEX.fullmatch(digits):
        return None
    return f"resp_{digits[:48]}", int(digits[48:], 16)


def fresh_item_id(item: JSONDict) -> str:
    """A new id for a stored item, with its type's prefix (``msg_``, ``fc_``, ...)."""
    return new_id(ITEM_ID_PREFIXES.get(item.get("type", ""), "item"))


def response_shell(
    request: ResponsesRequest,
    response_id: str,
    created_at: int,
    done: list[JSONDict] | None = None,
) -> JSONDict:
    """The Response before the model's output: status ``in_progress``, the
    request's settings echoed; ``done``: output items the gateway made
    before the model answers (a compaction), which the answer's follow,
    each given its id in this Response (``item_id``)."""
    text: JSONDict = {"format": {"type": "text"}}
    if request.text is not None:
        if request.text.format is not None:
            text["format"] = request.text.format.model_dump(by_alias=True, exclude_none=True)
        if request.text.verbosity is not None:
            text["verbosity"] = request.text.verbosity
    choice = request.tool_choice
    reasoning = request.reasoning
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": request.background is True,
        "conversation": None if request.conversation is None else {"id": request.conversation_id},
        "error": None,
        "incomplete_details": None,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "metadata": request.metadata or {},
        "model": request.model,
        "output": [
            {**item, "id": item_id(item["id"].partition("_")[0], response_id, index)}
            for index, item in enumerate(done)
        ]
        if done
        else [],
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "previous_response_id": request.previous_response_id,
        "prompt_cache_key": request.prompt_cache_key,
        "prompt_cache_retention": request.prompt_cache_retention,
        "reasoning": {
            "effort": reasoning.effort if reasoning else None,
            "summary": reasoning.summary if reasoning else None,
        },
        "safety_identifier": request.safety_identifier,
        "service_tier": request.service_tier,  # the tier that served it, once known
        "store": request.store is not False,
        "temperature": request.temperature,
        "text": text,
        "tool_choice": "auto"
        if choice is None
        else choice
        if isinstance(choice, str)
        else choice.model_dump(exclude_none=True),
        "tools": [tool.model_dump(exclude_none=True) for tool in request.tools or ()],
        "top_logprobs": request.top_logprobs,
        "top_p": request.top_p,
        "truncation": "disabled",
        "usage": None,
        "user": request.user,
    }


def to_response(shell: JSONDict, answer: JSONDict) -> JSONDict:
    """The finished Response for a chat completion."""
    choices = answer.get("choices") or [{}]
    choice = choices[0]
    status, _ = status_of(choice.get("finish_reason"))
    message = choice.get("message") or {}
    output = output_items(message, status, token_logprobs(choice))
    if message.get(CONTENT_BLOCKS):  # an Anthropic upstream ran a web search (``web_search.py``)
        output = _with_searches(output, message, status)
    tools = shell.get("tools") or ()
    names = namespaced(tools)
    if names:
        output = [namespace_call(item, names) for item in output]
    builtins = offered(tools)
    if builtins:
        output = [as_builtin(item, builtins) for item in output]
    response_id = shell["id"]
    for index, item in enumerate(output, len(shell["output"])):
        item["id"] = item_id(item["id"].partition("_")[0], response_id, index)
    return finished(
        shell,
        output,
        choice.get("finish_reason"),
        answer.get("usage"),
        answer.get("model"),
        answer.get("service_tier"),
    )


def _with_searches(output: list[JSONDict], message: JSONDict, status: str) -> list[JSONDict]:
    """The output with the answer's web searches in place: the message split
    around them, as a stream writes it; where the message's text is not the
    blocks' (a guardrail rewrote it), the searches come before it."""
    turn = searched_turn(message[CONTENT_BLOCKS], new_id)
    searches = [part for part in turn if isinstance(part, dict)]
    if not searches:
        return output
    head = [item for item in output if item["type"] == "reasoning"]
    said = [item for item in output if item["type"] == "message"]
    calls = [item for item in output if item["type"] not in ("reasoning", "message")]
    text = "".join(part for part in turn if isinstance(part, str))
    if len(said) != 1 or text != (message.get("content") or ""):
        return [*head, *searches, *said, *calls]
    body: list[JSONDict] = []
    at = 0  # where each run of text starts in the message's content
    for part in turn:
        if isinstance(part, dict):
            body.append(part)
            continue
        annotations = cited(message.get("annotations"), at, at + len(part))
        body.append(message_item(new_id("msg"), [output_text(part, None, annotations)], status))
        at += len(part)
    return [*head, *body, *calls]


def finished(
    shell: JSONDict,
    output: list[JSONDict],
    finish_reason: str | None,
    usage: JSONDict | None,
    model: str | None = None,
    service_tier: Any = None,
) -> JSONDict:
    """The Response once answered; ``model`` and ``service_tier``: those the
    upstream reported (OpenAI names the tier that served the request, such as
    ``default`` for ``auto``), where it did."""
    status, details = status_of(finish_reason)
    if shell["output"]:  # items made before the model answered (a compaction)
        output = [*shell["output"], *output]
    response = {**shell, "status": status, "output": output, "usage": usage_of(usage)}
    if details is not None:
        response["incomplete_details"] = details
    if model:
        response["model"] = model
    if isinstance(service_tier, str) and service_tier:
        response["service_tier"] = service_tier
    return response


def token_logprobs(choice: JSONDict) -> list[JSONDict] | None:
    """A chat choice's token entries (``logprobs.content``), the shape a
    Responses output text has them in; None where it has none."""
    logprobs = choice.get("logprobs")
    entries = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(entries, list):
        return None
    return [entry for entry in entries if _is_token_logprob(entry)]


def _is_token_logprob(entry: Any) -> bool:
    # What the SDKs need of one: its token and its log probability.
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("token"), str)
        and isinstance(entry.get("logprob"), int | float)
    )


def status_of(finish_reason: str | None) -> tuple[str, JSONDict | None]:
    reason = _INCOMPLETE.get(finish_reason or "")
    if reason is None:
        return "completed", None
    return "incomplete", {"reason": reason}


def output_items(
    message: JSONDict, status: str, logprobs: list[JSONDict] | None = None
) -> list[JSONDict]:
    """One assistant message as output items; ``logprobs``: the chat
    choice's token entries, the same shape in a Responses output text."""
    items: list[JSONDict] = []
    reasoning, blocks = reasoning_text(message), message.get("thinking_blocks")
    if reasoning or blocks:
        items.append(reasoning_item(new_id("rs"), reasoning or "", blocks))
    parts: list[JSONDict] = []
    content = message.get("content")
    if isinstance(content, list):  # text parts, from some servers
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if content:
        annotations = cited(message.get("annotations"), 0, len(content))
        parts.append(output_text(content, logprobs or [], annotations))
    if message.get("refusal"):
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    calls = message.get("tool_calls") or []
    if parts or not calls:
        items.append(message_item(new_id("msg"), parts or [output_text("")], status))
    for call in calls:
        if call.get("type") == "custom":
            custom = call.get("custom") or {}
            items.append(
                custom_tool_call_item(
                    new_id("ctc"),
                    call.get("id") or new_id("call"),
                    custom.get("name", ""),
                    custom.get("input") or "",
                    "completed",
                )
            )
            continue
        function = call.get("function") or {}
        items.append(
            function_call_item(
                new_id("fc"),
                call.get("id") or new_id("call"),
                function.get("name", ""),
                function.get("arguments") or "",
                "completed",
            )
        )
    return items


def namespace_call(item: JSONDict, names: Mapping[str, tuple[str, str]]) -> JSONDict:
    """A call to a namespace's tool under its own name, with its namespace
    (``names``: ``namespaces.namespaced``); any other item as it is."""
    found = names.get(item.get("name", "")) if item.get("type") in _CALLS else None
    if found is None:
        return item
    return {**item, "name": found[1], "namespace": found[0]}


def as_builtin(item: JSONDict, builtins: frozenset[str]) -> JSONDict:
    """A function call to an offered built-in tool as that tool's item
    (``builtin_tools.py``); any other item as it is."""
    name = item.get("name")
    if item.get("type") != "function_call" or name not in builtins:
        return item
    return builtin_call(
        name, new_id(id_prefix(name)), item["call_id"], item["arguments"], item["status"]
    )


def output_text(
    text: str, logprobs: list[JSONDict] | None = None, annotations: list[JSONDict] | None = None
) -> JSONDict:
    return {
        "type": "output_text",
        "text": text,
        "annotations": annotations or [],
        "logprobs": logprobs or [],
    }


def cited(annotations: Any, start: int, end: int) -> list[JSONDict]:
    """Chat's ``url_citation`` annotations (``message.annotations``, spans of
    the whole content) of the text from ``start`` to ``end``, as a Responses
    output text has them: flat, their spans counted from ``start``."""
    out: list[JSONDict] = []
    for annotation in annotations if isinstance(annotations, list) else ():
        found = annotation.get("url_citation") if isinstance(annotation, dict) else None
        if not isinstance(found, dict):
            continue
        first, last = found.get("start_index"), found.get("end_index")
        if not isinstance(first, int) or not isinstance(last, int):
            continue
        if start <= first and last <= end:
            out.append(
                {
                    "type": "url_citation",
                    "start_index": first - start,
                    "end_index": last - start,
                    "url": str(found.get("url") or ""),
                    "title": str(found.get("title") or ""),
                }
            )
    return out


def message_item(item_id: str, content: list[JSONDict], status: str) -> JSONDict:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> JSONDict:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def custom_tool_call_item(
    item_id: str, call_id: str, name: str, text: str, status: str
) -> JSONDict:
    return {
        "id": item_id,
        "type": "custom_tool_call",
        "call_id": call_id,
        "name": name,
        "input": text,
        "status": status,
    }


def reasoning_item(item_id: str, summary: str, blocks: list[JSONDict] | None) -> JSONDict:
    item: JSONDict = {
        "id": item_id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": summary}] if summary else [],
    }
    if blocks:
        item["encrypted_content"] = encode_thinking(blocks)
    return item


def usage_of(usage: JSONDict | None) -> JSONDict | None:
    """Chat usage in the Responses names."""
    if not usage:
        return None
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    prompt_details = usage.get("prompt_tokens_details") or {}
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": cached_prompt_tokens(usage),
            "cache_write_tokens": prompt_details.get("cache_write_tokens") or 0,
        },
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": usage.get("total_tokens") or prompt + completion,
    }
