"""Adapter for KServe v2 / Open Inference Protocol upstreams over REST:
Triton, KServe, Seldon MLServer, OpenVINO Model Server ...

The client's body is already a v2 inference request (``/v1/infer``, checked
by ``pipeline.schemas.InferRequest``), so the adapter moves the model from
the body into the URL, adds credentials and puts the gateway's model name on
the answer. ``base_url`` is the server's root (``http://triton:8000``; a
trailing ``/v2`` is tolerated). Behaviour from ``params``:

=================  ==========================================================
``model_version``  the upstream version to call (``.../versions/<v>/...``
                   paths); default: none, the server picks one.
=================  ==========================================================

Errors: the v2 error body (``{"error": "..."}``) is quoted in the message,
cleaned (``upstream_errors``). An upstream 400 is the request's fault and
stays a 400. A 404 is not: the URL comes from this deployment's config,
never from the request, so a server without the model is misconfigured, and
the error is a 502 protocol error that counts against the deployment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from interlock.config import ConfigError, DeploymentConfig
from interlock.errors import (
    ProviderError,
    UnsupportedOperation,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from interlock.providers.base import CallContext, JSONDict
from interlock.providers.http import HttpProvider
from interlock.redaction import Redactor

__all__ = ["KServeParams", "KServeProvider"]

# What a v2 inference request carries besides the URL's model; the body's
# ``model`` and ``version`` name the gateway's model, not the upstream's.
_REQUEST_FIELDS = ("id", "parameters", "inputs", "outputs")


class KServeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_version: str | None = Field(default=None, min_length=1)

    @field_validator("model_version", mode="before")
    @classmethod
    def _number_as_text(cls, value: object) -> object:
        # Triton's versions are numbers, and YAML reads `model_version: 3` as one.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


class KServeProvider(HttpProvider):
    """A tensor model on a v2 REST server; ``deployment.model`` names it there."""

    provider_name = "kserve"

    def __init__(self, deployment: DeploymentConfig, redactor: Redactor | None = None):
        try:
            self.params = KServeParams.model_validate(deployment.params)
        except ValidationError as exc:
            raise ConfigError(f"deployment {deployment.id}: params: {exc}") from None
        if not deployment.base_url:
            raise ConfigError(
                f"deployment {deployment.id}: provider 'kserve' needs `base_url` "
                "(the server's root, e.g. http://127.0.0.1:8000)"
            )
        assert deployment.model  # guaranteed by config validation
        headers = {}
        if deployment.api_key is not None:
            headers["authorization"] = f"Bearer {deployment.api_key.reveal()}"
        super().__init__(deployment, headers, redactor)
        root = deployment.base_url.removesuffix("/v2")
        model_url = f"{root}/v2/models/{quote(deployment.model, safe='')}"
        if self.params.model_version is not None:
            model_url += f"/versions/{quote(self.params.model_version, safe='')}"
        self._model_url = model_url
        self._infer_url = f"{model_url}/infer"
        self._ready_url = f"{model_url}/ready"

    async def infer(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        upstream = {k: body[k] for k in _REQUEST_FIELDS if body.get(k) is not None}
        with self._configured_model():
            result = await self._client.request_json(
                "POST", self._infer_url, upstream, self._headers(ctx)
            )
        response = self._expect_object(result, "inference response")
        if not isinstance(response.get("outputs"), list):
            raise UpstreamProtocolError(
                "upstream inference response has no `outputs` list", deployment=self.deployment_id
            )
        # The client asked for the gateway's model; the upstream's name is ours to hide.
        response["model_name"] = ctx.public_model
        return response

    async def model_metadata(self, ctx: CallContext) -> JSONDict:
        with self._configured_model():
            result = await self._client.request_json(
                "GET", self._model_url, None, self._headers(ctx)
            )
        metadata = self._expect_object(result, "model metadata")
        metadata["name"] = ctx.public_model
        return metadata

    async def model_ready(self, ctx: CallContext) -> bool:
        """True on a 200 (unless its body says ``"ready": false``); a probe never raises."""
        try:
            result = await self._client.request_json(
                "GET", self._ready_url, None, self._headers(ctx)
            )
        except ProviderError:
            return False
        return not (isinstance(result, dict) and result.get("ready") is False)

    async def chat(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        raise _no_chat(ctx)

    async def stream_chat(self, body: JSONDict, ctx: CallContext) -> AsyncIterator[bytes]:
        raise _no_chat(ctx)
        yield b""  # pragma: no cover - makes this a stream that fails when read

    @contextmanager
    def _configured_model(self) -> Iterator[None]:
        """The URL names this deployment's model, never the client's: an
        upstream 404 means the deployment is wrong, not the request."""
        try:
            yield
        except UpstreamStatusError as exc:
            if exc.upstream_status != 404:
                raise
            raise UpstreamProtocolError(
                f"upstream does not serve this deployment's model: {exc.message}",
                deployment=self.deployment_id,
            ) from None

    def _expect_object(self, result: Any, what: str) -> JSONDict:
        if not isinstance(result, dict):
            raise UpstreamProtocolError(
                f"upstream {what} is not a JSON object", deployment=self.deployment_id
            )
        return result


def _no_chat(ctx: CallContext) -> UnsupportedOperation:
    return UnsupportedOperation(
        f"The model `{ctx.public_model}` is a tensor model: it takes /v1/infer, "
        "not chat completions.",
        param="model",
    )
