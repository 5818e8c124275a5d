"""A request past admission and validation: what the later stages share."""

from __future__ import annotations

from dataclasses import dataclass

from interlock.admission.keys import Principal
from interlock.pipeline.guard import Guard
from interlock.pipeline.request import JSONDict, ModelRequest, RequestOptions
from interlock.pipeline.web_search import SearchRun
from interlock.routing.base import RouteContext
from interlock.routing.router import ModelGroup
from interlock.telemetry.record import RequestRecord

__all__ = ["ModelCall"]


@dataclass(slots=True)
class ModelCall:
    request: ModelRequest
    principal: Principal
    group: ModelGroup
    # Who the routing strategies see (sticky routing, bandits) and the pin.
    route: RouteContext
    # What goes upstream: the client's body, or the guardrails' redaction of it.
    body: JSONDict
    # The client asked for the usage chunk at the end of its stream.
    include_usage: bool = False
    # The guardrails' decision on the input; the answer is filtered by it.
    guard: Guard | None = None
    # A web search the gateway runs for the model (``web_search.py``).
    web_search: SearchRun | None = None

    @property
    def record(self) -> RequestRecord:
        return self.request.record

    @property
    def options(self) -> RequestOptions:
        return self.request.options
