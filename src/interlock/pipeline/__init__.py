"""The request pipeline: the stages every edge's model requests run, in order.

    admit -> validate -> guard -> cache -> route -> attempt

=============  =====================  ==========================================
stage          module                 policies it applies (where they live)
=============  =====================  ==========================================
admit          ``admit.py``           keys, tiers, load shedding, budgets, rate
                                      limits (``interlock.admission``)
validate       ``validate.py``        OpenAI's schemas (``schemas.py``), model
guard          ``guard.py``           ``interlock.guardrails``
cache          ``cache.py``           ``interlock.cache``
route          ``route.py``           ``interlock.routing``
attempt        ``attempt.py``,        one adapter call (``interlock.providers``),
               ``watch.py``           a stream's time limits and accounting
=============  =====================  ==========================================

``pipeline.py`` runs them; ``stream.py`` is the streaming path (and decides
when a streamed response starts), ``failover.py`` its mid-stream failover.
``docs/architecture.md`` draws the whole request path.
"""

from interlock.pipeline.admit import AdmissionStage, Admitted
from interlock.pipeline.attempt import Attempts
from interlock.pipeline.cache import CacheStage
from interlock.pipeline.call import ModelCall
from interlock.pipeline.guard import Guard, GuardrailsStage
from interlock.pipeline.pipeline import ModelGroup, Pipeline
from interlock.pipeline.request import (
    NO_OPTIONS,
    JSONDict,
    ModelRequest,
    Operation,
    RequestOptions,
)
from interlock.pipeline.route import RouteStage
from interlock.pipeline.stream import ChatStream
from interlock.pipeline.validate import Validation

__all__ = [
    "NO_OPTIONS",
    "AdmissionStage",
    "Admitted",
    "Attempts",
    "CacheStage",
    "ChatStream",
    "Guard",
    "GuardrailsStage",
    "JSONDict",
    "ModelCall",
    "ModelGroup",
    "ModelRequest",
    "Operation",
    "Pipeline",
    "RequestOptions",
    "RouteStage",
    "Validation",
]
