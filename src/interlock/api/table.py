"""The route table: path -> method -> handler, in one place."""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import Response

from interlock.api.admin import (
    audit,
    create_key,
    get_chaos,
    get_key,
    invalidate_cache,
    key_action,
    list_keys,
    put_chaos,
    update_key,
    usage,
)
from interlock.api.admin_models import models_root, models_route
from interlock.api.admin_requests import failed_requests, kept_request, slow_requests
from interlock.api.batches import batch_route, batches_root, create_job, job_route
from interlock.api.chat import chat_completions
from interlock.api.chat_store import list_completions, stored_completion_route
from interlock.api.completions import completions
from interlock.api.conversations import conversation_route, create_conversation
from interlock.api.docs_page import docs_file
from interlock.api.embeddings import embeddings
from interlock.api.errors import error_response
from interlock.api.files import file_route, files_root
from interlock.api.health import deployments, live, metrics, ready
from interlock.api.infer import infer
from interlock.api.message_batches import message_batch_route, message_batches_root
from interlock.api.messages import anthropic_error, count_tokens, messages
from interlock.api.models import list_models, retrieve_model
from interlock.api.moderations import moderations
from interlock.api.openapi import openapi_json
from interlock.api.responses import count_input_tokens, create_response, response_route
from interlock.api.responses_compact import compact_response
from interlock.api.search import search_page, search_status, search_stream, start_search
from interlock.api.wire import Handler
from interlock.console.http import console
from interlock.errors import InterlockError
from interlock.redaction import Redactor

__all__ = ["ErrorShape", "error_shape", "error_shapes", "exact_routes", "prefix_routes"]

# An error as a response, in a dialect's shape.
ErrorShape = Callable[[InterlockError, Redactor], Response]

# path -> method -> handler. Exact paths are one dict lookup per request.
exact_routes: dict[str, dict[str, Handler]] = {
    "/v1/chat/completions": {"POST": chat_completions, "GET": list_completions},
    "/v1/embeddings": {"POST": embeddings},
    "/v1/moderations": {"POST": moderations},
    "/v1/infer": {"POST": infer},
    "/v1/messages": {"POST": messages},
    "/v1/messages/count_tokens": {"POST": count_tokens},
    "/v1/messages/batches": {"GET": message_batches_root, "POST": message_batches_root},
    "/v1/models": {"GET": list_models},
    "/v1/files": {"GET": files_root, "POST": files_root},
    "/v1/batches": {"GET": batches_root, "POST": batches_root},
    "/v1/batch": {"POST": create_job},
    "/health/live": {"GET": live},
    "/health/ready": {"GET": ready},
    "/health/deployments": {"GET": deployments},
    "/metrics": {"GET": metrics},
    "/admin/requests/slow": {"GET": slow_requests},
    "/admin/requests/failed": {"GET": failed_requests},
    "/admin/keys": {"GET": list_keys, "POST": create_key},
    "/admin/usage": {"GET": usage},
    "/admin/cache": {"DELETE": invalidate_cache},
    "/admin/chaos": {"GET": get_chaos, "PUT": put_chaos},
    "/admin/models": {"GET": models_root, "POST": models_root},
    "/admin/audit": {"GET": audit},
    "/api/v1/search": {"POST": start_search},
    "/v1/responses": {"POST": create_response},
    "/v1/responses/input_tokens": {"POST": count_input_tokens},
    "/v1/responses/compact": {"POST": compact_response},
    "/v1/conversations": {"POST": create_conversation},
    "/search": {"GET": search_page},
    "/search/page.js": {"GET": search_page},
    "/search/page.css": {"GET": search_page},
    "/v1/completions": {"POST": completions},
    "/openapi.json": {"GET": openapi_json},
    "/console": {"GET": console},
    "/docs": {"GET": docs_file},
    "/docs/init.js": {"GET": docs_file},
    "/docs/swagger-ui.css": {"GET": docs_file},
    "/docs/swagger-ui-bundle.js": {"GET": docs_file},
}
# Model ids may contain slashes (``Qwen/Qwen2.5-0.5B-Instruct``).
prefix_routes: list[tuple[str, str, dict[str, Handler]]] = [
    ("/v1/models/", "/v1/models/{model}", {"GET": retrieve_model}),
    (
        "/v1/chat/completions/",
        "/v1/chat/completions/{completion_id}",
        {m: stored_completion_route for m in ("GET", "POST", "DELETE")},
    ),
    ("/v1/files/", "/v1/files/{file_id}", {"GET": file_route, "DELETE": file_route}),
    ("/v1/batches/", "/v1/batches/{batch_id}", {"GET": batch_route, "POST": batch_route}),
    ("/v1/jobs/", "/v1/jobs/{job_id}", {"GET": job_route, "POST": job_route}),
    (
        "/v1/messages/batches/",
        "/v1/messages/batches/{message_batch_id}",
        {m: message_batch_route for m in ("GET", "POST", "DELETE")},
    ),
    # GET and PATCH /admin/keys/{id}, POST /admin/keys/{id}/revoke|rotate.
    # After the exact /admin/requests/slow and /failed, which are looked up first.
    ("/admin/requests/", "/admin/requests/{request_id}", {"GET": kept_request}),
    (
        "/admin/keys/",
        "/admin/keys/{id}",
        {"GET": get_key, "POST": key_action, "PATCH": update_key},
    ),
    (
        "/admin/models/",
        "/admin/models/{model}",
        {m: models_route for m in ("GET", "POST", "PATCH", "DELETE")},
    ),
    ("/api/v1/search/status/", "/api/v1/search/status/{task_id}", {"GET": search_status}),
    ("/api/v1/search/stream/", "/api/v1/search/stream/{task_id}", {"GET": search_stream}),
    ("/console/", "/console/{page}", {"GET": console, "POST": console}),
    (
        "/v1/conversations/",
        "/v1/conversations/{conversation_id}",
        {m: conversation_route for m in ("GET", "POST", "DELETE")},
    ),
    (
        "/v1/responses/",
        "/v1/responses/{response_id}",
        {"GET": response_route, "DELETE": response_route, "POST": response_route},
    ),
]
# route -> how its errors are answered, where not OpenAI's shape.
error_shapes: dict[str, ErrorShape] = {
    "/v1/messages": anthropic_error,
    "/v1/messages/count_tokens": anthropic_error,
    "/v1/messages/batches": anthropic_error,
    "/v1/messages/batches/{message_batch_id}": anthropic_error,
}


def error_shape(route: str | None, anthropic_client: bool) -> ErrorShape:
    """How an error on ``route`` is answered: the route's dialect; on a
    route both APIs share (``/v1/models``) or no route at all, Anthropic's
    shape for a client that sent ``anthropic-version``, else OpenAI's."""
    shape = error_shapes.get(route) if route else None
    if shape is not None:
        return shape
    return anthropic_error if anthropic_client else error_response
