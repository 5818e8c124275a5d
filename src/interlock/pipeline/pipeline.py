"""The one path every model request takes, whichever edge it came in by:

    admit -> validate -> guard -> cache -> route -> attempt

Tensor inference (``Operation.INFER``, KServe v2 shapes) takes the same
path past the cache: its answers are not cached.

An edge (``interlock.api``) reads the HTTP request into a ``ModelRequest``
and hands it to ``Pipeline.run``; it gets back a value, never an HTTP
object: the answer as a JSON object, or a ``ChatStream`` to write out. Each
stage is its own module and times itself into the request's record.
"""

from __future__ import annotations

from collections.abc import Sequence

from interlock.pipeline.admit import AdmissionStage, Admitted
from interlock.pipeline.cache import CacheStage
from interlock.pipeline.call import ModelCall
from interlock.pipeline.guard import GuardrailsStage
from interlock.pipeline.pricing import Price
from interlock.pipeline.request import JSONDict, ModelRequest, Operation
from interlock.pipeline.route import RouteStage
from interlock.pipeline.stream import ChatStream, StreamSource
from interlock.pipeline.validate import Validation
from interlock.routing.router import ModelGroup

__all__ = ["ModelGroup", "Pipeline"]


class Pipeline:
    def __init__(
        self,
        admission: AdmissionStage,
        validation: Validation,
        guardrails: GuardrailsStage,
        cache: CacheStage,
        route: RouteStage,
    ):
        self.admission = admission
        self.validation = validation
        self.guardrails = guardrails
        self.cache = cache
        self.route = route

    async def run(
        self, request: ModelRequest, admitted: Admitted | None = None
    ) -> JSONDict | ChatStream:
        """The answer, or for a streamed chat the stream, opened. Errors raise
        ``InterlockError``s; a stream's errors after it opened come from
        reading it. ``admitted``: the request was admitted already (a service
        that admits at its own door and calls the model later, such as
        search); this call then owns its release."""
        self.unalias(request)
        if admitted is None:
            admitted = await self.admission.admit(request)
        try:
            call = self.validation.check(request, admitted.principal)
            await self.guardrails.guard(call)
            if request.operation is Operation.EMBEDDINGS:
                answer = await self._embed(call)
            elif request.operation is Operation.INFER:  # tensors: never cached
                answer = await self.route.unary(call, Operation.INFER, call.body)
                call.record.units = _rows(call.body)
            elif request.operation is Operation.MODERATIONS:  # a safety check: never cached
                answer = await self.route.unary(call, Operation.MODERATIONS, call.body)
            elif not call.record.stream:
                answer = await self._complete(call)
            else:  # the stream holds the in-flight slot until it closes
                settings = call.group.settings
                stream = ChatStream(
                    StreamSource(call, self.cache, self.route),
                    heartbeat_after_s=settings.heartbeat_after_s,
                    heartbeat_interval_s=settings.heartbeat_interval_s,
                    release=admitted.release,
                )
                await stream.open()
                return stream
        except BaseException:
            admitted.release()
            raise
        admitted.release()
        return answer

    def unalias(self, request: ModelRequest) -> None:
        """A model named by an alias is that model from admission on: its
        name in the body (``run`` does it; a caller that admits first, too)."""
        aliases = self.route.router.aliases
        if aliases:
            named = request.body.get("model")
            if isinstance(named, str) and named in aliases:
                request.body["model"] = aliases[named]

    @property
    def model_groups(self) -> Sequence[ModelGroup]:
        """The public model names this gateway serves, as the router knows them."""
        return self.route.router.groups

    def model_group(self, name: str) -> ModelGroup:
        """One of ``model_groups``, by its name or an alias; raises ``ModelNotFound``."""
        return self.route.router.group(name)

    def canonical(self, name: str) -> str:
        """``name``, or the model's own name where it is an alias."""
        return self.route.router.canonical(name)

    def price(self, deployment_id: str) -> Price | None:
        """The price a deployment's answers are charged at; None: unknown."""
        return self.route.attempts.price(deployment_id)

    async def _complete(self, call: ModelCall) -> JSONDict:
        result = await self.cache.complete(call, lambda: self._chat_upstream(call))
        GuardrailsStage.filter_completion(call.guard, result)
        record = call.record
        choices = result.get("choices") or [{}]
        record.finish_reason = choices[0].get("finish_reason")
        record.response_model = result.get("model")
        return result

    async def _chat_upstream(self, call: ModelCall) -> JSONDict:
        search = call.web_search
        if search is not None:  # several rounds, the gateway searching between them
            return await search.complete(
                call.body, lambda body: self.route.unary(call, Operation.CHAT, body), call.record
            )
        return await self.route.unary(call, Operation.CHAT, call.body)

    async def _embed(self, call: ModelCall) -> JSONDict:
        return await self.cache.embed(call, lambda body: self._embed_upstream(call, body))

    async def _embed_upstream(self, call: ModelCall, body: JSONDict) -> JSONDict:
        """``body``: the call's, or with only the inputs the cache lacks."""
        return await self.route.unary(call, Operation.EMBEDDINGS, body)


def _rows(body: JSONDict) -> int:
    """What an answered tensor request counts in the ledger: the rows (first
    dimension) of its first input; validation guaranteed the shape."""
    shape = body["inputs"][0]["shape"]
    return int(shape[0]) if shape else 1
