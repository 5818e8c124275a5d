"""The validate stage: the body against its operation's schema, then the model.

Strict types as OpenAI's (``"1"`` is not an integer), unknown fields allowed
and forwarded (ADR 0002). A schema violation is a 400 naming the parameter;
an unknown model a 404. A request with Anthropic's own tools (server
tools, ADR 0027) is routed to the model's Anthropic deployments alone; for
a model with none, a web search is run by the gateway where it has a web
search backend (``web_search.py``, ADR 0029), and any other such tool is a
400. OpenAI's hosted web search (which a model with no deployment that runs
it, an Anthropic one or a Responses API one, otherwise goes without) and
chat's ``web_search_options`` (where no deployment of the model takes them)
are run by the gateway the same way.
A legacy completion that asks what only an upstream serving /v1/completions
can do (a ``suffix``, several prompts) is routed to such deployments alone.
A body an edge built from a request it validated in its own dialect
(``ModelRequest.checked``) is not checked twice: the edge's schema holds
its fields to chat's bounds (tests/dialects check that every translated
body validates).
It runs after admission, so a caller without a valid key learns nothing
about the request's shape (401 before 400, as OpenAI answers).
"""

from __future__ import annotations

import time

from interlock.admission.keys import Principal
from interlock.chat_markers import (
    ANTHROPIC_TOOLS,
    HOSTED_WEB_SEARCH,
    LEGACY_COMPLETION,
    cached_search,
)
from interlock.errors import InvalidRequest, NotFound
from interlock.pipeline.anthropic_client_tools import as_functions
from interlock.pipeline.attempt import anthropic_tools_refused, native_completion_refused
from interlock.pipeline.call import ModelCall
from interlock.pipeline.request import JSONDict, ModelRequest, Operation
from interlock.pipeline.schemas import (
    ChatCompletionRequest,
    EmbeddingRequest,
    InferRequest,
    ModerationRequest,
    validate_body,
)
from interlock.pipeline.web_search import SearchRun, WebSearch, search_tools_only
from interlock.routing.base import RouteContext
from interlock.routing.router import ModelGroup, Router

__all__ = ["Validation"]


class Validation:
    def __init__(self, router: Router, web_search: WebSearch | None = None):
        self.router = router
        self.web_search = web_search

    def check(self, request: ModelRequest, principal: Principal) -> ModelCall:
        record = request.record
        with record.stage("validation"):
            body = request.body
            include_usage = False
            version: str | None = None
            if request.operation is Operation.CHAT and request.checked:
                model = body["model"]
                record.stream = body.get("stream") is True
                wished = body.get("stream_options")
                include_usage = wished is not None and wished.get("include_usage") is True
            elif request.operation is Operation.CHAT:
                chat = validate_body(ChatCompletionRequest, body)
                model = chat.model
                record.stream = bool(chat.stream)
                options = chat.stream_options
                include_usage = bool(options is not None and options.include_usage)
            elif request.operation is Operation.INFER:
                infer = validate_body(InferRequest, body)
                model, version = infer.model, infer.version
            elif request.operation is Operation.MODERATIONS:
                model = validate_body(ModerationRequest, body).model
            else:
                model = validate_body(EmbeddingRequest, body).model
            group = self.router.group(model)
            if version is not None and not group.has_version(version):
                raise NotFound(
                    f"The model `{model}` has no version `{version}`.",
                    param="version",
                    code="version_not_found",
                )
            # Only a model this gateway serves names the request: the name is a
            # metrics label and a ledger column, and a client must not be able
            # to mint new ones (each unknown name was a new time series).
            record.model = model
        user = body.get("user")
        caller = user if isinstance(user, str) and user else principal.name
        anthropic_tools = request.checked and bool(body.get(ANTHROPIC_TOOLS))
        # Anthropic's tools go to an Anthropic deployment while one is up;
        # with none, or none up, the gateway serves what it can elsewhere.
        natively = anthropic_tools and self.router.anthropic_up(group)
        as_sent = body
        if anthropic_tools and not natively:
            body = _client_tools_as_functions(body)
            anthropic_tools = bool(body.get(ANTHROPIC_TOOLS))
        searching: SearchRun | None = None
        if self.web_search is not None:
            body, searching = self._searched(self.web_search, request, group, body)
            anthropic_tools = anthropic_tools and searching is None
        if (
            anthropic_tools
            and not natively
            and any(p.takes_anthropic_tools for p in group.providers)
        ):
            body = as_sent  # only Anthropic runs them, and it is down: the router says so (503)
        elif anthropic_tools and not natively:
            why = f"model `{group.name}` has no Anthropic deployment"
            if search_tools_only(body[ANTHROPIC_TOOLS]):
                why += (
                    " and this gateway runs no web search for models (it would with a "
                    "searxng, brave or google backend under `search.backends` and "
                    "`search.web_search_tool` on)"
                )
            raise anthropic_tools_refused(body[ANTHROPIC_TOOLS], why)
        completion = body.get(LEGACY_COMPLETION)
        needed = completion.get("needs") if completion is not None else None
        if needed is not None and not any(p.serves_completions for p in group.providers):
            raise native_completion_refused(needed, f"model `{group.name}` has no such deployment")
        route = RouteContext(
            caller=caller,
            pin=request.options.pin,
            now=time.time(),
            version=version,
            anthropic_tools=anthropic_tools,
            native_completion=needed is not None,
        )
        return ModelCall(
            request, principal, group, route, body, include_usage, web_search=searching
        )

    def _searched(
        self, web_search: WebSearch, request: ModelRequest, group: ModelGroup, body: JSONDict
    ) -> tuple[JSONDict, SearchRun | None]:
        """The body, and the search the gateway runs for it where it asks for
        a web search that none of the group's deployments can run."""
        markers = request.checked and (
            (ANTHROPIC_TOOLS in body and not self.router.anthropic_up(group))
            or (
                HOSTED_WEB_SEARCH in body
                and not cached_search(body[HOSTED_WEB_SEARCH])  # the gateway's are live
                and not self.router.hosted_search_up(group)
            )
        )
        options = body.get("web_search_options") is not None and not any(
            p.takes_web_search_options for p in group.providers
        )
        if not (markers or options):
            return body, None
        planned = web_search.plan(body, markers=markers)
        return planned if planned is not None else (body, None)


def _client_tools_as_functions(body: JSONDict) -> JSONDict:
    """``body`` with Anthropic's client tools offered as functions, for a
    model with no Anthropic deployment (``anthropic_client_tools.py``)."""
    functions, left = as_functions(body[ANTHROPIC_TOOLS])
    if not functions:
        return body
    tools = list(body.get("tools") or ())
    named = {(t.get("function") or {}).get("name") for t in tools if isinstance(t, dict)}
    for function in functions:
        name = function["function"]["name"]
        if name in named:
            raise InvalidRequest(
                f"Two tools are named `{name}`: name each tool once.",
                param="tools",
                code="invalid_tool",
            )
        named.add(name)
    changed = {k: v for k, v in body.items() if k != ANTHROPIC_TOOLS}
    changed["tools"] = [*tools, *functions]
    if left:
        changed[ANTHROPIC_TOOLS] = left
    return changed
