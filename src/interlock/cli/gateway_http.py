"""A running gateway's HTTP API over ``urllib``, for the commands that manage
one (``interlock batch``: Files and Batches; ``interlock models``: the
registry's admin API). Imported when a command runs, so ``--help`` stays
light."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from interlock.cli.errors import CliError

__all__ = ["Gateway"]

_CHUNK = 64 * 1024


class Gateway:
    """A gateway's API over ``urllib``, authenticated with ``api_key`` (an API
    key, or the admin key), ``headers`` added to every request. Foreign
    exceptions become ``CliError`` here and nowhere else: a refusal exits 1,
    no connection 2."""

    def __init__(
        self,
        url: str,
        api_key: str,
        timeout_s: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._headers = {"authorization": f"Bearer {api_key}", **(headers or {})}
        self._timeout_s = timeout_s

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One request with an optional JSON body; its answer, a JSON object."""
        if body is None:
            return self._json(self._request(method, path))
        data = json.dumps(body, default=str).encode()  # default: YAML's dates
        return self._json(self._request(method, path, data, {"content-type": "application/json"}))

    def get(self, path: str) -> dict[str, Any]:
        return self.call("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.call("POST", path, body)

    def upload(self, path: Path, purpose: str) -> dict[str, Any]:
        """``POST /v1/files``: multipart, the file streamed from disk."""
        boundary = "interlock-" + secrets.token_hex(16)
        name = path.name.replace('"', "%22").replace("\r", "").replace("\n", "")
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n'
            f"{purpose}\r\n--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/jsonl\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        try:
            file = path.open("rb")
        except OSError as exc:
            raise CliError(f"{path}: {exc.strerror or exc}") from None
        with file:
            size = os.fstat(file.fileno()).st_size
            body = itertools.chain([head], iter(lambda: file.read(_CHUNK), b""), [tail])
            headers = {
                "content-type": f"multipart/form-data; boundary={boundary}",
                "content-length": str(len(head) + size + len(tail)),
            }
            return self._json(self._request("POST", "/v1/files", body, headers))

    def lines(self, file_id: str) -> Iterator[bytes]:
        """A file's content, line by line as it arrives; the request is made
        now, so a refusal comes before anything is written."""
        return self._lines(self._request("GET", f"/v1/files/{quote(file_id, safe='')}/content"))

    def _lines(self, response: http.client.HTTPResponse) -> Iterator[bytes]:
        with response:
            while line := self._read(response.readline):
                yield line

    def _request(
        self,
        method: str,
        path: str,
        data: bytes | Iterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> http.client.HTTPResponse:
        headers = {**self._headers, **(headers or {})}
        try:
            request = urllib.request.Request(self.url + path, data, headers, method=method)
            response: http.client.HTTPResponse = urllib.request.urlopen(
                request, timeout=self._timeout_s
            )
        except urllib.error.HTTPError as exc:
            with exc:  # its body is the open response
                raise CliError(f"{_error_message(exc)} (HTTP {exc.code})") from None
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason) from None
        except (OSError, ValueError, http.client.HTTPException) as exc:  # ValueError: a bad --url
            raise self._unreachable(exc) from None
        return response

    def _json(self, response: http.client.HTTPResponse) -> dict[str, Any]:
        with response:
            raw = self._read(response.read)
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise CliError(f"bad answer from the gateway at {self.url}: {raw[:200]!r}")
        return answer

    def _read(self, read: Callable[[], bytes]) -> bytes:
        try:
            return read()
        except (OSError, http.client.HTTPException) as exc:
            raise CliError(f"the gateway at {self.url} broke off its answer: {exc!r}") from None

    def _unreachable(self, reason: object) -> CliError:
        if isinstance(reason, ConnectionRefusedError):
            why = "connection refused; is `interlock serve` running there? (--url, $INTERLOCK_URL)"
        elif isinstance(reason, TimeoutError):
            why = f"no answer within {self._timeout_s:g} s (--timeout)"
        else:
            why = str(reason)
        return CliError(f"cannot reach the gateway at {self.url}: {why}", status=2)


def _error_message(exc: urllib.error.HTTPError) -> str:
    """The OpenAI-shaped ``error.message`` of a refusal, else its reason."""
    try:
        return str(json.loads(exc.read())["error"]["message"])
    except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException):
        return str(exc.reason)
