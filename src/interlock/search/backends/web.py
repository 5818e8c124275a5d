"""What the web search adapters share: one JSON GET, its errors, plain text.

The adapters (``searxng``, ``brave``, ``google``) call their APIs through the
gateway's own pooled upstream client (``interlock.providers.http``, ADR 0008),
not aiohttp: that is a development dependency only. Its ``ProviderError``s are
mapped to ``BackendError`` here, once:

================================  =========  ==========================================
what happened                     retryable  why
================================  =========  ==========================================
401, 403                          no         the credential is refused: again is the same
other 4xx (400, 404, 422, ...)    no         our request or the configured URL is wrong
408, 429, 5xx                     yes        the service is busy or broken for now
timeout, refused, reset           yes        the network or the service, for now
200 with a body that is not JSON  no         a misconfigured URL (an HTML page, a login
                                             portal) answers the same way every time
================================  =========  ==========================================

A non-retryable error still lets the chain ask the next backend; it only
stops asking the same one again at once.

Messages never carry the request URL (Google's holds the API key as
``key=``) and are scrubbed of the backend's secrets besides.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from interlock.config import TimeoutConfig
from interlock.errors import (
    ProviderError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from interlock.providers.http import UpstreamClient
from interlock.providers.proxy_rules import ProxyRules
from interlock.redaction import Redactor
from interlock.search.backends.base import BackendError, SearchResult

__all__ = ["WebClient", "plain_text", "ranked"]

# Keep-alive connections per backend: searches are short and few at a time.
_MAX_CONNECTIONS = 8
_TAG = re.compile(r"<[^>]*>")


def plain_text(markup: str) -> str:
    """``markup`` as one line of plain text: tags dropped (Brave's ``<strong>``,
    Google's ``<b>``), entities unescaped, runs of whitespace made one space."""
    return " ".join(html.unescape(_TAG.sub("", markup)).split())


def ranked(
    source: str, items: Iterable[Any], keys: tuple[str, str, str], limit: int
) -> list[SearchResult]:
    """The first ``limit`` usable items as results ranked 1, 2, ...

    ``keys``: each item's title, URL and snippet fields. An item that is not
    an object or has no URL is skipped, not fatal: one odd entry should not
    cost the whole answer.
    """
    title_key, url_key, snippet_key = keys
    results: list[SearchResult] = []
    for item in items:
        if len(results) >= limit:
            break
        if not isinstance(item, dict):
            continue
        url = item.get(url_key)
        if not isinstance(url, str) or not url:
            continue
        title, snippet = item.get(title_key), item.get(snippet_key)
        results.append(
            SearchResult(
                title=plain_text(title) if isinstance(title, str) else "",
                url=url,
                snippet=plain_text(snippet) if isinstance(snippet, str) else "",
                source=source,
                rank=len(results) + 1,
            )
        )
    return results


class WebClient:
    """GETs JSON from one search API within ``timeout_s``, or raises ``BackendError``.

    ``secrets``: what must never appear in an error message (the API key).
    ``environ``: where the proxy variables are read, once (default: the process's).
    """

    def __init__(
        self,
        backend: str,
        timeout_s: float,
        *,
        secrets: tuple[str, ...] = (),
        environ: Mapping[str, str] | None = None,
    ):
        self.backend = backend
        self.timeout_s = timeout_s
        self._redactor = Redactor(secrets)
        try:
            proxies = ProxyRules(env=os.environ if environ is None else environ)
        except ValueError as exc:
            raise BackendError(backend, str(exc), retryable=False) from None
        timeouts = TimeoutConfig(connect_s=timeout_s, read_s=timeout_s, total_s=timeout_s)
        self._client = UpstreamClient(
            f"search:{backend}",
            timeouts,
            _MAX_CONNECTIONS,
            {"accept": "application/json"},
            proxies=proxies,
            redactor=self._redactor,
        )
        self._started = False

    async def get_json(self, url: str, headers: Mapping[str, str] | None = None) -> Any:
        """The parsed body of ``GET url``; the whole call, connecting included,
        ends within ``timeout_s``."""
        if not self._started:
            await self._client.start()
            self._started = True
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._client.request_json("GET", url, headers=headers)
        except TimeoutError:
            error = self._error(f"timed out after {self.timeout_s:g}s", retryable=True)
        except ProviderError as exc:
            error = self._classified(exc)
        raise error  # out here, so it holds no reference to the client's exception

    def malformed(self, what: str) -> BackendError:
        """JSON, but not in the service's documented shape."""
        return self._error(f"unexpected response: {what}", retryable=False)

    async def aclose(self) -> None:
        await self._client.aclose()
        self._started = False

    def _classified(self, exc: ProviderError) -> BackendError:
        # The client's messages are already scrubbed; scrubbed again here, cheaply,
        # in case a future message quotes more than it does today.
        if isinstance(exc, UpstreamStatusError):
            status = exc.upstream_status
            return self._error(str(exc), retryable=status in (408, 429) or status >= 500)
        if isinstance(exc, UpstreamTimeout):
            return self._error(f"timed out after {self.timeout_s:g}s", retryable=True)
        if isinstance(exc, UpstreamProtocolError):
            return self._error(str(exc), retryable=False)
        return self._error(str(exc), retryable=True)  # connection refused, reset, DNS

    def _error(self, message: str, *, retryable: bool) -> BackendError:
        return BackendError(self.backend, self._redactor.scrub(message), retryable=retryable)
