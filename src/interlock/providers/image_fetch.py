"""Image URLs for providers that take only inline images (Gemini, Bedrock).

The gateway fetches nothing a request names unless the deployment's operator
listed the URL's host in ``fetch_images_from``: a URL in a request body is
the classic server-side request forgery path (the gateway would reach hosts
the caller cannot, such as cloud metadata endpoints). Without the host on the
list the request is refused with a 400 that says how to send the image
instead (a ``data:`` URL).

The fetch has its own client without the deployment's credentials (they
must never reach an image host), follows no redirects (the list names hosts,
and a redirect could leave them), bounds size and time, and accepts only the
image types the providers take.
"""

from __future__ import annotations

import base64
from typing import Any

from interlock.config import DeploymentConfig, TimeoutConfig
from interlock.errors import InvalidRequest, ProviderError
from interlock.providers.base import JSONDict
from interlock.providers.h1 import split_url
from interlock.providers.http import UpstreamClient
from interlock.providers.openai_request import IMAGE_TYPES

__all__ = ["ImageInliner"]

# Anthropic's and Gemini's inline request limits are about 20 MB; one image
# over this is refused before it is read whole.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
_TIMEOUTS = TimeoutConfig(connect_s=5.0, read_s=10.0, total_s=20.0)


class ImageInliner:
    """Rewrites ``http(s):`` image parts of a chat body into ``data:`` URLs,
    fetching from the allowed hosts only."""

    def __init__(self, deployment: DeploymentConfig, provider: str):
        self._provider = provider
        self._allowed = frozenset(host.lower() for host in deployment.fetch_images_from)
        self._client = (
            UpstreamClient(f"{deployment.id}:images", _TIMEOUTS, 8, tls=deployment.tls)
            if self._allowed
            else None
        )

    async def start(self) -> None:
        if self._client is not None:
            await self._client.start()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def inline(self, body: JSONDict) -> JSONDict:
        """``body`` with every remote image inlined (the same object when it
        has none), or a 400 for a URL the operator has not allowed."""
        messages = body.get("messages")
        if not isinstance(messages, list) or not _has_remote_image(messages):
            return body
        out = []
        for i, message in enumerate(messages):
            content = message.get("content") if isinstance(message, dict) else None
            if not isinstance(content, list):
                out.append(message)
                continue
            parts = []
            for j, part in enumerate(content):
                url = _remote_url(part)
                if url is not None:
                    param = f"messages[{i}].content[{j}].image_url.url"
                    part = {**part, "image_url": {"url": await self._data_url(url, param)}}
                parts.append(part)
            out.append({**message, "content": parts})
        return {**body, "messages": out}

    async def _data_url(self, url: str, param: str) -> str:
        host = _host(url)
        if self._client is None or host not in self._allowed:
            raise InvalidRequest(
                f"{self._provider} deployments take images inline only: send the image "
                "as a `data:` URL (data:image/png;base64,...). An operator can let the "
                f"gateway fetch from `{host}` with `fetch_images_from`.",
                param=param,
                code="image_url_not_allowed",
            )
        try:
            content_type, data = await self._client.fetch(url, max_bytes=MAX_IMAGE_BYTES)
        except ProviderError as exc:
            raise InvalidRequest(
                f"The image at `{param}` could not be fetched: {exc.message}", param=param
            ) from None
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type not in IMAGE_TYPES:
            raise InvalidRequest(
                f"The image URL answered `{media_type or 'no content type'}`; PNG, JPEG, "
                "GIF or WebP is needed.",
                param=param,
            )
        return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def _remote_url(part: Any) -> str | None:
    if not isinstance(part, dict) or part.get("type") != "image_url":
        return None
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None


def _has_remote_image(messages: list[Any]) -> bool:
    return any(
        _remote_url(part) is not None
        for message in messages
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for part in message["content"]
    )


def _host(url: str) -> str:
    try:
        origin, _ = split_url(url)
    except ValueError:
        return url
    return origin.host_header.lower()
