"""``encoding_format: base64`` for embeddings: the pipeline answers with
float vectors, and each edge that returns them to a client (the HTTP edge,
batch output) applies the format the request asked for."""

from __future__ import annotations

import base64
import sys
from array import array
from typing import Any

__all__ = ["apply_encoding_format"]


def apply_encoding_format(body: dict[str, Any], answer: dict[str, Any]) -> None:
    """Rewrite ``answer``'s vectors as OpenAI's base64 when ``body`` asks."""
    if body.get("encoding_format") != "base64":  # validated by the pipeline
        return
    for item in answer.get("data", ()):
        item["embedding"] = _to_base64(item["embedding"])


def _to_base64(vector: Any) -> Any:
    """OpenAI's base64 embeddings: little-endian float32, base64-encoded."""
    if isinstance(vector, str):
        return vector
    packed = array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")
