"""The provider adapter interface.

Adapters translate between the OpenAI wire shape and one upstream's wire
shape. They do no policy: no retries, no fallbacks, no timeouts of their own
beyond the pooled client they are given. Failures are raised as
``interlock.errors.ProviderError`` subclasses.

Shapes crossing this interface are OpenAI's:

- ``chat`` returns a ``chat.completion`` object as a dict;
- ``stream_chat`` yields each ``chat.completion.chunk`` as JSON *bytes*, so an
  OpenAI-compatible upstream's chunks are forwarded without re-serialising;
- ``embed`` returns an embeddings ``list`` object with vectors as float lists
  (the HTTP edge applies ``encoding_format``).

Tensor models speak the KServe v2 / Open Inference Protocol instead
(``interlock.pipeline.schemas.InferRequest``):

- ``infer`` takes a v2 inference request (``inputs``: name, shape, datatype,
  row-major ``data``; optional ``outputs``, ``parameters``, ``id``) and
  returns a v2 inference response (``model_name``, ``model_version``, ``id``,
  ``outputs`` in the same tensor shape);
- ``model_metadata`` returns v2 model metadata (``name``, ``versions``,
  ``platform``, ``inputs``/``outputs`` as name, datatype, shape with -1 for
  a dynamic dimension); ``model_ready`` whether it can serve now.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from interlock.errors import UnsupportedOperation

__all__ = ["CallContext", "Provider"]

JSONDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallContext:
    """What an adapter may know about the call besides the request body."""

    request_id: str
    public_model: str
    # W3C trace context for the upstream call (empty when tracing is off).
    trace_headers: Mapping[str, str] = field(default_factory=dict)
    # Where the chaos wrapper notes faults it injected that raise nothing
    # (added latency), so the request's log line shows them.
    injected: list[str] = field(default_factory=list)
    # The API the client spoke; an edge of another dialect may have added
    # fields for its own upstreams that others must not receive.
    dialect: str = "openai"
    # That dialect's request headers for upstreams that speak it (``RequestOptions``).
    dialect_headers: Mapping[str, str] = field(default_factory=dict)

    def upstream_headers(self) -> dict[str, str]:
        return {"x-request-id": self.request_id, **self.trace_headers}


class Provider(ABC):
    """One deployment's adapter. ``deployment_id`` names it in errors."""

    deployment_id: str
    # Shown as ``owned_by`` in /v1/models; the simulator says so.
    owned_by: str = "interlock"
    # ``gen_ai.provider.name`` in metrics and traces.
    provider_name: str = "openai"
    # True when the adapter itself ends a unary call after the deployment's
    # ``total_s`` (the HTTP client's own deadline), so the pipeline need not
    # wrap every call in an ``asyncio.timeout`` of its own.
    bounds_call_time: bool = False
    # True when the upstream takes chat's custom (freeform) tools as they are;
    # otherwise the pipeline sends them as functions (``pipeline/custom_tools.py``).
    takes_custom_tools: bool = False
    # True when the upstream applies Anthropic's ``context_management`` edits
    # itself; otherwise the pipeline applies them (``pipeline/context_edits.py``).
    takes_context_management: bool = False
    # True when the upstream loads deferred tools itself (Anthropic's tool search:
    # ``defer_loading``, ``tool_reference`` blocks); otherwise the pipeline offers the
    # tools loaded so far (``pipeline/deferred_tools.py``).
    takes_deferred_tools: bool = False
    # False when the upstream cannot be told ``parallel_tool_calls: false``;
    # the pipeline then keeps each turn's first call alone (``pipeline/single_call.py``).
    limits_parallel_calls: bool = True
    # True when the upstream runs Anthropic's own tool types (server tools
    # such as ``web_search_20250305``); a request with one is refused elsewhere.
    takes_anthropic_tools: bool = False
    # True when the upstream runs chat's ``web_search_options`` itself
    # (Anthropic; OpenAI's search models, ``web_search: native``); elsewhere
    # the gateway searches for the model where it has a web backend
    # (``pipeline/web_search.py``), else the adapter forwards or refuses it.
    takes_web_search_options: bool = False
    # True when the upstream runs the Responses API's hosted web search itself
    # (the edge's ``HOSTED_WEB_SEARCH`` marker): Anthropic, as its own server
    # tool; OpenAI's Responses API (``api: responses``, ``web_search: native``).
    # For a model with none up, the gateway searches where it has a web backend.
    runs_hosted_web_search: bool = False
    # True when the upstream serves OpenAI's legacy completions itself: a chat
    # body with the ``LEGACY_COMPLETION`` marker goes to its /completions as a
    # prompt (``providers/openai_completions.py``); every other upstream is
    # asked through chat, the marker taken out (``pipeline/attempt.py``).
    serves_completions: bool = False

    @abstractmethod
    async def chat(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        """One non-streaming chat completion."""

    @abstractmethod
    def stream_chat(self, body: JSONDict, ctx: CallContext) -> AsyncIterator[bytes]:
        """Stream ``chat.completion.chunk`` JSON objects as bytes."""

    async def embed(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        raise UnsupportedOperation(
            f"The model `{ctx.public_model}` does not support embeddings.", param="model"
        )

    async def moderate(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        raise UnsupportedOperation(
            f"The model `{ctx.public_model}` does not classify content (/v1/moderations).",
            param="model",
        )

    async def infer(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        raise UnsupportedOperation(
            f"The model `{ctx.public_model}` does not take tensor inference (/v1/infer).",
            param="model",
        )

    async def model_metadata(self, ctx: CallContext) -> JSONDict:
        raise UnsupportedOperation(
            f"The model `{ctx.public_model}` is not a tensor model.", param="model"
        )

    async def model_ready(self, ctx: CallContext) -> bool:
        return True

    async def start(self) -> None:  # noqa: B027 - optional hook, most adapters need it
        """Open pooled connections; called once in the app's lifespan."""

    async def aclose(self) -> None:  # noqa: B027
        """Release pooled connections."""
