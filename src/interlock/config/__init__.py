"""Typed configuration: one YAML file, validated once at start-up.

Secrets are never stored in the file; a value ``os.environ/NAME`` is read
from the environment when the file is loaded, and a missing variable is a
start-up error naming the file and the path inside it.

One module per section; import from here, not from the modules:

    base         ConfigError, Secret, the strict frozen base model
    deployments  DeploymentConfig, TimeoutConfig, PriceConfig, AwsConfig
    upstream     TlsConfig, ProxyURL (how a deployment's connections are made)
    routing      ModelConfig (a model group), RoutingConfig, FailoverSettings,
                 BreakerSettings
    access       KeyConfig, KeyLimits, TierConfig, AdmissionConfig
    jwt_auth     JwtConfig, JwksConfig (JWT bearer authentication)
    server       ServerConfig, LimitsConfig (load shedding)
    state        StateConfig (memory/Redis), StoreConfig (durable records)
    cache        CacheConfig
    chaos        ChaosConfig, ChaosRule
    search       SearchConfig and its backends (the AI search service)
    registry     RegistryConfig, CanaryConfig (the model registry)
    responses    ResponsesConfig (stored responses of the Responses API)
    chat_completions  ChatCompletionsConfig (stored chat completions)
    telemetry    TelemetryConfig, TracingConfig
    gateway      GatewayConfig, the whole file and its cross-section checks
    loading      parse_config, load_config, bundled_config_path, os.environ/ secrets
"""

from interlock.config.access import AdmissionConfig, KeyConfig, KeyLimits, TierConfig
from interlock.config.access import Permission as Permission
from interlock.config.base import ConfigError, Secret
from interlock.config.cache import CacheConfig
from interlock.config.chaos import ChaosConfig, ChaosRule
from interlock.config.chat_completions import ChatCompletionsConfig
from interlock.config.deployments import (
    AwsConfig,
    DeploymentConfig,
    PriceConfig,
    TimeoutConfig,
)
from interlock.config.deployments import ProviderName as ProviderName
from interlock.config.gateway import GatewayConfig
from interlock.config.jwt_auth import JwksConfig, JwtConfig
from interlock.config.loading import ENV_PREFIX as ENV_PREFIX
from interlock.config.loading import bundled_config_path, load_config, parse_config
from interlock.config.registry import CanaryConfig, RegistryConfig
from interlock.config.responses import ResponsesConfig
from interlock.config.routing import BreakerSettings, FailoverSettings, ModelConfig, RoutingConfig
from interlock.config.search import SearchConfig
from interlock.config.server import LimitsConfig, ServerConfig
from interlock.config.state import StateConfig, StoreConfig
from interlock.config.telemetry import TelemetryConfig
from interlock.config.telemetry import TracingConfig as TracingConfig
from interlock.config.upstream import ProxyURL, TlsConfig

# Unchanged from when this was one module. ENV_PREFIX, Permission,
# ProviderName and TracingConfig are importable from here too (the
# `X as X` imports above) without being part of `__all__`.
__all__ = [
    "AdmissionConfig",
    "AwsConfig",
    "BreakerSettings",
    "CacheConfig",
    "CanaryConfig",
    "ChaosConfig",
    "ChaosRule",
    "ChatCompletionsConfig",
    "ConfigError",
    "DeploymentConfig",
    "FailoverSettings",
    "GatewayConfig",
    "JwksConfig",
    "JwtConfig",
    "KeyConfig",
    "KeyLimits",
    "LimitsConfig",
    "ModelConfig",
    "PriceConfig",
    "ProxyURL",
    "RegistryConfig",
    "ResponsesConfig",
    "RoutingConfig",
    "SearchConfig",
    "Secret",
    "ServerConfig",
    "StateConfig",
    "StoreConfig",
    "TelemetryConfig",
    "TierConfig",
    "TimeoutConfig",
    "TlsConfig",
    "bundled_config_path",
    "load_config",
    "parse_config",
]
