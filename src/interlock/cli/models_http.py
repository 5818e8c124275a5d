"""The model registry's admin API over ``urllib`` (for ``interlock models``;
imported when a command runs, so ``--help`` stays light)."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Any

from interlock.cli.errors import CliError

__all__ = ["AdminGateway"]


class AdminGateway:
    """The registry's admin API over ``urllib``. Foreign exceptions become
    ``CliError`` here and nowhere else: a refusal exits 1, no connection 2."""

    def __init__(self, url: str, admin_key: str, timeout_s: float, actor: str | None) -> None:
        self.url = url.rstrip("/")
        self._headers = {"authorization": f"Bearer {admin_key}"}
        if actor:
            self._headers["x-interlock-actor"] = actor
        self._timeout_s = timeout_s

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One request; its answer, a JSON object."""
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body, default=str).encode()  # default: YAML's dates
            headers["content-type"] = "application/json"
        try:
            request = urllib.request.Request(self.url + path, data, headers, method=method)
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                raw: bytes = response.read()
        except (OSError, ValueError, http.client.HTTPException) as exc:  # ValueError: a bad --url
            raise self._classified(exc) from None
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise CliError(f"bad answer from the gateway at {self.url}: {raw[:200]!r}")
        return answer

    def _classified(self, exc: Exception) -> CliError:
        """The gateway's refusal (exit 1, its ``error.message``), else no gateway (2)."""
        if isinstance(exc, urllib.error.HTTPError):  # its body is the open response
            with exc:
                return CliError(f"{_refusal(exc)} (HTTP {exc.code})")
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, TimeoutError):
            reason = f"no answer within {self._timeout_s:g} s (--timeout)"
        return CliError(f"cannot reach the gateway at {self.url}: {reason}", status=2)


def _refusal(exc: urllib.error.HTTPError) -> str:
    try:
        answer = json.loads(exc.read())
    except (OSError, ValueError, http.client.HTTPException):
        answer = None
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return str(exc.reason)
