"""A fake AWS Bedrock runtime (Converse / ConverseStream) on loopback.

``bedrock_app(requests)`` serves ``POST /model/{modelId}/converse`` and
``/converse-stream`` the way Bedrock does, and follows the shared fake-server
contract (tests/support, one rule set for every provider fake): its answer is
decided from the request alone.

It checks what Bedrock checks before answering:

- the SigV4 signature, recomputed with botocore's signer from the received
  method, URL, signed headers and body with the test credentials (403
  ``InvalidSignatureException`` on a mismatch, as AWS answers), so a signing
  bug fails the tests;
- the body's shape: turns that alternate starting with a user turn, no blank
  text, tool blocks only with a ``toolConfig``, and, with Claude's thinking
  on, the reasoning it issued sent back unchanged first in the last assistant
  turn when that turn used tools (400 ``ValidationException``).

With thinking on (``additionalModelRequestFields.thinking``) the answer starts
with a ``reasoningContent`` block: "Let me think." signed with ``SIGNATURE``,
or, when the last user text is ``redact your thinking``, ``REDACTED`` as
``redactedContent`` (streamed in two base64 deltas, as blobs stream).

Streams are real AWS event-stream frames. botocore decodes them but has no
encoder, so this module carries a small one (``frame``).

Trigger phrases (the last user text, exactly): ``overload me`` (503
``ServiceUnavailableException``, or that stream exception first thing),
``rate limit me`` (429 ``ThrottlingException`` / ``throttlingException``),
and ``stream exception <exceptionType>`` (a stream that says a few words,
then ends with that exception frame).
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

__all__ = [
    "REDACTED",
    "SIGNATURE",
    "TEST_ACCESS_KEY_ID",
    "TEST_SECRET_ACCESS_KEY",
    "bedrock_app",
    "frame",
]

TEST_ACCESS_KEY_ID = "AKIDTEST"
TEST_SECRET_ACCESS_KEY = "test-secret"
SIGNATURE = "c2lnbmVkLWJ5LXRoZS1mYWtl"  # opaque to the client, as Claude's are
REDACTED = b"\x00encrypted by the fake\xff"  # redacted reasoning: bytes only Claude reads
_REASONING = {"reasoningText": {"text": "Let me think.", "signature": SIGNATURE}}
_REDACTED_REASONING = {"redactedContent": base64.b64encode(REDACTED).decode()}

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[^,]+), "
    r"Signature=(?P<sig>[0-9a-f]+)"
)
_MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}
# Trigger text: status, HTTP error type, stream exception type, message.
_HTTP_ERRORS = {
    "overload me": (
        503,
        "ServiceUnavailableException",
        "serviceUnavailableException",
        "The service is unavailable. Please try again later.",
    ),
    "rate limit me": (
        429,
        "ThrottlingException",
        "throttlingException",
        "Too many requests, please wait before trying again.",
    ),
}
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123"


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (total length, headers length,
    prelude CRC32), string headers (type 7), payload, message CRC32."""
    encoded = b"".join(
        bytes([len(name.encode())])
        + name.encode()
        + b"\x07"
        + struct.pack(">H", len(value.encode()))
        + value.encode()
        for name, value in headers.items()
    )
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    # Bedrock pads every event with a "p" field so sizes do not leak token lengths.
    body = {**payload, "p": _PADDING[: 7 + len(kind) % 9]}
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, orjson.dumps(body))


