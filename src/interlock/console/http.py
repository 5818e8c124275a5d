"""``/console``: the operator's web console, one handler for all its paths.

Every page but the login form and the static files needs a session (the
admin key, exchanged once at the login form for a signed cookie:
``console/session.py``); every POST also needs the session's CSRF token.
Without a session a page redirects to the login form, a POST is refused
(403) and the live JSON answers 401. Without ``server.admin_key`` there is
no console.

The pages call the same stores and policies as the admin API, and every
change they make is written to the audit log with the console user's name.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from interlock.api.services import Services
from interlock.api.wire import json_response
from interlock.console.assets import asset
from interlock.console.context import ConsoleRequest, read_form, redirect
from interlock.console.ended import EndedSessions
from interlock.console.pages import (
    batches,
    deployments,
    keys,
    overview,
    registry,
    usage,
)
from interlock.console.pages import requests as requests_page
from interlock.console.session import ConsoleSession, SessionSigner
from interlock.errors import InterlockError, MethodNotAllowed, NotFound
from interlock.state.base import StateStoreUnavailable

__all__ = ["console"]

log = logging.getLogger("interlock.console")

COOKIE = "interlock_console"
LOGIN_COOKIE = "interlock_console_login"  # the login form's double-submit token
PAGE = Callable[[ConsoleRequest], Awaitable[Response]]

# (method, path after /console/) -> page. Paths with an id: see _route.
_PAGES: dict[tuple[str, str], PAGE] = {
    ("GET", ""): overview.page,
    ("GET", "api/overview"): overview.live,
    ("GET", "keys"): keys.page,
    ("POST", "keys"): keys.create,
    ("GET", "usage"): usage.page,
    ("GET", "usage.csv"): usage.export_csv,
    ("GET", "deployments"): deployments.page,
    ("POST", "chaos"): deployments.chaos,
    ("GET", "requests"): requests_page.page,
    ("GET", "models"): registry.page,
    ("POST", "models"): registry.change,
    ("GET", "batches"): batches.page,
}


async def console(request: Request, services: Services) -> ASGIApp:
    path = request.scope["path"]
    if path != "/console" and not path.startswith("/console/"):
        raise NotFound(f"Unknown path: {request.method} {path}")
    rest = path.removeprefix("/console").strip("/")
    method = request.method
    if rest.startswith("assets/"):
        return _asset(request, rest.removeprefix("assets/"))
    signer = services.console.signer
    if signer is None:
        return _off(request, services)
    if rest == "login":
        return await _login(request, services, signer)
    session = signer.verify(request.cookies.get(COOKIE))
    ended = EndedSessions(services.state, services.state_outage_fatal)
    if session is not None and await ended.ended(session):
        session = None
    context = ConsoleRequest(request, services, session)
    if session is None:
        if rest == "api/overview":
            return json_response({"error": {"message": "Log in to the console."}}, 401)
        if method == "POST":
            return context.page("error.html", "Not logged in", 403, message=_EXPIRED)
        return redirect("/console/login", next=path)
    if method == "POST":
        try:
            context.form = await read_form(request)
        except InterlockError as exc:
            return context.page("error.html", "Refused", exc.status_code, message=exc.message)
        if not signer.csrf_ok(session, context.form.get("csrf")):
            log.warning("console form without its CSRF token", extra={"path": path})
            return context.page("error.html", "Refused", 403, message=_CSRF)
        if rest == "logout":
            return await _logout(context, ended, session)
    handler = _route(method, rest)
    try:
        return await handler(context)
    except InterlockError as exc:
        return context.page("error.html", "Refused", exc.status_code, message=exc.message)


_EXPIRED = "Your console session has ended: log in again, then repeat the change."
_CSRF = "This form is out of date (its security token does not match): reload the page."


def _route(method: str, rest: str) -> PAGE:
    found = _PAGES.get((method, rest))
    if found is not None:
        return found
    head, _, tail = rest.partition("/")
    if head == "keys" and tail:
        one_key: PAGE = keys.one_key
        return one_key  # /console/keys/<id>[/action]
    if any(path == rest for _, path in _PAGES):
        raise MethodNotAllowed(f"Method {method} is not allowed here.")
    raise NotFound("There is no such console page.")


def _asset(request: Request, name: str) -> Response:
    found = asset(name)
    if found is None:
        raise NotFound("There is no such console file.")
    headers = {
        "cache-control": "public, max-age=31536000, immutable",  # the URL carries the version
        "x-content-type-options": "nosniff",
        "vary": "accept-encoding",
    }
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["content-encoding"] = "gzip"
        return Response(found.gzipped, 200, headers, media_type=found.content_type)
    return Response(found.body, 200, headers, media_type=found.content_type)


def _off(request: Request, services: Services) -> Response:
    context = ConsoleRequest(request, services, None)
    message = "The console is off: set server.admin_key in the config to turn it on."
    return context.page("error.html", "Console off", 403, message=message)


async def _login(request: Request, services: Services, signer: SessionSigner) -> Response:
    context = ConsoleRequest(request, services, None)
    next_path = _safe_next(request.query_params.get("next"))
    if request.method == "GET":
        return _login_form(context, next_path)
    if request.method != "POST":
        raise MethodNotAllowed("Log in with the form.")
    try:
        form = await read_form(request)
    except InterlockError as exc:
        return _login_form(context, next_path, exc.message, exc.status_code)
    token = request.cookies.get(LOGIN_COOKIE)
    if not token or not hmac.compare_digest(token, form.get("login_token", "")):
        return _login_form(context, next_path, "The login form expired: try again.", 403)
    presented = hashlib.sha256(form.get("admin_key", "").strip().encode()).digest()
    digest = services.admin_key_digest
    if digest is None or not hmac.compare_digest(presented, digest):
        log.warning("console login refused", extra={"client": _client(request)})
        return _login_form(context, next_path, "That is not the admin key.", 401)
    cookie, session = signer.issue(form.get("name", ""))
    log.info("console login", extra={"actor": session.actor, "client": _client(request)})
    response = redirect(_safe_next(form.get("next")))
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(signer.lifetime_s),
        path="/console",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/console/login")
    return response


def _login_form(
    context: ConsoleRequest, next_path: str, error: str | None = None, status: int = 200
) -> Response:
    token = secrets.token_urlsafe(18)
    response = context.page(
        "login.html", "Log in", status, error=error, login_token=token, next_path=next_path
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        path="/console/login",
        secure=context.request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


async def _logout(
    context: ConsoleRequest, ended: EndedSessions, session: ConsoleSession
) -> Response:
    try:
        await ended.end(session)
    except StateStoreUnavailable:
        # The cookie would live on elsewhere: say so rather than seem logged out.
        message = "The session could not be ended (the state store is unreachable): try again."
        return context.page("error.html", "Not logged out", 503, message=message)
    response = redirect("/console/login")
    response.delete_cookie(COOKIE, path="/console")
    return response


def _safe_next(value: str | None) -> str:
    """Where to go after the login: a console page, never another site."""
    if value and value.startswith("/console") and "//" not in value and "\\" not in value:
        return value
    return "/console"


def _client(request: Request) -> str | None:
    return request.client.host if request.client is not None else None
