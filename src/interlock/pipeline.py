"""The request pipeline: one path, clearly staged.

    edge (api/) -> admission -> [guardrails] -> [cache] -> router -> adapter

The HTTP edge has already read, size-checked and parsed the body. Each stage
here is a small object with one method; stages that have not landed yet
(guardrails, cache) will slot in between authentication and routing without
the edge or the adapters changing.
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import AsyncIterator
from typing import Any

from interlock.admission.keys import KeyRing, Principal
from interlock.api.schemas import ChatCompletionRequest, EmbeddingRequest, validate_body
from interlock.providers.base import CallContext, JSONDict
from interlock.routing.router import Router

__all__ = ["Pipeline"]


class Pipeline:
    def __init__(self, keys: KeyRing, router: Router):
        self.keys = keys
        self.router = router

    def authenticate(self, authorization: str | None) -> Principal:
        return self.keys.authenticate(authorization)

    async def chat(self, body: JSONDict, request_id: str) -> JSONDict:
        request = validate_body(ChatCompletionRequest, body)
        provider = self.router.pick(request.model)
        return await provider.chat(body, CallContext(request_id, request.model))

    def stream_chat(self, body: JSONDict, request_id: str) -> AsyncIterator[bytes]:
        """Validate and route now (errors raise before any byte is sent)."""
        request = validate_body(ChatCompletionRequest, body)
        provider = self.router.pick(request.model)
        return provider.stream_chat(body, CallContext(request_id, request.model))

    async def embed(self, body: JSONDict, request_id: str) -> JSONDict:
        request = validate_body(EmbeddingRequest, body)
        provider = self.router.pick(request.model)
        result = await provider.embed(body, CallContext(request_id, request.model))
        if request.encoding_format == "base64":
            for item in result.get("data", ()):
                item["embedding"] = _to_base64(item["embedding"])
        return result


def _to_base64(vector: Any) -> Any:
    """OpenAI's base64 embeddings: little-endian float32, base64-encoded."""
    if isinstance(vector, str):
        return vector
    packed = array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")
