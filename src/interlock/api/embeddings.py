"""``POST /v1/embeddings``: OpenAI's Embeddings. The pipeline answers with
float vectors; ``encoding_format: base64`` is this edge's to apply."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.batches import async_job
from interlock.api.services import Services
from interlock.api.wire import json_response, model_request
from interlock.pipeline import Operation
from interlock.pipeline.encoding import apply_encoding_format

__all__ = ["embeddings"]


async def embeddings(request: Request, services: Services) -> ASGIApp:
    asked = await model_request(request, services, Operation.EMBEDDINGS)
    if asked.body.get("async") is True:  # a job of one request, answered 202
        return await async_job(request, services, asked.body, "/v1/embeddings")
    answer = await services.pipeline.run(asked)
    assert isinstance(answer, dict)  # embeddings never stream
    apply_encoding_format(asked.body, answer)
    return json_response(answer)
