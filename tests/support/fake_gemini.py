"""A fake Gemini API (``v1beta``) on loopback.

``gemini_app(requests)`` serves ``POST /v1beta/models/{model}:generateContent``
and ``:streamGenerateContent?alt=sse`` the way the Generative Language API
does, and follows the shared fake-server contract (tests/support, one rule
set for every provider fake): its answer is decided from the request alone.

It checks what Gemini checks before answering, so a translation bug fails
the tests instead of passing against a lenient fake:

- the ``x-goog-api-key`` header (403 ``PERMISSION_DENIED`` without one);
- the body's shape, in Gemini's error shape ``{"error": {"code", "message",
  "status"}}`` (400 ``INVALID_ARGUMENT``): fields Gemini does not know (at the
  top, in ``generationConfig``, in a ``Schema``), turns that do not alternate
  between ``user`` and ``model`` or do not end with ``user``, parts that are
  not exactly one kind, ``functionResponse`` parts whose name no earlier
  ``functionCall`` used or whose count differs from the calls they answer,
  and a ``thoughtSignature`` this fake did not issue.

Function calls are answered as Gemini 2.5+/3 answer them: the first call of
a turn carries a ``thoughtSignature`` (base64 with ``+``, ``/`` and ``=`` in
it, so an id codec that mangles them is caught). Streams send each call whole
in one fragment, as Gemini does: there are no argument fragments to split.

Trigger phrases (the last user text, exactly): ``overload me`` (503
``UNAVAILABLE``), ``rate limit me`` (429 ``RESOURCE_EXHAUSTED``), and, when
streaming, ``stream error <STATUS>`` (a few words, then an error object with
that google.rpc status in the stream).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

__all__ = ["SIGNATURE", "gemini_app"]

# The signature on a turn's first function call: bytes whose base64 holds + / =.
SIGNATURE = base64.b64encode(b"\xfb\xef\xbe\xff\xfefake-gemini-sig").decode()
_STATUSES = {
    "INVALID_ARGUMENT": 400,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
}
_TRIGGERS = {
    "overload me": ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    "rate limit me": ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
}
_REQUEST_FIELDS = frozenset(
    {
        "contents",
        "systemInstruction",
        "tools",
        "toolConfig",
        "generationConfig",
        "safetySettings",
        "cachedContent",
    }
)
_GENERATION_FIELDS = frozenset(
    {
        "maxOutputTokens",
        "stopSequences",
        "temperature",
        "topP",
        "topK",
        "candidateCount",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "responseMimeType",
        "responseSchema",
        "responseLogprobs",
        "logprobs",
        "thinkingConfig",
    }
)
_SCHEMA_FIELDS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "items",
        "properties",
        "required",
        "anyOf",
        "propertyOrdering",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "minProperties",
        "maxProperties",
        "default",
        "example",
    }
)
_TYPES = frozenset({"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})
_PART_KINDS = frozenset({"text", "inlineData", "functionCall", "functionResponse"})
_FLAT_VALUES = {"STRING": "Paris", "INTEGER": 3, "NUMBER": 1.5, "BOOLEAN": True}


class _Refusal(Exception):
    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message

    @property
    def code(self) -> int:
        return _STATUSES.get(self.status, 500)

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.code)


def _invalid(message: str) -> _Refusal:
    return _Refusal("INVALID_ARGUMENT", message)


# -- checks ------------------------------------------------------------------------


def _validate(body: Any) -> None:
    if not isinstance(body, dict):
        raise _invalid("Invalid JSON payload received.")
    for name in body.keys() - _REQUEST_FIELDS:
        raise _invalid(f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.')
    for name in (body.get("generationConfig") or {}).keys() - _GENERATION_FIELDS:
        raise _invalid(f"Unknown name \"{name}\" at 'generation_config': Cannot find field.")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _invalid("* GenerateContentRequest.contents: contents is not specified")
    for i, turn in enumerate(contents):
        if turn.get("role") not in ("user", "model"):
            raise _invalid(f"Please use a valid role: user, model. (contents[{i}])")
        if i and turn["role"] == contents[i - 1]["role"]:
            raise _invalid(
                "Please ensure that multiturn requests alternate between user and model."
            )
        if not isinstance(turn.get("parts"), list) or not turn["parts"]:
            raise _invalid(
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
            )
        for part in turn["parts"]:
            _check_part(part)
    if contents[-1]["role"] != "user":
        raise _invalid(
            "Please ensure that multiturn requests ends with a user role or a function response."
        )
    _check_function_turns(contents)
    for part in (body.get("systemInstruction") or {}).get("parts", []):
        if set(part) != {"text"}:
            raise _invalid("systemInstruction parts must be text.")
    for tool in body.get("tools") or []:
        for declaration in tool.get("functionDeclarations", []):
            if "parameters" in declaration:
                _check_schema(declaration["parameters"], f"function {declaration.get('name')}")
    schema = (body.get("generationConfig") or {}).get("responseSchema")
    if schema is not None:
        _check_schema(schema, "generation_config.response_schema")
    mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode", "AUTO")
    if mode not in ("AUTO", "ANY", "NONE", "VALIDATED"):
        raise _invalid(f"Invalid value at 'tool_config.function_calling_config.mode' ({mode})")


def _check_part(part: Any) -> None:
    if not isinstance(part, dict):
        raise _invalid("A part must be an object.")
    kinds = set(part) & _PART_KINDS
    if len(kinds) != 1 or set(part) - _PART_KINDS - {"thought", "thoughtSignature"}:
        raise _invalid(f"A part must hold exactly one kind of data, not {sorted(part)}.")
    if "thoughtSignature" in part and part["thoughtSignature"] != SIGNATURE:
        raise _invalid("Thought signature is not valid.")
    if "inlineData" in part:
        data = part["inlineData"]
        try:
            base64.b64decode(data["data"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            raise _invalid("inlineData.data must be base64.") from None
        if not isinstance(data.get("mimeType"), str):
            raise _invalid("inlineData.mimeType is required.")


def _check_function_turns(contents: list[dict[str, Any]]) -> None:
    called: set[str] = set()
    for i, turn in enumerate(contents):
        calls = [p["functionCall"] for p in turn["parts"] if "functionCall" in p]
        called.update(c.get("name") for c in calls)
        responses = [p["functionResponse"] for p in turn["parts"] if "functionResponse" in p]
        for response in responses:
            if response.get("name") not in called:
                raise _invalid(
                    f"functionResponse names `{response.get('name')}`, which no functionCall used."
                )
            if not isinstance(response.get("response"), dict):
                raise _invalid("functionResponse.response must be an object.")
        asked = [p for p in contents[i - 1]["parts"] if "functionCall" in p] if i else []
        if asked and len(responses) != len(asked):
            raise _invalid(
                "Please ensure that the number of function response parts is equal to the "
                "number of function call parts of the function call turn."
            )


def _check_schema(schema: Any, where: str) -> None:
    if not isinstance(schema, dict):
        raise _invalid(f"{where}: a schema must be an object.")
    for name in schema.keys() - _SCHEMA_FIELDS:
        raise _invalid(f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}'.")
    if "type" in schema and str(schema["type"]).upper() not in _TYPES:
        raise _invalid(f"{where}: unknown type {schema['type']!r}.")
    for sub in (schema.get("properties") or {}).values():
        _check_schema(sub, where)
    for sub in ([schema["items"]] if "items" in schema else []) + schema.get("anyOf", []):
        _check_schema(sub, where)


# -- answers -----------------------------------------------------------------------


@dataclass
class _Answer:
    parts: list[dict[str, Any]] = field(default_factory=list)
    thoughts: bool = False
    # ``stream error <STATUS>``: the error that ends the stream.
    stream_error: str | None = None


def _flat_value(schema: dict[str, Any]) -> Any:
    kind = str(schema.get("type", "")).upper()
    return _FLAT_VALUES.get(kind, [] if kind == "ARRAY" else {} if kind == "OBJECT" else None)


def _schema_value(schema: dict[str, Any]) -> Any:
    """JSON that fits ``schema``: the contract's values, first enum values,
    nested objects filled in (so a pydantic model with nested models parses)."""
    if schema.get("enum"):
        return schema["enum"][0]
    if schema.get("anyOf"):
        return _schema_value(schema["anyOf"][0])
    if "properties" in schema:
        return {name: _schema_value(sub) for name, sub in schema["properties"].items()}
    return _flat_value(schema)


def _arguments(declaration: dict[str, Any]) -> dict[str, Any]:
    properties = (declaration.get("parameters") or {}).get("properties") or {}
    return {name: _flat_value(spec) for name, spec in properties.items()}


def _result_text(response: dict[str, Any]) -> str:
    result = response.get("result")
    return (
        result
        if set(response) == {"result"} and isinstance(result, str)
        else orjson.dumps(response).decode()
    )


# Inline data Gemini reads as a document, not an image.
DOCUMENT_MIME_TYPES = frozenset({"application/pdf", "text/plain"})


def _answer(body: dict[str, Any]) -> _Answer:
    last = body["contents"][-1]["parts"]
    text = " ".join(p["text"] for p in last if "text" in p)
    results = [p["functionResponse"] for p in last if "functionResponse" in p]
    images = [p["inlineData"] for p in last if "inlineData" in p]
    if text in _TRIGGERS:
        raise _Refusal(*_TRIGGERS[text])
    config = body.get("generationConfig") or {}
    thinking = config.get("thinkingConfig") or {}
    answer = _Answer(thoughts=bool(thinking) and thinking.get("thinkingBudget") != 0)
    if text.startswith("stream error "):
        answer.stream_error = text.removeprefix("stream error ")
    if answer.thoughts and thinking.get("includeThoughts"):
        answer.parts.append({"text": "Let me think.", "thought": True})
    declarations = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations", [])]
    calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    if declarations and calling.get("mode") != "NONE" and not results:
        named = calling.get("allowedFunctionNames") or []
        if re.search(r"\bparallel\b", text, re.IGNORECASE):
            chosen = declarations[:2]
        elif named:
            chosen = [d for d in declarations if d["name"] == named[0]]
        else:
            chosen = declarations[:1]
        for i, declaration in enumerate(chosen):
            part: dict[str, Any] = {
                "functionCall": {"name": declaration["name"], "args": _arguments(declaration)}
            }
            if i == 0:  # Gemini signs the first call of a turn only
                part["thoughtSignature"] = SIGNATURE
            answer.parts.append(part)
        return answer
    if results:
        reply = "Tool said: " + "; ".join(_result_text(r.get("response", {})) for r in results)
    elif config.get("responseMimeType") == "application/json":
        schema = config.get("responseSchema")
        value = _schema_value(schema) if schema is not None else {"answer": "Paris"}
        reply = orjson.dumps(value).decode()
    elif images:
        size = len(base64.b64decode(images[0]["data"]))
        kind = images[0]["mimeType"]
        seen = "document" if kind in DOCUMENT_MIME_TYPES else "image"
        reply = f"I {'read' if seen == 'document' else 'see'} a {kind} {seen} of {size} bytes"
    else:
        reply = "Hello from gemini"
    answer.parts.append({"text": reply})
    return answer


def _usage(body: dict[str, Any], answer: _Answer) -> dict[str, int]:
    prompt = max(1, len(orjson.dumps(body["contents"])) // 4)
    output = sum(len(orjson.dumps(p)) // 4 for p in answer.parts if not p.get("thought")) or 1
    usage = {"promptTokenCount": prompt, "candidatesTokenCount": output}
    if answer.thoughts:
        usage["thoughtsTokenCount"] = 4
    usage["totalTokenCount"] = sum(usage.values())
    return usage


def _candidates(parts: list[dict[str, Any]], n: int, finish: bool) -> list[dict[str, Any]]:
    out = []
    for index in range(n):
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
        if finish:
            candidate["finishReason"] = "STOP"
        if index:  # proto3 JSON leaves the zero index out
            candidate["index"] = index
        out.append(candidate)
    return out


def _thirds(text: str) -> list[str]:
    """``text`` in at least three pieces (fewer only when it is shorter)."""
    step = max(1, -(-len(text) // 3))
    return [text[i : i + step] for i in range(0, len(text), step)]


def _fragments(answer: _Answer) -> list[list[dict[str, Any]]]:
    """The parts each streamed fragment carries: text in pieces, each function call whole."""
    fragments: list[list[dict[str, Any]]] = []
    for part in answer.parts:
        if "text" in part:
            extra = {k: v for k, v in part.items() if k != "text"}
            fragments += [[{"text": piece, **extra}] for piece in _thirds(part["text"])]
        else:
            fragments.append([part])
    return fragments


# -- the app -----------------------------------------------------------------------


def gemini_app(requests: list[dict[str, Any]] | None = None) -> web.Application:
    """The fake; each request's path, parsed body and lower-cased headers are
    appended to ``requests`` when given."""

    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = orjson.loads(raw) if raw else None
        if requests is not None:
            headers = {k.lower(): v for k, v in request.headers.items()}
            requests.append({"path": request.raw_path, "body": body, "headers": headers})
        model, _, method = request.match_info["target"].partition(":")
        try:
            _check_call(request, method)
            _validate(body)
            assert isinstance(body, dict)
            answer = _answer(body)
        except _Refusal as refusal:
            return refusal.response()
        n = (body.get("generationConfig") or {}).get("candidateCount") or 1
        common = {"modelVersion": model, "responseId": hashlib.sha256(raw).hexdigest()[:22]}
        usage = _usage(body, answer)
        if method == "generateContent":
            candidates = _candidates(answer.parts, n, True)
            return web.json_response({"candidates": candidates, "usageMetadata": usage, **common})
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in _stream_events(answer, n, usage, common):
            await response.write(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1beta/models/{target}", handle)
    return app


def _check_call(request: web.Request, method: str) -> None:
    if not request.headers.get("x-goog-api-key"):
        raise _Refusal(
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established "
            "identity). Please use API Key or other form of API consumer identity.",
        )
    if method not in ("generateContent", "streamGenerateContent"):
        raise _Refusal("NOT_FOUND", f"Method {method!r} is not found.")
    if method == "streamGenerateContent" and request.query.get("alt") != "sse":
        raise _invalid("This fake streams server-sent events only (?alt=sse).")


def _stream_events(
    answer: _Answer, n: int, usage: dict[str, int], common: dict[str, Any]
) -> list[dict[str, Any]]:
    """The ``alt=sse`` events: one fragment per piece, the last with the
    finish reason and usage (or, for ``stream error``, an error object)."""
    fragments = _fragments(answer)
    events = []
    for i, parts in enumerate(fragments):
        last = i == len(fragments) - 1 and answer.stream_error is None
        event: dict[str, Any] = {"candidates": _candidates(parts, n, last), **common}
        if last:
            event["usageMetadata"] = usage
        events.append(event)
    if answer.stream_error is not None:
        events.append(_Refusal(answer.stream_error, "The model failed mid-stream.").body())
    return events
