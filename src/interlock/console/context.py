"""One console request as the pages see it, and the responses they give."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import Response

from interlock.api.services import Services
from interlock.console.assets import asset_version
from interlock.console.render import render
from interlock.console.session import ConsoleSession
from interlock.errors import InvalidRequest, PayloadTooLarge

__all__ = ["SECURITY_HEADERS", "ConsoleRequest", "read_form", "redirect"]

# Forms are small: a key's settings at most.
MAX_FORM_BYTES = 64 * 1024

# Every console response: nothing from elsewhere, no framing, nothing cached.
# Plotly sets inline styles on the charts it draws, hence 'unsafe-inline' for
# styles only; scripts are the console's own files.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}

# ?notice= after a change: fixed texts, so a link cannot put words on the page.
NOTICES = {
    "created": "The key was created.",
    "updated": "The key's settings were saved.",
    "revoked": "The key was revoked: its next request is refused.",
    "chaos_on": "The chaos scenario is running: requests to that deployment now fail by design.",
    "chaos_off": "Chaos is off: nothing is injected any more.",
    "promoted": "The version was promoted: it now takes the model's traffic.",
    "rolled_back": "The model was rolled back.",
    "canary": "The canary share was set.",
}

NAVIGATION = (
    ("overview", "Overview", "/console"),
    ("keys", "Keys", "/console/keys"),
    ("usage", "Usage", "/console/usage"),
    ("deployments", "Deployments", "/console/deployments"),
    ("requests", "Requests", "/console/requests"),
    ("models", "Registry", "/console/models"),
    ("batches", "Batches", "/console/batches"),
)


@dataclass(slots=True)
class ConsoleRequest:
    request: Request
    services: Services
    session: ConsoleSession | None
    form: dict[str, str] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        """Who the audit log names for a change made here."""
        name = self.session.actor if self.session is not None else "admin"
        return f"console:{name}"

    def query(self, name: str) -> str | None:
        value = self.request.query_params.get(name)
        return value.strip() if value and value.strip() else None

    def page(self, template: str, title: str, status: int = 200, **data: Any) -> Response:
        """A whole page: the layout, its navigation, and ``data`` for ``template``."""
        body = render(
            template,
            title=title,
            navigation=NAVIGATION,
            active=template.removesuffix(".html"),
            session=self.session,
            assets=asset_version(),
            notice=NOTICES.get(self.query("notice") or ""),
            **data,
        )
        return Response(body, status, SECURITY_HEADERS, media_type="text/html; charset=utf-8")


def redirect(path: str, **query: str) -> Response:
    """Post, then redirect, then get: a reload does not post twice."""
    location = f"{path}?{urlencode(query)}" if query else path
    return Response(status_code=303, headers={**SECURITY_HEADERS, "location": location})


async def read_form(request: Request) -> dict[str, str]:
    """A posted ``application/x-www-form-urlencoded`` form, last value of
    each field. Any other body is refused: the console's pages post no other."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise InvalidRequest("The console takes forms (application/x-www-form-urlencoded).")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise PayloadTooLarge(f"A console form is at most {MAX_FORM_BYTES} bytes.")
    body = b""
    async for piece in request.stream():
        body += piece
        if len(body) > MAX_FORM_BYTES:
            raise PayloadTooLarge(f"A console form is at most {MAX_FORM_BYTES} bytes.")
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise InvalidRequest("The form is not UTF-8.") from None
    try:
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=200)
    except ValueError:
        raise InvalidRequest("The form has too many fields.") from None
    return {name: values[-1] for name, values in fields.items()}
