"""A fake OpenAI Responses API on loopback, for a model served by nothing
else (``gpt-5-codex``): it catches an adapter that sends Chat Completions
to the Responses API.

``responses_app(requests)`` serves::

    POST /v1/responses
    POST /v1/chat/completions

The chat route refuses every request with OpenAI's 404 for a Responses-only
model. Each request to either route is appended to ``requests`` as
``{"path", "body", "authorization", "api_key"}`` (``body`` None when it
is not JSON; ``api_key``: Azure's header). ``/openai/v1/responses`` is the
same route, as Azure OpenAI's v1 surface serves it.

It is strict, in OpenAI's error shape ``{"error": {"message", "type":
"invalid_request_error", "param", "code"}}`` (400): a top-level parameter
the API does not take (``messages``, ``max_tokens``, ``stop``, ``n``,
``seed``, ``response_format``, ``reasoning_effort``; ``previous_response_id``
too, for this fake stores nothing); a missing ``model`` or ``input``; a key
an input item, content part, tool, ``tool_choice`` or ``text.format`` does
not have (chat's nested ``{"type": "function", "function": {...}}`` tool is
``Missing required parameter: 'tools[0].name'.``); a wrong type or value;
a content part of the wrong kind for its role (``input_text``,
``input_image``, ``input_file`` from user, system and developer;
``output_text`` and ``refusal`` from the assistant); a
``function_call_output`` (``custom_tool_call_output``) whose ``call_id`` no
earlier ``function_call`` (``custom_tool_call``) of the input has; a
``tool_choice`` naming a tool not in ``tools``, or ``required`` without
tools; ``include`` other than ``reasoning.encrypted_content`` and
``message.output_text.logprobs``; ``stream_options`` without ``stream``; a
reasoning item whose ``encrypted_content`` this fake did not write for that
item's id.

What it answers is decided from the request alone. The user's text is the
last user message's (its string, or its ``input_text`` parts joined by a
space); ``last`` is the last input item (a string input is one user
message).

1. ``last`` a user message, a ``function`` or ``custom`` tool offered and
   ``tool_choice`` not ``none``: tool calls. The tool ``tool_choice`` names
   (``allowed_tools``: its first function or custom tool), else the first
   two function tools when there are two or more and ``parallel_tool_calls``
   is not false, else the first function or custom tool. A function call's
   arguments are ``{"query": <user's text>}``; a custom tool call's input is
   the user's text. Calls are never cut by ``max_output_tokens``.
2. Otherwise one assistant message: "The tool said: <output>." when
   ``last`` is a tool output (a list output: its ``input_text`` parts joined
   by a space), else "You said: <user's text>."; with ``text.format``
   ``json_object`` or ``json_schema``, ``json.dumps({"answer": <that>})``.
3. With ``reasoning`` whose ``effort`` (``medium`` when unset) is not
   ``minimal`` or ``none``, a reasoning item comes first and counts 8 output
   tokens: its summary "Thinking about <first word of the user's text>."
   when ``reasoning.summary`` is set, else empty; ``encrypted_content`` only
   when ``include`` asks for it.

Tokens are whitespace-led words (``re.findall(r"\\s*\\S+", text)``); a
streamed text delta is one token. When visible plus reasoning tokens exceed
``max_output_tokens`` the message keeps what fits (perhaps nothing): status
``incomplete``, ``incomplete_details.reason`` ``max_output_tokens`` (the
reasoning's 8 count in full, even past the limit). With
``include`` ``message.output_text.logprobs``, token ``k`` has
``-0.1 * (k + 1)`` and ``top_logprobs`` alternatives `` altI`` at ``I`` less.
Usage: input tokens are the whitespace-separated words of ``instructions``
and every text of the input; output tokens are visible plus reasoning; no
cached tokens (``cached_tokens`` and ``cache_write_tokens`` 0, both of which
the SDK's ``ResponseUsage`` has).
Ids: ``resp_<d>``, then ``rs_``, ``msg_``, ``fc_`` (with ``call_``) and
``ctc_`` (with ``call_``) followed by ``<d><output index>``, where ``<d>``
is a digest of the request body.

A stream (``stream: true``) is OpenAI's: ``event: <type>`` and ``data:``
lines, ``sequence_number`` from 0, ``response.created``,
``response.in_progress``, each item's ``response.output_item.added``, its
own events (a summary's part, one text delta per token, done and part done;
a message's content part, text deltas, text done and part done; arguments or
custom input in two deltas, then done), ``response.output_item.done``, and
``response.completed`` (``response.incomplete`` when cut short). No
``data: [DONE]``: the Responses API writes none.

Web search: with a ``web_search`` tool offered, no function or custom call
made and "search" in the user's text, the model searches first: a
``web_search_call`` item (``action``: the user's text as the ``query``,
and, where ``include`` asks for ``web_search_call.action.sources``, one
source, ``https://example.com/<first word>``), then the message "Found
it: <user's text>." whose "Found" cites that page (a ``url_citation``).
Streamed, the call's item comes with ``response.web_search_call.in_progress``,
``.searching`` and ``.completed``; the citation with
``response.output_text.annotation.added`` after the text's deltas.

Trigger phrases in the user's text: "fail me" is a 500 ``server_error``
(streamed: ``response.failed`` after ``response.in_progress``); "cut me",
streamed, closes the connection after the second text delta; "refuse me"
makes the message a ``refusal`` part, "I can't help with that." (as a model
refuses a structured output; streamed: ``response.refusal.delta`` per token,
then ``response.refusal.done``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

__all__ = ["RESPONSES_MODEL", "responses_app"]

RESPONSES_MODEL = "gpt-5-codex"
ONLY_RESPONSES = "This model is only supported in v1/responses and not in v1/chat/completions."
SERVER_ERROR = "The server had an error while processing your request."
NOT_JSON = "We could not parse the JSON body of your request."
REASONING_TOKENS = 8
REFUSAL = "I can't help with that."  # the model's words where "refuse me" is asked

Json = dict[str, Any]

_TOKEN = re.compile(r"\s*\S+")
_WORD = re.compile(r"\w+")
_ENCRYPTED_PREFIX = "enc-"
_ISSUER = "fake_responses"

_ROLES = ("user", "assistant", "system", "developer")
_INPUT_PARTS = ("input_text", "input_image", "input_file")
_ASSISTANT_PARTS = ("output_text", "refusal")
_INCLUDABLE = (
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
    "web_search_call.action.sources",
)
_SEARCH_TOOL = (
    "type",
    "filters",
    "user_location",
    "search_context_size",
    "external_web_access",
)
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
_SUMMARIES = ("auto", "concise", "detailed")
_CALL_TYPES = ("function", "custom")


@dataclass(frozen=True, slots=True)
class _Kind:
    types: tuple[type, ...]
    name: str  # as OpenAI's messages say it: "a string", "an array"


_STRING = _Kind((str,), "a string")
_BOOLEAN = _Kind((bool,), "a boolean")
_INTEGER = _Kind((int,), "an integer")
_NUMBER = _Kind((int, float), "a decimal")
_OBJECT = _Kind((dict,), "an object")
_ARRAY = _Kind((list,), "an array")
_CONTENT = _Kind((str, list), "one of a string or array of input content")

# Every top-level parameter the fake takes; ``input`` and ``tool_choice``
# take more than one kind and are checked on their own.
_TOP: dict[str, _Kind | None] = {
    "model": _STRING,
    "input": None,
    "instructions": _STRING,
    "tools": _ARRAY,
    "tool_choice": None,
    "parallel_tool_calls": _BOOLEAN,
    "max_output_tokens": _INTEGER,
    "temperature": _NUMBER,
    "top_p": _NUMBER,
    "text": _OBJECT,
    "reasoning": _OBJECT,
    "store": _BOOLEAN,
    "stream": _BOOLEAN,
    "stream_options": _OBJECT,
    "metadata": _OBJECT,
    "user": _STRING,
    "safety_identifier": _STRING,
    "prompt_cache_key": _STRING,
    "service_tier": _STRING,
    "include": _ARRAY,
    "top_logprobs": _INTEGER,
    "truncation": _STRING,
    "max_tool_calls": _INTEGER,
}
_RANGES: dict[str, tuple[float, float | None]] = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "top_logprobs": (0, 20),
    "max_output_tokens": (1, None),
    "max_tool_calls": (1, None),
}


def responses_app(requests: list[dict[str, Any]] | None = None) -> web.Application:
    async def create(request: web.Request) -> web.StreamResponse:
        body = await _body(request, requests)
        try:
            _check(body)
        except _Refused as refused:
            return refused.response()
        items = _items(body)
        user_text = _user_text(items)
        failing = "fail me" in user_text
        if body.get("stream"):
            return await _stream(request, body, items, failing, cut="cut me" in user_text)
        if failing:
            return _error(500, SERVER_ERROR, "server_error", None, None)
        answer = _answer(body, items)
        return web.json_response(answer.response(body, time.time()))

    async def chat(request: web.Request) -> web.StreamResponse:
        await _body(request, requests)
        return _error(404, ONLY_RESPONSES, "invalid_request_error", "model", None)

    app = web.Application()
    app.router.add_post("/v1/responses", create)
    app.router.add_post("/openai/v1/responses", create)  # Azure OpenAI's v1 surface
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def _body(request: web.Request, requests: list[dict[str, Any]] | None) -> Any:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if requests is not None:
        requests.append(
            {
                "path": request.path,
                "body": body,
                "authorization": request.headers.get("Authorization"),
                "api_key": request.headers.get("api-key"),  # Azure's header
            }
        )
    return body


def _error(
    status: int, message: str, kind: str, param: str | None, code: str | None
) -> web.Response:
    error = {"message": message, "type": kind, "param": param, "code": code}
    return web.json_response({"error": error}, status=status)


# -- validation -----------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, message: str, param: str | None, code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code

    def response(self) -> web.Response:
        return _error(400, self.message, "invalid_request_error", self.param, self.code)


def _at(at: str, key: str) -> str:
    return f"{at}.{key}" if at else key


def _missing(param: str) -> _Refused:
    return _Refused(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def _unknown(param: str) -> _Refused:
    return _Refused(f"Unknown parameter: '{param}'.", param, "unknown_parameter")


def _wrong_type(param: str, expected: str, value: Any) -> _Refused:
    return _Refused(
        f"Invalid type for '{param}': expected {expected}, but got {_kind_of(value)} instead.",
        param,
        "invalid_type",
    )


def _bad_value(param: str, value: Any, supported: Sequence[str]) -> _Refused:
    quoted = [f"'{s}'" for s in supported]
    if len(quoted) < 3:
        listed = " and ".join(quoted)
    else:
        listed = f"{', '.join(quoted[:-1])}, and {quoted[-1]}"
    return _Refused(
        f"Invalid value: '{value}'. Supported values are: {listed}.", param, "invalid_value"
    )


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    for kind in (_BOOLEAN, _INTEGER, _NUMBER, _STRING, _ARRAY):
        if isinstance(value, kind.types):
            return kind.name
    return _OBJECT.name


def _is(value: Any, kind: _Kind) -> bool:
    # JSON's true is no number, though Python's bool is an int.
    if isinstance(value, bool) and bool not in kind.types:
        return False
    return isinstance(value, kind.types)


def _get(obj: Json, key: str, at: str, kind: _Kind, *, required: bool = False) -> Any:
    param = _at(at, key)
    if key not in obj:
        if required:
            raise _missing(param)
        return None
    value = obj[key]
    if value is None and not required:
        return None
    if not _is(value, kind):
        raise _wrong_type(param, kind.name, value)
    return value


def _object(value: Any, param: str) -> Json:
    if not isinstance(value, dict):
        raise _wrong_type(param, _OBJECT.name, value)
    return value


def _only(obj: Json, allowed: Sequence[str], at: str) -> None:
    for key in obj:
        if key not in allowed:
            raise _unknown(_at(at, key))


def _one_of(obj: Json, key: str, at: str, supported: Sequence[str]) -> str | None:
    value: str | None = _get(obj, key, at, _STRING)
    if value is not None and value not in supported:
        raise _bad_value(_at(at, key), value, supported)
    return value


def _check(body: Any) -> None:
    if not isinstance(body, dict):
        raise _Refused(NOT_JSON, None)
    _only(body, list(_TOP), "")
    _get(body, "model", "", _STRING, required=True)
    if "input" not in body:
        raise _missing("input")
    for key, kind in _TOP.items():
        if kind is not None:
            _get(body, key, "", kind)
    _check_ranges(body)
    _one_of(body, "truncation", "", ("auto", "disabled"))
    _check_input(body["input"])
    tools = _check_tools(body.get("tools") or [])
    if body.get("tool_choice") is not None:
        _check_tool_choice(body["tool_choice"], tools)
    _check_text(body.get("text") or {})
    _check_reasoning(body.get("reasoning") or {})
    for i, included in enumerate(body.get("include") or []):
        _check_choice(included, f"include[{i}]", _INCLUDABLE)
    _check_stream_options(body)
    for key in body.get("metadata") or {}:
        _get(body["metadata"], key, "metadata", _STRING)


def _check_ranges(body: Json) -> None:
    for key, (low, high) in _RANGES.items():
        value = body.get(key)
        if value is None:
            continue
        kind = "integer" if _TOP[key] is _INTEGER else "decimal"
        if value < low:
            raise _Refused(
                f"Invalid '{key}': {kind} below minimum value. "
                f"Expected a value >= {low}, but got {value} instead.",
                key,
                f"{kind}_below_min_value",
            )
        if high is not None and value > high:
            raise _Refused(
                f"Invalid '{key}': {kind} above maximum value. "
                f"Expected a value <= {high}, but got {value} instead.",
                key,
                f"{kind}_above_max_value",
            )


def _check_choice(value: Any, param: str, supported: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise _wrong_type(param, _STRING.name, value)
    if value not in supported:
        raise _bad_value(param, value, supported)
    return value


# The call ids seen so far in the input, by call item type.
_Calls = dict[str, set[str]]
_OUTPUT_OF = {
    "function_call_output": "function_call",
    "custom_tool_call_output": "custom_tool_call",
}


def _check_input(value: Any) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise _wrong_type("input", "one of a string or array of input items", value)
    calls: _Calls = {"function_call": set(), "custom_tool_call": set()}
    for i, raw in enumerate(value):
        at = f"input[{i}]"
        item = _object(raw, at)
        kind = _item_type(item, at)
        check = _ITEM_CHECKS.get(kind)
        if check is None:
            raise _bad_value(f"{at}.type", kind, list(_ITEM_CHECKS))
        check(item, at, calls)


def _item_type(item: Json, at: str) -> str:
    if "type" not in item and "role" in item:
        return "message"
    kind: str = _get(item, "type", at, _STRING, required=True)
    return kind


def _check_message(item: Json, at: str, calls: _Calls) -> None:
    role = _check_choice(_get(item, "role", at, _STRING, required=True), f"{at}.role", _ROLES)
    _only(item, ("type", "role", "content", "id", "status", "phase"), at)
    content = _get(item, "content", at, _CONTENT, required=True)
    if isinstance(content, list):
        allowed = _ASSISTANT_PARTS if role == "assistant" else _INPUT_PARTS
        for j, part in enumerate(content):
            _check_part(part, f"{at}.content[{j}]", allowed)


def _check_part(raw: Any, at: str, allowed: Sequence[str]) -> None:
    part = _object(raw, at)
    kind = _check_choice(_get(part, "type", at, _STRING, required=True), f"{at}.type", allowed)
    _PART_CHECKS[kind](part, at)


def _check_input_text(part: Json, at: str) -> None:
    _only(part, ("type", "text", "prompt_cache_breakpoint"), at)
    _get(part, "text", at, _STRING, required=True)


def _check_input_image(part: Json, at: str) -> None:
    _only(part, ("type", "image_url", "file_id", "detail", "prompt_cache_breakpoint"), at)
    if _get(part, "image_url", at, _STRING) is None and _get(part, "file_id", at, _STRING) is None:
        raise _missing(f"{at}.image_url")
    _one_of(part, "detail", at, ("auto", "low", "high", "original"))


def _check_input_file(part: Json, at: str) -> None:
    keys = ("type", "file_data", "filename", "file_id", "file_url", "detail")
    _only(part, (*keys, "prompt_cache_breakpoint"), at)
    by_reference = [_get(part, key, at, _STRING) for key in ("file_id", "file_url")]
    if _get(part, "file_data", at, _STRING) is not None:
        _get(part, "filename", at, _STRING, required=True)
    elif not any(by_reference):
        raise _missing(f"{at}.file_data")


def _check_output_text(part: Json, at: str) -> None:
    _only(part, ("type", "text", "annotations", "logprobs"), at)
    _get(part, "text", at, _STRING, required=True)
    _get(part, "annotations", at, _ARRAY)
    _get(part, "logprobs", at, _ARRAY)


def _check_refusal(part: Json, at: str) -> None:
    _only(part, ("type", "refusal"), at)
    _get(part, "refusal", at, _STRING, required=True)


_PART_CHECKS: dict[str, Callable[[Json, str], None]] = {
    "input_text": _check_input_text,
    "input_image": _check_input_image,
    "input_file": _check_input_file,
    "output_text": _check_output_text,
    "refusal": _check_refusal,
}


def _check_call(item: Json, at: str, calls: _Calls, payload: str) -> None:
    _only(item, ("type", "id", "call_id", "name", payload, "status", "namespace"), at)
    call_id = _get(item, "call_id", at, _STRING, required=True)
    _get(item, "name", at, _STRING, required=True)
    _get(item, payload, at, _STRING, required=True)
    calls[item["type"]].add(call_id)


def _check_function_call(item: Json, at: str, calls: _Calls) -> None:
    _check_call(item, at, calls, "arguments")


def _check_custom_tool_call(item: Json, at: str, calls: _Calls) -> None:
    _check_call(item, at, calls, "input")


def _check_call_output(item: Json, at: str, calls: _Calls) -> None:
    _only(item, ("type", "id", "call_id", "output", "status"), at)
    call_id = _get(item, "call_id", at, _STRING, required=True)
    output = _get(item, "output", at, _Kind((str, list), "one of a string or array"), required=True)
    if isinstance(output, list):
        for j, part in enumerate(output):
            _check_part(part, f"{at}.output[{j}]", _INPUT_PARTS)
    if call_id not in calls[_OUTPUT_OF[item["type"]]]:
        what = item["type"].removesuffix("_output").replace("_", " ")
        raise _Refused(f"No tool call found for {what} output with call_id {call_id}.", "input")


def _check_reasoning_item(item: Json, at: str, calls: _Calls) -> None:
    _only(item, ("type", "id", "summary", "encrypted_content", "content", "status"), at)
    item_id = _get(item, "id", at, _STRING, required=True)
    for j, raw in enumerate(_get(item, "summary", at, _ARRAY, required=True)):
        summary = _object(raw, f"{at}.summary[{j}]")
        _only(summary, ("type", "text"), f"{at}.summary[{j}]")
        kind = _get(summary, "type", f"{at}.summary[{j}]", _STRING, required=True)
        _check_choice(kind, f"{at}.summary[{j}].type", ("summary_text",))
        _get(summary, "text", f"{at}.summary[{j}]", _STRING, required=True)
    _get(item, "content", at, _ARRAY)
    encrypted = _get(item, "encrypted_content", at, _STRING)
    if encrypted is not None and not _verified(encrypted, item_id):
        raise _Refused(
            f"The encrypted content for item {item_id} could not be verified.",
            "input",
            "invalid_encrypted_content",
        )


_ITEM_CHECKS: dict[str, Callable[[Json, str, _Calls], None]] = {
    "message": _check_message,
    "function_call": _check_function_call,
    "function_call_output": _check_call_output,
    "custom_tool_call": _check_custom_tool_call,
    "custom_tool_call_output": _check_call_output,
    "reasoning": _check_reasoning_item,
}


def _check_tools(tools: list[Any]) -> list[Json]:
    checked = []
    for i, raw in enumerate(tools):
        at = f"tools[{i}]"
        tool = _object(raw, at)
        kind = _get(tool, "type", at, _STRING, required=True)
        if kind == "function":
            _get(tool, "name", at, _STRING, required=True)
            _only(tool, ("type", "name", "parameters", "description", "strict"), at)
            _get(tool, "parameters", at, _OBJECT)
            _get(tool, "description", at, _STRING)
            _get(tool, "strict", at, _BOOLEAN)
        elif kind == "custom":
            _get(tool, "name", at, _STRING, required=True)
            _only(tool, ("type", "name", "description", "format"), at)
            _get(tool, "description", at, _STRING)
            _get(tool, "format", at, _OBJECT)
        elif kind == "web_search":
            _only(tool, _SEARCH_TOOL, at)
            _get(tool, "filters", at, _OBJECT)
            _get(tool, "user_location", at, _OBJECT)
        else:
            raise _bad_value(f"{at}.type", kind, ("function", "custom", "web_search"))
        checked.append(tool)
    return checked


def _check_tool_choice(choice: Any, tools: list[Json]) -> None:
    if isinstance(choice, str):
        _check_choice(choice, "tool_choice", ("auto", "none", "required"))
        if choice == "required" and not tools:
            raise _Refused(
                "Tool choice 'required' must be specified with 'tools' parameter.", "tool_choice"
            )
        return
    if not isinstance(choice, dict):
        raise _wrong_type("tool_choice", "one of a string or object", choice)
    kind = _get(choice, "type", "tool_choice", _STRING, required=True)
    if kind in _CALL_TYPES:
        name = _get(choice, "name", "tool_choice", _STRING, required=True)
        _only(choice, ("type", "name"), "tool_choice")
        if not any(t["type"] == kind and t.get("name") == name for t in tools):
            raise _Refused(f"Tool choice '{name}' not found in 'tools' parameter.", "tool_choice")
    elif kind == "allowed_tools":
        _only(choice, ("type", "mode", "tools"), "tool_choice")
        mode = _get(choice, "mode", "tool_choice", _STRING, required=True)
        _check_choice(mode, "tool_choice.mode", ("auto", "required"))
        for i, allowed in enumerate(_get(choice, "tools", "tool_choice", _ARRAY, required=True)):
            at = f"tool_choice.tools[{i}]"
            _get(_object(allowed, at), "type", at, _STRING, required=True)
    else:
        raise _bad_value("tool_choice.type", kind, ("function", "custom", "allowed_tools"))


def _check_text(text: Json) -> None:
    _only(text, ("format", "verbosity"), "text")
    _one_of(text, "verbosity", "text", ("low", "medium", "high"))
    form = _get(text, "format", "text", _OBJECT)
    if form is None:
        return
    at = "text.format"
    kind = _get(form, "type", at, _STRING, required=True)
    if kind in ("text", "json_object"):
        _only(form, ("type",), at)
    elif kind == "json_schema":
        _get(form, "name", at, _STRING, required=True)
        _get(form, "schema", at, _OBJECT, required=True)
        _only(form, ("type", "name", "schema", "strict", "description"), at)
        _get(form, "strict", at, _BOOLEAN)
        _get(form, "description", at, _STRING)
    else:
        raise _bad_value(f"{at}.type", kind, ("text", "json_object", "json_schema"))


def _check_reasoning(reasoning: Json) -> None:
    _only(reasoning, ("effort", "summary", "generate_summary"), "reasoning")
    _one_of(reasoning, "effort", "reasoning", _EFFORTS)
    _one_of(reasoning, "summary", "reasoning", _SUMMARIES)
    _one_of(reasoning, "generate_summary", "reasoning", _SUMMARIES)


def _check_stream_options(body: Json) -> None:
    options = body.get("stream_options")
    if options is None:
        return
    if body.get("stream") is not True:
        raise _Refused(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    _only(options, ("include_obfuscation",), "stream_options")
    _get(options, "include_obfuscation", "stream_options", _BOOLEAN)


# Encrypted reasoning is opaque to clients; this fake can read its own back.
def _encrypted(item_id: str) -> str:
    sealed = orjson.dumps({"by": _ISSUER, "id": item_id})
    return _ENCRYPTED_PREFIX + base64.urlsafe_b64encode(sealed).decode()


def _verified(encrypted: str, item_id: str) -> bool:
    if not encrypted.startswith(_ENCRYPTED_PREFIX):
        return False
    try:
        raw = base64.b64decode(encrypted[len(_ENCRYPTED_PREFIX) :], altchars=b"-_", validate=True)
        sealed = orjson.loads(raw)
    except ValueError:
        return False
    return isinstance(sealed, dict) and sealed == {"by": _ISSUER, "id": item_id}


# -- the answer -----------------------------------------------------------------


def _items(body: Json) -> list[Json]:
    given = body["input"]
    if isinstance(given, str):
        return [{"type": "message", "role": "user", "content": given}]
    return [{"type": "message", **item} if "type" not in item else item for item in given]


def _joined(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(p["text"] for p in content if p.get("type") == "input_text")


def _user_text(items: list[Json]) -> str:
    for item in reversed(items):
        if item["type"] == "message" and item["role"] == "user":
            return _joined(item["content"])
    return ""


def _texts(items: list[Json]) -> Iterator[str]:
    for item in items:
        kind = item["type"]
        if kind == "message" and isinstance(item["content"], str):
            yield item["content"]
        elif kind == "message":
            yield from (p.get("text") or p.get("refusal") or "" for p in item["content"])
        elif kind in ("function_call", "custom_tool_call"):
            yield item["arguments" if kind == "function_call" else "input"]
        elif kind in _OUTPUT_OF:
            yield _joined(item["output"])
        elif kind == "reasoning":
            yield from (s["text"] for s in item["summary"])


def _effort(body: Json) -> str | None:
    reasoning = body.get("reasoning")
    if reasoning is None:
        return None
    effort: str = reasoning.get("effort") or "medium"
    return effort


def _included(body: Json, what: str) -> bool:
    return what in (body.get("include") or [])


def _digest(body: Json) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class _Answer:
    rid: str
    output: list[Json]
    status: str
    usage: Json

    def response(self, body: Json, created: float) -> Json:
        incomplete = {"reason": "max_output_tokens"} if self.status == "incomplete" else None
        return _response(
            body, self.rid, created, self.status, self.output, self.usage, incomplete=incomplete
        )


def _answer(body: Json, items: list[Json]) -> _Answer:
    digest = _digest(body)
    user_text = _user_text(items)
    output: list[Json] = []
    reasoning_tokens = 0
    effort = _effort(body)
    if effort is not None and effort not in ("minimal", "none"):
        output.append(_reasoning(body, f"rs_{digest}0", user_text))
        reasoning_tokens = REASONING_TOKENS
    status = "completed"
    calls = _calls(body, items)
    for kind, name in calls:
        output.append(_call(kind, name, f"{digest}{len(output)}", user_text))
    searched = not calls and _searches(body, items, user_text)
    if searched:
        output.append(_search(body, f"ws_{digest}{len(output)}", user_text))
    if calls:
        visible = sum(len(_TOKEN.findall(_payload(item))) for item in output[-len(calls) :])
    else:
        said = f"Found it: {user_text}." if searched else _text(body, items, user_text)
        tokens = _TOKEN.findall(said)
        limit = body.get("max_output_tokens")
        if limit is not None and len(tokens) + reasoning_tokens > limit:
            tokens, status = tokens[: max(0, limit - reasoning_tokens)], "incomplete"
        cited = [_citation(user_text)] if searched else []
        message = _message(body, f"msg_{digest}{len(output)}", tokens, status, cited)
        if "refuse me" in user_text.lower() and not searched:
            tokens = _TOKEN.findall(REFUSAL)
            message["content"] = [{"type": "refusal", "refusal": REFUSAL}]
        output.append(message)
        visible = len(tokens)
    return _Answer(f"resp_{digest}", output, status, _usage(body, items, visible, reasoning_tokens))


def _reasoning(body: Json, item_id: str, user_text: str) -> Json:
    reasoning = body["reasoning"]
    item: Json = {"type": "reasoning", "id": item_id, "summary": []}
    if reasoning.get("summary") or reasoning.get("generate_summary"):
        word = _WORD.search(user_text)
        about = word.group() if word else "nothing"
        item["summary"] = [{"type": "summary_text", "text": f"Thinking about {about}."}]
    if _included(body, "reasoning.encrypted_content"):
        item["encrypted_content"] = _encrypted(item_id)
    return item


def _calls(body: Json, items: list[Json]) -> list[tuple[str, str]]:
    last = items[-1] if items else None
    if last is None or last["type"] != "message" or last["role"] != "user":
        return []
    choice = body.get("tool_choice") or "auto"
    tools = [t for t in body.get("tools") or [] if t["type"] in _CALL_TYPES]
    if choice == "none" or not tools:
        return []
    if isinstance(choice, dict):
        named = [choice] if choice["type"] in _CALL_TYPES else choice["tools"]
        picked = [(t["type"], t["name"]) for t in named if t["type"] in _CALL_TYPES]
        return picked[:1]
    functions = [t for t in tools if t["type"] == "function"]
    if body.get("parallel_tool_calls") is not False and len(functions) >= 2:
        return [("function", functions[0]["name"]), ("function", functions[1]["name"])]
    return [(tools[0]["type"], tools[0]["name"])]


def _searches(body: Json, items: list[Json], user_text: str) -> bool:
    last = items[-1] if items else None
    offered = any(t["type"] == "web_search" for t in body.get("tools") or [])
    asked = last is not None and last["type"] == "message" and last["role"] == "user"
    return offered and asked and "search" in user_text.lower()


def _page(user_text: str) -> str:
    word = _WORD.search(user_text)
    return f"https://example.com/{word.group().lower() if word else 'nothing'}"


def _search(body: Json, item_id: str, user_text: str) -> Json:
    action: Json = {"type": "search", "query": user_text}
    if _included(body, "web_search_call.action.sources"):
        action["sources"] = [{"type": "url", "url": _page(user_text)}]
    return {"type": "web_search_call", "id": item_id, "status": "completed", "action": action}


def _citation(user_text: str) -> Json:
    return {
        "type": "url_citation",
        "start_index": 0,
        "end_index": len("Found"),
        "url": _page(user_text),
        "title": "Example page",
    }


def _call(kind: str, name: str, n: str, user_text: str) -> Json:
    if kind == "custom":
        return {
            "type": "custom_tool_call",
            "id": f"ctc_{n}",
            "call_id": f"call_{n}",
            "name": name,
            "input": user_text,
        }
    return {
        "type": "function_call",
        "id": f"fc_{n}",
        "call_id": f"call_{n}",
        "name": name,
        "arguments": json.dumps({"query": user_text}),
        "status": "completed",
    }


def _payload(item: Json) -> str:
    payload: str = item["arguments"] if item["type"] == "function_call" else item["input"]
    return payload


def _text(body: Json, items: list[Json], user_text: str) -> str:
    last = items[-1] if items else {"type": "message"}
    if last["type"] in _OUTPUT_OF:
        sentence = f"The tool said: {_joined(last['output'])}."
    else:
        sentence = f"You said: {user_text}."
    form = ((body.get("text") or {}).get("format") or {}).get("type")
    return json.dumps({"answer": sentence}) if form in ("json_object", "json_schema") else sentence


def _message(
    body: Json, item_id: str, tokens: list[str], status: str, annotations: list[Json]
) -> Json:
    text = {
        "type": "output_text",
        "text": "".join(tokens),
        "annotations": annotations,
        "logprobs": _logprobs(body, tokens),
    }
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "status": status,
        "content": [text],
    }


def _logprobs(body: Json, tokens: list[str]) -> list[Json]:
    if not _included(body, "message.output_text.logprobs"):
        return []
    alternatives = body.get("top_logprobs") or 0
    out = []
    for k, token in enumerate(tokens):
        value = round(-0.1 * (k + 1), 6)
        top = [_scored(f" alt{i}", round(value - i, 6)) for i in range(1, alternatives + 1)]
        out.append({**_scored(token, value), "top_logprobs": top})
    return out


def _scored(token: str, value: float) -> Json:
    return {"token": token, "bytes": list(token.encode()), "logprob": value}


def _usage(body: Json, items: list[Json], visible: int, reasoning: int) -> Json:
    texts = [body.get("instructions") or "", *_texts(items)]
    input_tokens = sum(len(text.split()) for text in texts)
    output_tokens = visible + reasoning
    return {
        "input_tokens": input_tokens,
        # The SDK's type requires cache_write_tokens beside cached_tokens.
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


def _response(
    body: Json,
    rid: str,
    created: float,
    status: str,
    output: list[Json],
    usage: Json | None,
    *,
    error: Json | None = None,
    incomplete: Json | None = None,
) -> Json:
    reasoning = body.get("reasoning") or {}
    return {
        "id": rid,
        "object": "response",
        "created_at": int(created),
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": None,
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": _effort(body), "summary": reasoning.get("summary")},
        "safety_identifier": body.get("safety_identifier"),
        # The tier that served it: "auto" (and no tier) is served at "default".
        "service_tier": {None: "default", "auto": "default"}.get(
            body.get("service_tier"), body.get("service_tier")
        ),
        "store": body.get("store") is not False,
        "temperature": _or(body.get("temperature"), 1.0),
        "text": {"format": {"type": "text"}, **(body.get("text") or {})},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": [_tool(tool) for tool in body.get("tools") or []],
        "top_logprobs": body.get("top_logprobs") or 0,
        "top_p": _or(body.get("top_p"), 1.0),
        "truncation": body.get("truncation") or "disabled",
        "usage": usage,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _tool(tool: Json) -> Json:
    # The API echoes a function tool with its defaults written out.
    if tool["type"] != "function":
        return tool
    return {"description": None, "parameters": None, "strict": True, **tool}


# -- streaming ------------------------------------------------------------------


class _Cut(Exception):
    """The connection is to be dropped mid-answer."""


class _Events:
    def __init__(self, response: web.StreamResponse, cut: bool):
        self.response = response
        self.cut = cut
        self.sequence = 0

    async def send(self, kind: str, **fields: Any) -> None:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        await self.response.write(f"event: {kind}\ndata: ".encode() + orjson.dumps(event) + b"\n\n")
        await asyncio.sleep(0)


async def _stream(
    request: web.Request, body: Json, items: list[Json], failing: bool, cut: bool
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    events = _Events(response, cut)
    created = time.time()
    answer = _answer(body, items)
    pending = _response(body, answer.rid, created, "in_progress", [], None)
    await events.send("response.created", response=pending)
    await events.send("response.in_progress", response=pending)
    if failing:
        error = {"code": "server_error", "message": SERVER_ERROR}
        failed = _response(body, answer.rid, created, "failed", [], None, error=error)
        await events.send("response.failed", response=failed)
    else:
        try:
            for index, item in enumerate(answer.output):
                await _stream_item(events, item, index)
        except _Cut:  # the server dies mid-answer: no terminal event
            assert request.transport is not None
            request.transport.close()
            return response
        final = answer.response(body, created)
        await events.send(f"response.{answer.status}", response=final)
    await response.write_eof()
    return response


async def _stream_item(events: _Events, item: Json, index: int) -> None:
    await events.send("response.output_item.added", output_index=index, item=_started(item))
    await _ITEM_STREAMS[item["type"]](events, item, index)
    await events.send("response.output_item.done", output_index=index, item=item)


def _started(item: Json) -> Json:
    kind = item["type"]
    if kind == "reasoning":
        return {"type": kind, "id": item["id"], "summary": []}
    if kind == "message":
        return {**item, "status": "in_progress", "content": []}
    if kind == "function_call":
        return {**item, "status": "in_progress", "arguments": ""}
    if kind == "web_search_call":
        return {"type": kind, "id": item["id"], "status": "in_progress"}
    return {**item, "input": ""}


async def _stream_reasoning(events: _Events, item: Json, index: int) -> None:
    where = {"item_id": item["id"], "output_index": index}
    for s, part in enumerate(item["summary"]):
        empty = {"type": "summary_text", "text": ""}
        await events.send(
            "response.reasoning_summary_part.added", **where, summary_index=s, part=empty
        )
        for token in _TOKEN.findall(part["text"]):
            await events.send(
                "response.reasoning_summary_text.delta", **where, summary_index=s, delta=token
            )
        await events.send(
            "response.reasoning_summary_text.done", **where, summary_index=s, text=part["text"]
        )
        await events.send(
            "response.reasoning_summary_part.done", **where, summary_index=s, part=part
        )


async def _stream_message(events: _Events, item: Json, index: int) -> None:
    part = item["content"][0]
    where = {"item_id": item["id"], "output_index": index, "content_index": 0}
    if part["type"] == "refusal":
        await events.send("response.content_part.added", **where, part={**part, "refusal": ""})
        for token in _TOKEN.findall(part["refusal"]):
            await events.send("response.refusal.delta", **where, delta=token)
        await events.send("response.refusal.done", **where, refusal=part["refusal"])
        await events.send("response.content_part.done", **where, part=part)
        return
    empty = {**part, "text": "", "annotations": [], "logprobs": []}
    await events.send("response.content_part.added", **where, part=empty)
    scored = [_delta_logprob(entry) for entry in part["logprobs"]]
    for k, token in enumerate(_TOKEN.findall(part["text"])):
        logprobs = scored[k : k + 1]
        await events.send("response.output_text.delta", **where, delta=token, logprobs=logprobs)
        if events.cut and k == 1:
            raise _Cut
    for a, annotation in enumerate(part["annotations"]):
        await events.send(
            "response.output_text.annotation.added",
            **where,
            annotation_index=a,
            annotation=annotation,
        )
    await events.send("response.output_text.done", **where, text=part["text"], logprobs=scored)
    await events.send("response.content_part.done", **where, part=part)


def _delta_logprob(entry: Json) -> Json:
    # Events carry no bytes, unlike the output_text part.
    top = [{"token": t["token"], "logprob": t["logprob"]} for t in entry["top_logprobs"]]
    return {"token": entry["token"], "logprob": entry["logprob"], "top_logprobs": top}


async def _stream_call(events: _Events, item: Json, index: int) -> None:
    if item["type"] == "function_call":
        event, field = "response.function_call_arguments", "arguments"
    else:
        event, field = "response.custom_tool_call_input", "input"
    payload = item[field]
    middle = len(payload) // 2
    where = {"item_id": item["id"], "output_index": index}
    for piece in (payload[:middle], payload[middle:]):
        if piece:
            await events.send(f"{event}.delta", **where, delta=piece)
    await events.send(f"{event}.done", **where, **{field: payload})


async def _stream_search(events: _Events, item: Json, index: int) -> None:
    where = {"item_id": item["id"], "output_index": index}
    for stage in ("in_progress", "searching", "completed"):
        await events.send(f"response.web_search_call.{stage}", **where)


_ITEM_STREAMS: dict[str, Callable[[_Events, Json, int], Awaitable[None]]] = {
    "reasoning": _stream_reasoning,
    "message": _stream_message,
    "function_call": _stream_call,
    "custom_tool_call": _stream_call,
    "web_search_call": _stream_search,
}
