"""What an edge hands the pipeline: one call on a model, in the pipeline's shape.

The pipeline speaks OpenAI's request shapes (chat completions, embeddings):
an edge for another dialect translates into them. The edge reads the HTTP
request (size limit, JSON) and the routing headers; everything after that,
from authentication on, is the pipeline's, in the same order for every edge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from interlock.telemetry.record import RequestRecord

__all__ = ["NO_OPTIONS", "JSONDict", "ModelRequest", "Operation", "RequestOptions"]

JSONDict = dict[str, Any]


class Operation(StrEnum):
    CHAT = "chat"
    EMBEDDINGS = "embeddings"
    INFER = "infer"  # a tensor model, KServe v2 shapes (/v1/infer)
    MODERATIONS = "moderations"


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """How the caller asked to be routed and cached (from request headers)."""

    pin: str | None = None  # sticky-routing key (x-interlock-pin)
    # One deployment, past its breaker (x-interlock-force-deployment); needs
    # the key's force_deployment permission, which admission checks.
    forced: str | None = None
    # The request headers the cache reads (Cache-Control, x-interlock-cache-ttl).
    cache_headers: Mapping[str, str] = field(default_factory=dict)
    # The API dialect the client spoke ("openai", "anthropic", "responses",
    # "completions"); its edge translated the body into OpenAI's chat shape.
    # Part of the cache key: each dialect's edge stores what it will replay.
    dialect: str = "openai"
    # Headers of the client's dialect for upstreams that speak it (Anthropic's
    # ``anthropic-beta``): each adapter of that dialect adds them to its call.
    dialect_headers: Mapping[str, str] = field(default_factory=dict)


NO_OPTIONS = RequestOptions()


@dataclass(slots=True)
class ModelRequest:
    """One call on a model, not yet admitted or validated."""

    operation: Operation
    # The JSON object as the client sent it (in OpenAI's shape): validated,
    # never rebuilt, and forwarded with unknown fields intact (ADR 0002).
    body: JSONDict
    # Filled in by every stage; handed to telemetry after the last byte.
    record: RequestRecord
    # The ``Authorization`` header's value (``Bearer <key>``), or None.
    authorization: str | None
    options: RequestOptions = NO_OPTIONS
    # The edge built ``body`` from a request it validated against its own
    # dialect's schema, bounds as strict as chat's (Anthropic, Responses),
    # and forwards nothing the client wrote unchecked: the chat schema holds
    # by construction, so the validate stage does not check it twice.
    checked: bool = False

    @property
    def model(self) -> str | None:
        """The model the body names, if it names one (checked by validation)."""
        model = self.body.get("model")
        return model if isinstance(model, str) else None
