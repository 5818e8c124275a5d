"""What ``/openapi.json`` says about each route of the table: a summary, a
tag, who may call it, the pydantic model its body is validated with, and
what it answers. ``tests/api/test_openapi.py`` fails for a route of the
table missing here, so no route goes undocumented.

Request models are loaded when the document is first built, not at import:
the dialects' schema modules are imported then, and a dialect not installed
yet is documented without a request schema.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

__all__ = ["ROUTES", "TAGS", "Auth", "RouteDoc", "lazy_model"]

# Who may call a route: an API key, the admin key, anyone, anyone but a key
# counts when given (search), or an API key also as Anthropic's ``x-api-key``.
Auth = Literal["key", "admin", "none", "optional", "anthropic"]
ModelLoader = Callable[[], type[BaseModel] | None]

JSON = ("application/json",)
JSON_OR_SSE = ("application/json", "text/event-stream")
SSE = ("text/event-stream",)
HTML = ("text/html",)
JS = ("text/javascript",)
CSS = ("text/css",)
JSONL = ("application/x-jsonl",)


@dataclass(frozen=True, slots=True)
class RouteDoc:
    summary: str
    tag: str
    auth: Auth = "key"
    request: ModelLoader | None = None  # the body's model; None: no JSON body
    response: str = "OK."
    status: str = "200"
    media: tuple[str, ...] = JSON


def lazy_model(module: str, *names: str) -> ModelLoader:
    """The first of ``names`` in ``module`` that is a pydantic model, or None
    when the module (a dialect another change brings) cannot be imported."""

    def load() -> type[BaseModel] | None:
        try:
            found = importlib.import_module(module)
        except ImportError:
            return None
        for name in names:
            model = getattr(found, name, None)
            if isinstance(model, type) and issubclass(model, BaseModel):
                return model
        return None

    return load


_SCHEMAS = "interlock.pipeline.schemas"
_ANTHROPIC = "interlock.dialects.anthropic.schemas"
_RESPONSES = "interlock.dialects.responses.schemas"
# Creating a response and counting its input tokens take the same body.
_RESPONSES_REQUEST = lazy_model(
    _RESPONSES, "ResponsesRequest", "ResponseRequest", "CreateResponseRequest"
)

TAGS = {
    "inference": "Model requests: every one takes the same pipeline (keys, limits, "
    "guardrails, cache, routing, failover, usage ledger).",
    "models": "The models this gateway serves.",
    "files": "OpenAI's Files API, for batch input and output.",
    "batches": "OpenAI's Batches API, async jobs and Anthropic's Message Batches.",
    "search": "The search service and its page.",
    "health": "Probes and metrics.",
    "admin": "The admin API: needs the admin key (server.admin_key).",
    "docs": "This document and the page that renders it.",
    "console": "The operator's web console: pages behind a login with the admin key.",
}

_STREAMS = "A JSON answer, or server-sent events when the body has `stream: true`."

# (path or template, method) -> what the document says about it.
ROUTES: dict[tuple[str, str], RouteDoc] = {
    ("/v1/chat/completions", "POST"): RouteDoc(
        "Create a chat completion",
        "inference",
        request=lazy_model(_SCHEMAS, "ChatCompletionRequest"),
        response=_STREAMS + " With `async: true`, 202 and a job.",
        media=JSON_OR_SSE,
    ),
    ("/v1/chat/completions", "GET"): RouteDoc(
        "List the key's stored chat completions (`store: true`; `model`, `metadata[key]`, "
        "`after`, `limit`, `order`)",
        "inference",
    ),
    ("/v1/chat/completions/{completion_id}", "GET"): RouteDoc(
        "Retrieve a stored chat completion, or its request's messages (`.../messages`)",
        "inference",
    ),
    ("/v1/chat/completions/{completion_id}", "POST"): RouteDoc(
        "Update a stored chat completion's `metadata`", "inference"
    ),
    ("/v1/chat/completions/{completion_id}", "DELETE"): RouteDoc(
        "Delete a stored chat completion", "inference"
    ),
    ("/v1/completions", "POST"): RouteDoc(
        "Create a completion (legacy), answered by a chat model",
        "inference",
        request=lazy_model("interlock.dialects.completions", "CompletionRequest"),
        response=_STREAMS,
        media=JSON_OR_SSE,
    ),
    ("/v1/embeddings", "POST"): RouteDoc(
        "Create embeddings",
        "inference",
        request=lazy_model(_SCHEMAS, "EmbeddingRequest"),
        response="The vectors. With `async: true`, 202 and a job.",
    ),
    ("/v1/moderations", "POST"): RouteDoc(
        "Classify text (and images) for harmful content (`model` defaults to "
        "`omni-moderation-latest`)",
        "inference",
        request=lazy_model(_SCHEMAS, "ModerationRequest"),
        response="The moderation results, one per input.",
    ),
    ("/v1/infer", "POST"): RouteDoc(
        "Run a tensor model (KServe v2 inference request, the model named in the body)",
        "inference",
        request=lazy_model(_SCHEMAS, "InferRequest"),
        response="The output tensors.",
    ),
    ("/v1/messages", "POST"): RouteDoc(
        "Create a message (Anthropic Messages API)",
        "inference",
        "anthropic",
        lazy_model(_ANTHROPIC, "MessagesRequest", "MessageRequest", "CreateMessageRequest"),
        "An Anthropic message, or its events when the body has `stream: true`.",
        media=JSON_OR_SSE,
    ),
    ("/v1/messages/count_tokens", "POST"): RouteDoc(
        "Count a message request's input tokens (Anthropic Messages API)",
        "inference",
        "anthropic",
        lazy_model(
            _ANTHROPIC, "CountTokensRequest", "TokenCountRequest", "MessageCountTokensRequest"
        ),
        "`{input_tokens}`.",
    ),
    ("/v1/responses", "POST"): RouteDoc(
        "Create a response (OpenAI Responses API)",
        "inference",
        request=_RESPONSES_REQUEST,
        response="A response object, or its events when the body has `stream: true`.",
        media=JSON_OR_SSE,
    ),
    ("/v1/responses/input_tokens", "POST"): RouteDoc(
        "Count a response request's input tokens (OpenAI Responses API)",
        "inference",
        request=_RESPONSES_REQUEST,
        response="`{object: response.input_tokens, input_tokens}`.",
    ),
    ("/v1/responses/compact", "POST"): RouteDoc(
        "Compact a conversation: its user messages and one `compaction` item to send back "
        "(OpenAI Responses API)",
        "inference",
        request=lazy_model(_RESPONSES, "CompactRequest"),
        response="`{object: response.compaction, output, usage}`.",
    ),
    ("/v1/responses/{response_id}", "POST"): RouteDoc(
        "Cancel a background response (`.../cancel`)",
        "inference",
    ),
    ("/v1/responses/{response_id}", "GET"): RouteDoc(
        "Retrieve a stored response (the key that created it only); a streamed background "
        "one's events again with `stream=true` and `starting_after`",
        "inference",
    ),
    ("/v1/responses/{response_id}", "DELETE"): RouteDoc(
        "Delete a stored response (the key that created it only)", "inference"
    ),
    ("/v1/conversations", "POST"): RouteDoc(
        "Create a conversation for the Responses API (`items`, up to 20, and `metadata`)",
        "inference",
        request=lazy_model(_RESPONSES, "ConversationCreate"),
        response="The conversation.",
    ),
    ("/v1/conversations/{conversation_id}", "GET"): RouteDoc(
        "Retrieve a conversation, its items (`.../items`, `limit`, `after`, `order`) "
        "or one item (`.../items/{item_id}`)",
        "inference",
    ),
    ("/v1/conversations/{conversation_id}", "POST"): RouteDoc(
        "Update a conversation's `metadata`, or add up to 20 items (`.../items`)",
        "inference",
    ),
    ("/v1/conversations/{conversation_id}", "DELETE"): RouteDoc(
        "Delete a conversation with its items, or one item (`.../items/{item_id}`)",
        "inference",
    ),
    ("/v1/models", "GET"): RouteDoc(
        "List the models this key may use (Anthropic's shape when `anthropic-version` is sent)",
        "models",
        "anthropic",
    ),
    ("/v1/models/{model}", "GET"): RouteDoc(
        "Retrieve a model (its id may hold slashes; Anthropic's shape with `anthropic-version`)",
        "models",
        "anthropic",
    ),
    ("/v1/files", "GET"): RouteDoc("List this key's files", "files"),
    ("/v1/files", "POST"): RouteDoc(
        "Upload a file (multipart/form-data: `file`, `purpose`)", "files", response="The file."
    ),
    ("/v1/files/{file_id}", "GET"): RouteDoc(
        "Retrieve a file, or its bytes at `/v1/files/{file_id}/content`", "files"
    ),
    ("/v1/files/{file_id}", "DELETE"): RouteDoc("Delete a file", "files"),
    ("/v1/batches", "GET"): RouteDoc("List this key's batches", "batches"),
    ("/v1/batches", "POST"): RouteDoc("Create a batch from an uploaded file", "batches"),
    ("/v1/batches/{batch_id}", "GET"): RouteDoc("Retrieve a batch", "batches"),
    ("/v1/batches/{batch_id}", "POST"): RouteDoc(
        "Cancel a batch (`/v1/batches/{batch_id}/cancel`)", "batches"
    ),
    ("/v1/messages/batches", "GET"): RouteDoc(
        "List this key's message batches, newest first (`limit`, `after_id`, `before_id`)",
        "batches",
        "anthropic",
    ),
    ("/v1/messages/batches", "POST"): RouteDoc(
        "Create a message batch (Anthropic Message Batches API): "
        "`{requests: [{custom_id, params}]}`",
        "batches",
        "anthropic",
        response="The message batch.",
    ),
    ("/v1/messages/batches/{message_batch_id}", "GET"): RouteDoc(
        "Retrieve a message batch, or its results as JSON lines at "
        "`.../{message_batch_id}/results` once it has ended",
        "batches",
        "anthropic",
        media=(*JSON, *JSONL),
    ),
    ("/v1/messages/batches/{message_batch_id}", "POST"): RouteDoc(
        "Cancel a message batch (`.../{message_batch_id}/cancel`)", "batches", "anthropic"
    ),
    ("/v1/messages/batches/{message_batch_id}", "DELETE"): RouteDoc(
        "Delete a message batch that has ended, with its results", "batches", "anthropic"
    ),
    ("/v1/batch", "POST"): RouteDoc(
        "Submit an async job of requests", "batches", response="Accepted: the job.", status="202"
    ),
    ("/v1/jobs/{job_id}", "GET"): RouteDoc("Retrieve an async job and its results", "batches"),
    ("/v1/jobs/{job_id}", "POST"): RouteDoc("Cancel an async job (`.../cancel`)", "batches"),
    ("/health/live", "GET"): RouteDoc("Liveness probe", "health", "none"),
    ("/health/ready", "GET"): RouteDoc(
        "Readiness probe", "health", "none", response="Ready (503 when not)."
    ),
    ("/health/deployments", "GET"): RouteDoc(
        "Each deployment's health (the admin key's, unless server.public_deployment_health)",
        "health",
        "admin",
    ),
    ("/metrics", "GET"): RouteDoc("Prometheus metrics", "health", "none", media=("text/plain",)),
    ("/admin/requests/slow", "GET"): RouteDoc("The slowest recent requests", "admin", "admin"),
    ("/admin/requests/failed", "GET"): RouteDoc(
        "The most recent failed requests (status >= 400)", "admin", "admin"
    ),
    ("/admin/requests/{request_id}", "GET"): RouteDoc(
        "One recent failed or slow request, by its x-request-id", "admin", "admin"
    ),
    ("/admin/keys", "GET"): RouteDoc("List API keys (never the keys themselves)", "admin", "admin"),
    ("/admin/keys", "POST"): RouteDoc(
        "Create an API key",
        "admin",
        "admin",
        lazy_model("interlock.api.admin", "NewKey"),
        "The key, shown this once.",
        "201",
    ),
    ("/admin/keys/{id}", "GET"): RouteDoc(
        "Show an API key, its limits as admission applies them, and its requests in flight",
        "admin",
        "admin",
    ),
    ("/admin/keys/{id}", "POST"): RouteDoc(
        "Revoke or rotate an API key (`/admin/keys/{id}/revoke|rotate`)", "admin", "admin"
    ),
    ("/admin/keys/{id}", "PATCH"): RouteDoc(
        "Change an API key's settings (those given; every instance applies them)",
        "admin",
        "admin",
        lazy_model("interlock.api.admin", "KeyChanges"),
        "The key (never the key itself).",
    ),
    ("/admin/usage", "GET"): RouteDoc("Usage from the ledger, grouped", "admin", "admin"),
    ("/admin/cache", "DELETE"): RouteDoc(
        "Invalidate cached answers by namespace and/or model", "admin", "admin"
    ),
    ("/admin/chaos", "GET"): RouteDoc("The chaos settings", "admin", "admin"),
    ("/admin/chaos", "PUT"): RouteDoc(
        "Replace the chaos settings",
        "admin",
        "admin",
        lazy_model("interlock.config", "ChaosConfig"),
    ),
    ("/admin/models", "GET"): RouteDoc("List the registry's model versions", "admin", "admin"),
    ("/admin/models", "POST"): RouteDoc(
        "Register a model version",
        "admin",
        "admin",
        lazy_model("interlock.registry.records", "VersionSpec"),
        "The version.",
        "201",
    ),
    ("/admin/models/{model}", "GET"): RouteDoc(
        "A model's versions, or one (`.../versions/{version}`)", "admin", "admin"
    ),
    ("/admin/models/{model}", "POST"): RouteDoc(
        "Canary, promote (`.../versions/{version}/canary|promote`) or roll back "
        "(`.../rollback`) a model",
        "admin",
        "admin",
    ),
    ("/admin/models/{model}", "PATCH"): RouteDoc(
        "Change a version's facts (`.../versions/{version}`)",
        "admin",
        "admin",
        lazy_model("interlock.registry.records", "VersionPatch"),
    ),
    ("/admin/models/{model}", "DELETE"): RouteDoc(
        "Remove a version that is neither live nor canary", "admin", "admin"
    ),
    ("/admin/audit", "GET"): RouteDoc(
        "Changes made through the admin API, newest first "
        "(`?area=registry|keys|chaos`, `?target=`, `?limit=`)",
        "admin",
        "admin",
    ),
    ("/api/v1/search", "POST"): RouteDoc(
        "Start a search", "search", "optional", response="Accepted: the task.", status="202"
    ),
    ("/api/v1/search/status/{task_id}", "GET"): RouteDoc(
        "A search task as it stands (its id is the capability)", "search", "none"
    ),
    ("/api/v1/search/stream/{task_id}", "GET"): RouteDoc(
        "A search task's events (resumes after `Last-Event-ID`)", "search", "none", media=SSE
    ),
    ("/search", "GET"): RouteDoc("The search page", "search", "none", media=HTML),
    ("/search/page.js", "GET"): RouteDoc("The search page's script", "search", "none", media=JS),
    ("/search/page.css", "GET"): RouteDoc(
        "The search page's stylesheet", "search", "none", media=CSS
    ),
    ("/openapi.json", "GET"): RouteDoc("This document (OpenAPI 3.1)", "docs", "none"),
    ("/console", "GET"): RouteDoc(
        "The console's overview (redirects to its login form without a session)",
        "console",
        "none",
        media=HTML,
    ),
    ("/console/{page}", "GET"): RouteDoc(
        "A console page, its live figures, its CSV export or its static files",
        "console",
        "none",
        media=HTML,
    ),
    ("/console/{page}", "POST"): RouteDoc(
        "A console form: the login, or a change (needs the session and its CSRF token)",
        "console",
        "none",
        response="A redirect (303), or the page answering the form.",
        media=HTML,
    ),
    ("/docs", "GET"): RouteDoc("This document, rendered by Swagger UI", "docs", "none", media=HTML),
    ("/docs/swagger-ui.css", "GET"): RouteDoc("Swagger UI's stylesheet", "docs", "none", media=CSS),
    ("/docs/swagger-ui-bundle.js", "GET"): RouteDoc("Swagger UI", "docs", "none", media=JS),
    ("/docs/init.js", "GET"): RouteDoc(
        "The script that starts Swagger UI on this document", "docs", "none", media=JS
    ),
}
