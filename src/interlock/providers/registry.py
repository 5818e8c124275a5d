"""Chooses and builds the adapter for a deployment (the one place that knows them all)."""

from __future__ import annotations

from interlock.config import DeploymentConfig
from interlock.providers.base import Provider
from interlock.redaction import Redactor
from interlock.tokens import TokenCounter

__all__ = ["build_provider"]


def build_provider(
    deployment: DeploymentConfig, counter: TokenCounter, redactor: Redactor | None = None
) -> Provider:
    """``redactor``: the gateway's, for the network adapters' error messages."""
    if deployment.provider == "simulator":
        from interlock.providers.simulator import SimulatorProvider

        return SimulatorProvider(deployment, counter)
    if deployment.provider == "openai" and deployment.api == "responses":
        from interlock.providers.openai_responses import OpenAIResponsesProvider

        return OpenAIResponsesProvider(deployment, redactor)
    if deployment.provider == "openai":
        from interlock.providers.openai_compat import OpenAICompatibleProvider

        return OpenAICompatibleProvider(deployment, redactor)
    if deployment.provider == "anthropic":
        from interlock.providers.anthropic import AnthropicProvider

        return AnthropicProvider(deployment, redactor, counter)
    if deployment.provider == "gemini":
        from interlock.providers.gemini import GeminiProvider

        return GeminiProvider(deployment, redactor)
    if deployment.provider == "azure" and deployment.api == "responses":
        from interlock.providers.azure import AzureOpenAIResponsesProvider

        return AzureOpenAIResponsesProvider(deployment, redactor)
    if deployment.provider == "azure":
        from interlock.providers.azure import AzureOpenAIProvider

        return AzureOpenAIProvider(deployment, redactor)
    if deployment.provider == "bedrock":
        from interlock.providers.bedrock import BedrockProvider

        return BedrockProvider(deployment, redactor, counter)
    if deployment.provider == "sentence-transformers":
        from interlock.providers.sentence_embeddings import SentenceEmbeddingProvider

        return SentenceEmbeddingProvider(deployment)
    if deployment.provider == "kserve":
        from interlock.providers.kserve import KServeProvider

        return KServeProvider(deployment, redactor)
    if deployment.provider == "onnx":
        from interlock.providers.onnx import OnnxProvider

        return OnnxProvider(deployment)
    raise ValueError(f"unknown provider {deployment.provider!r}")  # config validation prevents
