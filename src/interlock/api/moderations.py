"""``POST /v1/moderations``: OpenAI's Moderations, through the pipeline like
any model call (keys, limits, routing, failover, usage ledger, metrics), to
an OpenAI-compatible deployment's ``/moderations`` or the simulator's
keyword scoring. Never cached: a safety check is asked fresh.

``model`` may be left out, as the SDK allows: it is then
``omni-moderation-latest``, OpenAI's default, which the bundled
configuration serves with the simulator; a gateway that serves no model of
that name answers 404 naming it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.services import Services
from interlock.api.wire import json_response, model_request
from interlock.pipeline import Operation
from interlock.pipeline.moderation import DEFAULT_MODERATION_MODEL

__all__ = ["moderations"]


async def moderations(request: Request, services: Services) -> ASGIApp:
    asked = await model_request(request, services, Operation.MODERATIONS)
    if asked.body.get("model") is None:
        asked.body["model"] = DEFAULT_MODERATION_MODEL
    answer = await services.pipeline.run(asked)
    assert isinstance(answer, dict)  # moderations never stream
    return json_response(answer)
