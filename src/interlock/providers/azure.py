"""Adapter for Azure OpenAI (``provider: azure``).

Azure serves OpenAI's chat-completions and embeddings wire format per
*deployment*: ``base_url`` is the resource (``https://<resource>.openai.azure.com``),
``model`` the deployment's name, and every call names the data-plane API
version (``api_version``; ``DEFAULT_AZURE_API_VERSION`` when unset)::

    POST {base_url}/openai/deployments/{model}/chat/completions?api-version=...
    POST {base_url}/openai/deployments/{model}/embeddings?api-version=...

With ``api: responses`` (models served on the Responses API alone) chat
requests go to ``{base_url}/openai/v1/responses``, translated, ``model``
in the body (``AzureOpenAIResponsesProvider``).

The key travels in an ``api-key`` header, never as ``Authorization``.

Everything else is the OpenAI-compatible adapter's: bodies forwarded (tools,
``response_format``, images and all), streamed chunks passed on as the bytes
received. Azure's additions pass through unchanged: a first chunk with empty
``choices`` carrying ``prompt_filter_results``, ``content_filter_results`` on
choices; the OpenAI SDKs read past them. A prompt Azure's content filter
blocks is its 400 (``error.code`` ``content_filter``) and stays a 400; its
429 keeps its ``Retry-After``.
"""

from __future__ import annotations

from urllib.parse import quote

from interlock.config import DeploymentConfig
from interlock.config.deployments import DEFAULT_AZURE_API_VERSION
from interlock.providers.base import CallContext, JSONDict, Provider
from interlock.providers.openai_compat import OpenAICompatibleProvider
from interlock.providers.openai_responses import OpenAIResponsesProvider

__all__ = ["AzureOpenAIProvider", "AzureOpenAIResponsesProvider"]


class AzureOpenAIProvider(OpenAICompatibleProvider):
    # OpenTelemetry's gen_ai.provider.name for Azure OpenAI.
    provider_name = "azure.ai.openai"

    @staticmethod
    def _auth_headers(deployment: DeploymentConfig) -> dict[str, str]:
        if deployment.api_key is None:
            return {}
        return {"api-key": deployment.api_key.reveal()}

    async def moderate(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        # Azure OpenAI has no moderation endpoint: its content filters run on
        # every call instead.
        return await Provider.moderate(self, body, ctx)

    @staticmethod
    def _endpoint(deployment: DeploymentConfig, operation: str) -> str:
        assert deployment.base_url and deployment.model  # guaranteed by config validation
        resource = deployment.base_url.removesuffix("/openai")  # either form is accepted
        if operation == "responses":  # only on the v1 surface: the deployment is the body's model
            return f"{resource}/openai/v1/responses"
        name = quote(deployment.model, safe="")
        version = quote(deployment.api_version or DEFAULT_AZURE_API_VERSION, safe="")
        return f"{resource}/openai/deployments/{name}/{operation}?api-version={version}"


class AzureOpenAIResponsesProvider(OpenAIResponsesProvider, AzureOpenAIProvider):
    """An Azure deployment with ``api: responses``: chat requests go to the
    resource's ``/openai/v1/responses``, the deployment's name as the model
    (``openai_responses.py``); Azure's key, endpoints and moderation otherwise."""
