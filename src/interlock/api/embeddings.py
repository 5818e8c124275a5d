"""``POST /v1/embeddings``: OpenAI's Embeddings. The pipeline answers with
float vectors; ``encoding_format: base64`` is this edge's to apply."""

from __future__ import annotations

import base64
import sys
from array import array
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.batches import async_job
from interlock.api.services import Services
from interlock.api.wire import json_response, model_request
from interlock.pipeline import Operation

__all__ = ["embeddings"]


async def embeddings(request: Request, services: Services) -> ASGIApp:
    asked = await model_request(request, services, Operation.EMBEDDINGS)
    if asked.body.get("async") is True:  # a job of one request, answered 202
        return await async_job(request, services, asked.body, "/v1/embeddings")
    answer = await services.pipeline.run(asked)
    assert isinstance(answer, dict)  # embeddings never stream
    if asked.body.get("encoding_format") == "base64":  # validated by the pipeline
        for item in answer.get("data", ()):
            item["embedding"] = _to_base64(item["embedding"])
    return json_response(answer)


def _to_base64(vector: Any) -> Any:
    """OpenAI's base64 embeddings: little-endian float32, base64-encoded."""
    if isinstance(vector, str):
        return vector
    packed = array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")
