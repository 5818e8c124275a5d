"""Documents (PDF and plain text) in chat messages, for the adapters that
translate them.

OpenAI's chat shape carries a document as a ``file`` part:
``{"type": "file", "file": {"file_data": "data:application/pdf;base64,...",
"filename": "report.pdf"}}``. OpenAI-compatible upstreams get it as sent;
Anthropic (a ``document`` block), Gemini (``inlineData``) and Bedrock (a
``document`` block) are sent their own form of the same bytes. The types
are the ones all three read: PDF and plain text. A ``file_id`` is read
from the gateway's uploads for the chat and Responses edges and their batch
lines (``files/documents.py``); one that reaches an adapter (another
dialect's) is refused here once instead of by each upstream in its own words.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from interlock.errors import InvalidRequest
from interlock.providers.openai_request import base64_data_url

__all__ = ["DOCUMENT_TYPES", "InlineDocument", "document_of"]

JSONDict = dict[str, Any]

# The media types every translating adapter's upstream reads as a document,
# with Bedrock's name for each format.
DOCUMENT_TYPES = {"application/pdf": "pdf", "text/plain": "txt"}


@dataclass(frozen=True, slots=True)
class InlineDocument:
    media_type: str
    data: str  # the bytes, base64-encoded
    filename: str | None = None

    def text(self) -> str:
        """A plain-text document's text (Anthropic takes those as text)."""
        return base64.b64decode(self.data).decode("utf-8", errors="replace")


def document_of(part: JSONDict, param: str) -> InlineDocument:
    """A ``file`` part's document, or a 400 naming what is wrong with it."""
    spec = part.get("file")
    if not isinstance(spec, dict):
        raise InvalidRequest("A `file` part needs a `file` object.", param=f"{param}.file")
    filename = spec.get("filename")
    if filename is not None and not isinstance(filename, str):
        raise InvalidRequest("`filename` must be a string.", param=f"{param}.file.filename")
    data = spec.get("file_data")
    where = f"{param}.file.file_data"
    if not isinstance(data, str) or not data:
        if spec.get("file_id") is not None:
            raise InvalidRequest(
                "A `file_id` is read from this gateway's uploads on the chat and Responses "
                "routes and their batch lines only: send the document inline as `file_data` "
                "(a base64 `data:` URL).",
                param=f"{param}.file.file_id",
                code="unsupported_parameter",
            )
        raise InvalidRequest("A `file` part needs `file_data`.", param=where)
    if not data.startswith("data:"):
        raise InvalidRequest(
            "`file_data` must be a base64 `data:` URL (`data:application/pdf;base64,...`).",
            param=where,
        )
    media_type, payload = base64_data_url(data, where, "data:application/pdf;base64,...")
    if media_type not in DOCUMENT_TYPES:
        raise InvalidRequest(
            f"Document type `{media_type or 'unknown'}` is not supported here; send a PDF "
            "(`application/pdf`) or plain text (`text/plain`).",
            param=where,
        )
    return InlineDocument(media_type, payload, filename or None)