def _exception_frame(kind: str, message: str) -> bytes:
    headers = {
        ":exception-type": kind,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return frame(headers, orjson.dumps({"message": message}))


class _Refusal(Exception):
    """An error Bedrock answers with a status and ``{"message": ...}``."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message

    def response(self) -> web.Response:
        headers = {"x-amzn-ErrorType": f"{self.kind}:http://internal.amazon.com/coral/"}
        return web.json_response({"message": self.message}, status=self.status, headers=headers)


# -- request checks --------------------------------------------------------------


def _verify_signature(request: web.Request, body: bytes) -> None:
    """Recompute the SigV4 signature the way AWS does; a 403 when it differs."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        raise _Refusal(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTHORIZATION.fullmatch(authorization)
    if match is None:
        raise _Refusal(403, "IncompleteSignatureException", "Authorization header is malformed.")
    if match["key"] != TEST_ACCESS_KEY_ID:
        raise _Refusal(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    signed = match["signed"].split(";")
    timestamp = request.headers.get("x-amz-date", "")
    if not {"host", "x-amz-date"} <= set(signed) or not timestamp.startswith(match["date"]):
        raise _Refusal(403, "IncompleteSignatureException", "host and x-amz-date must be signed.")
    if match["service"] != "bedrock":
        raise _Refusal(403, "InvalidSignatureException", "Credential should be scoped to bedrock.")
    # The URL as it came, still percent-encoded: the signer encodes it once more.
    url = f"http://{request.headers['host']}{request.raw_path}"
    headers = {name: request.headers.get(name, "") for name in signed}
    resigned = AWSRequest(method=request.method, url=url, data=body, headers=headers)
    resigned.context["timestamp"] = timestamp
    signer = SigV4Auth(
        Credentials(TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY), "bedrock", match["region"]
    )
    canonical = signer.canonical_request(resigned)
    expected = signer.signature(signer.string_to_sign(resigned, canonical), resigned)
    if expected != match["sig"]:
        raise _Refusal(
            403,
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service "
            "documentation for details.",
        )


def _validate(body: Any) -> None:
    """The checks Bedrock makes that a translation bug would trip."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages:
        raise _Refusal(400, "ValidationException", "messages must not be empty")
    tool_blocks = False
    called: set[str] = set()  # the tool-use ids of the turn before
    for i, message in enumerate(messages):
        expected = "user" if i % 2 == 0 else "assistant"
        if message.get("role") != expected:
            raise _Refusal(
                400,
                "ValidationException",
                "A conversation must start with a user message and alternate between user "
                "and assistant roles.",
            )
        content = message.get("content")
        if not isinstance(content, list) or not content:
            raise _Refusal(400, "ValidationException", f"messages.{i}.content must not be empty")
        for block in content:
            if "text" in block and not block["text"].strip():
                raise _Refusal(
                    400, "ValidationException", "The text field in the ContentBlock is blank."
                )
            tool_blocks = tool_blocks or "toolUse" in block or "toolResult" in block
            if "toolResult" in block and block["toolResult"]["toolUseId"] not in called:
                raise _Refusal(
                    400,
                    "ValidationException",
                    "Each toolResult block must answer a toolUse block of the previous turn.",
                )
        called = {b["toolUse"]["toolUseId"] for b in content if "toolUse" in b}
    if tool_blocks and "toolConfig" not in body:
        raise _Refusal(
            400,
            "ValidationException",
            "The toolConfig field must be defined when using toolUse and toolResult content "
            "blocks.",
        )
    if _thinking_on(body):
        _check_reasoning_sent_back(messages)


def _check_reasoning_sent_back(messages: list[dict[str, Any]]) -> None:
    """Claude's rule: with thinking on, the last assistant turn, when it used
    tools, starts with the reasoning it was answered with, unchanged."""
    turns = [(i, m["content"]) for i, m in enumerate(messages) if m["role"] == "assistant"]
    if not turns or not any("toolUse" in block for block in turns[-1][1]):
        return
    i, content = turns[-1]
    first = content[0].get("reasoningContent")
    if first is None:
        raise _Refusal(
            400,
            "ValidationException",
            f"The model returned the following errors: messages.{i}.content.0.type: Expected "
            "`thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is "
            "enabled, a final `assistant` message must start with a thinking block.",
        )
    if first not in (_REASONING, _REDACTED_REASONING):
        raise _Refusal(
            400,
            "ValidationException",
            f"The model returned the following errors: messages.{i}.content.0: Invalid "
            "`signature` in `thinking` block",
        )


def _thinking_on(body: dict[str, Any]) -> bool:
    thinking = (body.get("additionalModelRequestFields") or {}).get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") == "enabled"


# -- the answer ------------------------------------------------------------------


@dataclass
class _Answer:
    blocks: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = "end_turn"
    # For ``stream exception <type>``: the exception that ends the stream.
    stream_exception: str | None = None


_VALUES: dict[Any, Any] = {
    "string": "Paris",
    "integer": 3,
    "number": 1.5,
    "boolean": True,
    "array": [],
    "object": {},
}


def _schema_value(schema: Any) -> Any:
    return _VALUES.get(schema.get("type")) if isinstance(schema, dict) else None


def _arguments(schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties")
    if properties is None:  # a schema-less object: the structured-output json_object tool
        return {"answer": "Paris"}
    return {name: _schema_value(spec) for name, spec in properties.items()}


_DOCUMENT_TYPES = {"pdf": "application/pdf", "txt": "text/plain"}
# Converse's rule for a document's name, and names must differ within a message.
_DOCUMENT_NAME = re.compile(r"[A-Za-z0-9\-()\[\]]+( [A-Za-z0-9\-()\[\]]+)*")


def _check_documents(documents: list[dict[str, Any]]) -> None:
    names = [document.get("name", "") for document in documents]
    for document, name in zip(documents, names, strict=True):
        if document.get("format") not in _DOCUMENT_TYPES or not _DOCUMENT_NAME.fullmatch(name):
            raise _Refusal(400, "ValidationException", f"invalid document block {name!r}")
        base64.b64decode(document["source"]["bytes"], validate=True)
    if len(set(names)) != len(names):
        raise _Refusal(400, "ValidationException", "document names must be unique")


def _answer(body: dict[str, Any]) -> _Answer:
    last = body["messages"][-1]
    content = last["content"] if last["role"] == "user" else []
    text = " ".join(b["text"] for b in content if "text" in b)
    results = [b["toolResult"] for b in content if "toolResult" in b]
    images = [b["image"] for b in content if "image" in b]
    documents = [b["document"] for b in content if "document" in b]
    _check_documents(documents)
    if text in _HTTP_ERRORS:
        status, kind, _, message = _HTTP_ERRORS[text]
        raise _Refusal(status, kind, message)
    answer = _Answer()
    if text.startswith("stream exception "):
        answer.stream_exception = text.removeprefix("stream exception ")
    if _thinking_on(body):
        secret = text == "redact your thinking"
        answer.blocks.append({"reasoningContent": _REDACTED_REASONING if secret else _REASONING})
    tools = [
        t["toolSpec"] for t in (body.get("toolConfig") or {}).get("tools", []) if "toolSpec" in t
    ]
    if tools and not results:
        named = ((body["toolConfig"].get("toolChoice") or {}).get("tool") or {}).get("name")
        if re.search(r"\bparallel\b", text):
            chosen = tools[:2]
        else:
            chosen = [next(t for t in tools if t["name"] == named)] if named else tools[:1]
        for i, tool in enumerate(chosen):
            use = {
                "toolUseId": f"tooluse_{tool['name']}_{i}",
                "name": tool["name"],
                "input": _arguments(tool["inputSchema"]["json"]),
            }
            answer.blocks.append({"toolUse": use})
        answer.stop_reason = "tool_use"
        return answer
    if results:
        said = [_result_text(r) for r in results]
        reply = "Tool said: " + "; ".join(said)
    elif images:
        size = len(base64.b64decode(images[0]["source"]["bytes"]))
        reply = f"I see a {_MEDIA_TYPES[images[0]['format']]} image of {size} bytes"
    elif documents:
        size = len(base64.b64decode(documents[0]["source"]["bytes"]))
        reply = f"I read a {_DOCUMENT_TYPES[documents[0]['format']]} document of {size} bytes"
    else:
        reply = "Hello from bedrock"
    answer.blocks.append({"text": reply})
    return answer


def _result_text(result: dict[str, Any]) -> str:
    return "".join(
        c["text"] if "text" in c else orjson.dumps(c.get("json")).decode()
        for c in result["content"]
    )


def _usage(body: dict[str, Any], answer: _Answer) -> dict[str, int]:
    prompt = max(1, len(orjson.dumps(body["messages"])) // 4)
    output = sum(len(orjson.dumps(block)) // 4 for block in answer.blocks) or 1
    usage = {"inputTokens": prompt, "outputTokens": output, "totalTokens": prompt + output}
    if b'"cachePoint"' in orjson.dumps(body):
        usage.update(cacheReadInputTokens=100, cacheWriteInputTokens=50)
        usage["totalTokens"] += 150
    return usage


# -- streaming ---------------------------------------------------------------------


def _thirds(text: str) -> list[str]:
    """``text`` in at least three pieces (fewer only when it is shorter)."""
    step = max(1, -(-len(text) // 3))
    return [text[i : i + step] for i in range(0, len(text), step)]


def _stream_events(answer: _Answer, usage: dict[str, int]) -> list[bytes]:
    events = [_event("messageStart", {"role": "assistant"})]
    uses = [(i, b["toolUse"]) for i, b in enumerate(answer.blocks) if "toolUse" in b]
    for index, block in enumerate(answer.blocks):
        if "reasoningContent" in block:
            events += _reasoning_deltas(index, block["reasoningContent"])
            events.append(_event("contentBlockStop", {"contentBlockIndex": index}))
        elif "text" in block:
            for piece in _thirds(block["text"]):
                events.append(_delta(index, {"text": piece}))
            if answer.stream_exception is not None:
                events.append(_exception_frame(answer.stream_exception, "The model failed."))
                return events
            events.append(_event("contentBlockStop", {"contentBlockIndex": index}))
    # Tool calls start together and their input fragments interleave: each
    # delta names its block, so parallel calls may mix in one stream.
    for index, use in uses:
        start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
        events.append(_event("contentBlockStart", {"contentBlockIndex": index, "start": start}))
    pieces = [(index, _thirds(orjson.dumps(use["input"]).decode())) for index, use in uses]
    for step in range(max((len(p) for _, p in pieces), default=0)):
        for index, fragments in pieces:
            if step < len(fragments):
                events.append(_delta(index, {"toolUse": {"input": fragments[step]}}))
    for index, _ in uses:
        events.append(_event("contentBlockStop", {"contentBlockIndex": index}))
    events.append(_event("messageStop", {"stopReason": answer.stop_reason}))
    events.append(_event("metadata", {"usage": usage, "metrics": {"latencyMs": 12}}))
    return events


def _reasoning_deltas(index: int, reasoning: dict[str, Any]) -> list[bytes]:
    """Reasoning text in pieces, then its signature; or redacted reasoning
    as two blobs, each base64 on its own."""
    if "redactedContent" in reasoning:
        half = len(REDACTED) // 2
        blobs = [base64.b64encode(piece).decode() for piece in (REDACTED[:half], REDACTED[half:])]
        return [_delta(index, {"reasoningContent": {"redactedContent": b}}) for b in blobs]
    thought = reasoning["reasoningText"]
    pieces = [{"text": piece} for piece in _thirds(thought["text"])]
    pieces.append({"signature": thought["signature"]})
    return [_delta(index, {"reasoningContent": piece}) for piece in pieces]


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return _event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta})


# -- the app -----------------------------------------------------------------------


def bedrock_app(requests: list[dict[str, Any]] | None = None) -> web.Application:
    """The fake; each request's path, parsed body and lower-cased headers are
    appended to ``requests`` when given."""

    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = orjson.loads(raw) if raw else None
        if requests is not None:
            headers = {k.lower(): v for k, v in request.headers.items()}
            requests.append({"path": request.raw_path, "body": body, "headers": headers})
        streaming = request.path.endswith("/converse-stream")
        try:
            _verify_signature(request, raw)
            _validate(body)
            assert isinstance(body, dict)
            answer = _answer(body)
        except _Refusal as refusal:
            if streaming and refusal.kind in {e[1] for e in _HTTP_ERRORS.values()}:
                return await _stream_exception(request, refusal)
            return refusal.response()
        usage = _usage(body, answer)
        request_id = hashlib.sha256(raw).hexdigest()[:32]
        if not streaming:
            return web.json_response(
                {
                    "output": {"message": {"role": "assistant", "content": answer.blocks}},
                    "stopReason": answer.stop_reason,
                    "usage": usage,
                    "metrics": {"latencyMs": 12},
                },
                headers={"x-amzn-RequestId": request_id},
            )
        response = web.StreamResponse(
            headers={
                "content-type": "application/vnd.amazon.eventstream",
                "x-amzn-RequestId": request_id,
            }
        )
        await response.prepare(request)
        for event in _stream_events(answer, usage):
            await response.write(event)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/model/{model_id}/converse", handle)
    app.router.add_post("/model/{model_id}/converse-stream", handle)
    return app


async def _stream_exception(request: web.Request, refusal: _Refusal) -> web.StreamResponse:
    """Overload and throttling in a stream: the exception frame, first thing."""
    kind = next(e[2] for e in _HTTP_ERRORS.values() if e[1] == refusal.kind)
    response = web.StreamResponse(headers={"content-type": "application/vnd.amazon.eventstream"})
    await response.prepare(request)
    await response.write(_exception_frame(kind, refusal.message))
    await response.write_eof()
    return response
