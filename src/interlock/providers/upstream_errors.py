"""What a client and the logs may learn from an upstream's failure.

An upstream's error body is never passed on as it is: it can hold anything,
the gateway's own API key included (OpenAI's "Incorrect API key provided:
sk-..." echoes it). The error keeps the upstream's status (and so its
OpenAI error type, ``UpstreamStatusError``); its message is our template for
that status plus an excerpt of the upstream's own words: one line of
printable text, at most ``EXCERPT_CHARS`` long, with every secret scrubbed
(``interlock.redaction``)::

    upstream rejected the gateway's credentials (401): Incorrect API key provided: [REDACTED].

The same cleaning serves the upstream client's own exception texts, which
can quote a URL or bytes the upstream sent.
"""

from __future__ import annotations

from typing import Any

import orjson

from interlock.errors import UpstreamStatusError
from interlock.redaction import Redactor

__all__ = [
    "EXCERPT_CHARS",
    "ShapeError",
    "clean_text",
    "error_code",
    "error_detail",
    "status_error",
]

EXCERPT_CHARS = 300
# Of a huge body or message only the start is read: the excerpt needs no more,
# and scrubbing costs per character.
_READ_CHARS = 4 * EXCERPT_CHARS
_READ_BYTES = 4 * _READ_CHARS


def error_detail(body: bytes) -> str:
    """The upstream's own description in an error body of any shape: an
    OpenAI/Anthropic/Gemini error object, a bare message, plain text, garbage.
    Not yet cleaned."""
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:_READ_BYTES].decode("utf-8", "replace")
    if isinstance(parsed, list) and parsed:
        parsed = parsed[0]  # Gemini sometimes wraps errors in a list
    if isinstance(parsed, dict):
        error = parsed.get("error", parsed)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if isinstance(parsed.get("message"), str):
            return str(parsed["message"])
    return ""  # JSON without a message: nothing worth quoting


class ShapeError(Exception):
    """A 200 answer that is not the shape its vendor documents. Raised by the
    pure translation modules (which know no deployment); the adapter turns
    it into an ``UpstreamProtocolError`` naming itself (``_shape_checked``)."""


# Upstream error codes clients act on, kept instead of ``upstream_<status>``:
# OpenAI's and Azure's content filter, and a prompt too long for the model
# (LangChain and agent frameworks trim history on it).
KEPT_CODES = frozenset({"content_filter", "context_length_exceeded"})


def error_code(body: bytes) -> str | None:
    """The upstream's ``error.code`` when it is one of ``KEPT_CODES``."""
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if code in KEPT_CODES else None


def clean_text(text: str, redactor: Redactor, limit: int = EXCERPT_CHARS) -> str:
    """One line of printable text, at most ``limit`` characters, secrets scrubbed.

    Control and format characters go first (a key split by a NUL or a
    zero-width space would otherwise escape the scrub, and escape codes or
    newlines would forge log lines), then the text is cut, then scrubbed.
    """
    text = " ".join(text[:_READ_CHARS].split())  # every run of whitespace: one space
    text = "".join(c for c in text if c.isprintable())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return redactor.scrub(text)


def status_error(
    status: int,
    detail: str | bytes,
    redactor: Redactor,
    *,
    deployment: str,
    retry_after_s: float | None = None,
    mid_stream: bool = False,
) -> UpstreamStatusError:
    """The error for an upstream's error status (or, ``mid_stream``, an error
    event in a stream it had started with 200): our words, then its own."""
    code = None
    if isinstance(detail, bytes):
        code = error_code(detail)
        detail = error_detail(detail)
    excerpt = clean_text(detail, redactor)
    head = "upstream reported an error mid-stream" if mid_stream else _headline(status)
    error = UpstreamStatusError(
        status,
        f"{head}: {excerpt}" if excerpt else head,
        deployment=deployment,
        retry_after_s=retry_after_s,
    )
    if code is not None and error.status_code == status:
        error.code = code
    return error


def _headline(status: int) -> str:
    if status in (401, 403):
        return f"upstream rejected the gateway's credentials ({status})"
    if status == 429:
        return "upstream rate limit reached (429)"
    if status in (503, 529):
        return f"upstream overloaded ({status})"
    if 400 <= status < 500:
        return f"upstream rejected the request ({status})"
    return f"upstream failed ({status})"
