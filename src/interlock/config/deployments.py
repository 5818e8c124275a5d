"""One upstream deployment: provider, model, endpoint, connection settings,
timeouts and price."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from interlock.config.base import Secret, _Strict
from interlock.config.upstream import ProxyURL, TlsConfig
from interlock.minilm import MODEL_NAME

__all__ = ["AwsConfig", "DeploymentConfig", "PriceConfig", "ProviderName", "TimeoutConfig"]

ProviderName = Literal[
    "openai",
    "azure",
    "anthropic",
    "gemini",
    "bedrock",
    "simulator",
    "sentence-transformers",
    "kserve",
    "onnx",
]
# Azure OpenAI's current GA data-plane version; deployments may pin another.
DEFAULT_AZURE_API_VERSION = "2024-10-21"

# What provider 'sentence-transformers' serves (in process, from the
# `injection-model` extra): the packaged MiniLM, by its short or hub name.
_LOCAL_MODELS = frozenset({MODEL_NAME, f"sentence-transformers/{MODEL_NAME}"})


class TimeoutConfig(_Strict):
    """Per-deployment upstream timeouts, in seconds."""

    # Opening a connection (TCP, TLS, a proxy's tunnel), and the longest wait for a
    # free one while max_connections are in use.
    connect_s: float = Field(default=5.0, gt=0)
    # Socket-level: time allowed for any single read from the upstream.
    read_s: float = Field(default=120.0, gt=0)
    # Router-level: the longest wait for a stream's first chunk; past it the attempt
    # fails as an upstream timeout.
    ttft_s: float = Field(default=60.0, gt=0)
    # Router-level: the longest gap between a stream's chunks after the first; past it
    # the stream fails as an upstream timeout.
    idle_s: float = Field(default=60.0, gt=0)
    # Whole non-streaming request (streams are bounded by ttft_s and idle_s).
    total_s: float = Field(default=600.0, gt=0)


class PriceConfig(_Strict):
    """US dollars per million tokens. Input tokens read from a prompt cache
    and written to one are charged at their own rates when the upstream
    reports them (``usage.prompt_tokens_details``); unset, at the input rate."""

    # Input tokens neither read from nor written to a prompt cache.
    input_per_million: float = Field(default=0.0, ge=0)
    # Output (completion) tokens.
    output_per_million: float = Field(default=0.0, ge=0)
    # Input tokens read from a prompt cache; None: the input rate.
    cached_input_per_million: float | None = Field(default=None, ge=0)
    # Input tokens written to a prompt cache; None: the input rate.
    cache_write_per_million: float | None = Field(default=None, ge=0)
    # Web searches the upstream runs itself (Anthropic's web_search server tool).
    web_search_per_thousand: float = Field(default=0.0, ge=0)


class AwsConfig(_Strict):
    """AWS Bedrock: the region, and credentials. Without the keys, botocore's
    own chain is used (environment, shared files, instance or pod role)."""

    # The region requests are signed for; the endpoint is
    # bedrock-runtime.<region>.amazonaws.com unless the deployment sets base_url.
    region: str = Field(min_length=1)
    # An access key id, used instead of botocore's chain; give it as os.environ/NAME.
    access_key_id: Secret | None = None
    # The access key's secret; set both keys or neither.
    secret_access_key: Secret | None = None
    # The session token of temporary keys; used only together with the two keys.
    session_token: Secret | None = None

    @model_validator(mode="after")
    def _pair(self) -> AwsConfig:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("aws needs both access_key_id and secret_access_key, or neither")
        return self


# The APIs whose thinking models refuse a tool loop without each assistant
# turn's reasoning: DeepSeek's, and Moonshot's (Kimi) on both its hosts.
_REASONING_ALWAYS = frozenset({"api.deepseek.com", "api.moonshot.ai", "api.moonshot.cn"})
# The APIs whose token limit is max_tokens alone: Mistral refuses
# max_completion_tokens, DeepSeek documents no other (and ignores what it does not know).
_MAX_TOKENS_ONLY = frozenset({"api.mistral.ai", "api.deepseek.com"})


class DeploymentConfig(_Strict):
    """One upstream serving a model group: which adapter calls it, where, with
    what credentials, limits and price, and the facts routing strategies use."""

    # Unique across all model groups; names the deployment in metrics, logs, breakers,
    # chaos rules and the x-interlock-force-deployment header.
    id: str = Field(min_length=1)
    # The adapter that calls the upstream; simulator, onnx and sentence-transformers
    # run in process.
    provider: ProviderName
    # The upstream's model name (azure: its deployment name; onnx: a bundled model's
    # name or a path); required for every provider but simulator.
    model: str | None = None
    # The upstream's URL (openai: up to /v1); required for openai, azure and kserve.
    # Unset: the provider's public endpoint (anthropic, gemini, bedrock).
    base_url: str | None = None
    # The upstream's key, sent as the provider expects (a Bearer token, api-key,
    # x-api-key, x-goog-api-key); give it as os.environ/NAME. None: none is sent.
    api_key: Secret | None = None
    # The adapter's own settings, checked when it is built; only simulator, kserve,
    # onnx and sentence-transformers read any.
    params: dict[str, Any] = Field(default_factory=dict)
    # Upstream timeouts of this deployment, in seconds.
    timeouts: TimeoutConfig = Field(default_factory=TimeoutConfig)
    # Connections open at once to the upstream (the network adapters); a request
    # finding them all busy waits up to timeouts.connect_s for one.
    max_connections: int = Field(default=1024, ge=1)
    # Certificate checks for an https upstream: the CAs trusted, a client certificate.
    tls: TlsConfig = Field(default_factory=TlsConfig)
    # An HTTP proxy for every connection of this deployment; when set, the
    # environment's proxy variables are not read.
    proxy: ProxyURL | None = None
    # Without `proxy`: use HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the
    # environment, as curl and requests do. false: always connect directly.
    trust_env: bool = True
    # Unset: the offline price catalog's rates for provider and model
    # (interlock.pipeline.price_catalog); set, they override it.
    price: PriceConfig | None = None
    # OpenAI request parameters this upstream cannot honour that are dropped
    # instead of refused with a 400 (e.g. ["logprobs", "seed"]). On OpenAI's wire,
    # where nothing is refused by the gateway, they are taken out of what the upstream
    # is sent (a server that refuses fields it does not know).
    drop_params: list[str] = Field(default_factory=list)
    # Changes to every chat request this deployment sends, as a JSON merge patch
    # (RFC 7396) over the body in the upstream's own API shape, after the gateway's
    # translation: objects merge key by key, null takes a key out, anything else
    # replaces what the client sent (e.g. {temperature: 1} where the model takes no
    # other, {thinking: {type: disabled}} for DeepSeek's fast mode). Not the model, the
    # stream, nor the conversation; not embeddings or moderations.
    body_patch: dict[str, Any] = Field(default_factory=dict)
    # Anthropic caches a prompt only where a request marks it. "client": where the
    # client asks (its cache_control markers, OpenAI's prompt_cache_breakpoint parts,
    # or a prompt_cache_key naming its conversation's cache); "auto": every request
    # with no marker of its own is cached up to its last block (a cache write costs
    # 1.25 times the input price, a read a tenth). Anthropic deployments only.
    prompt_caching: Literal["client", "auto"] = "client"
    # OpenAI's wire: whether the server refuses request fields it does not know (Mistral's
    # 422 extra_forbidden). If so, the fields that only describe the caller (user,
    # metadata, stream_options, prompt_cache_key ...) are left out, as the translating
    # adapters leave them out; what changes the answer is for drop_params. The gateway
    # asks every stream for usage, so the server must report it unasked. Unset: true at
    # api.mistral.ai, false elsewhere.
    strict_fields: bool | None = None
    # Hosts (``host`` or ``host:port``) whose image URLs the gateway may fetch
    # and inline for a provider that takes no image URLs. Empty: never fetch.
    fetch_images_from: list[str] = Field(default_factory=list)
    # Chat's custom (freeform) tools, such as Codex's apply_patch: "native" sends
    # them as they are (OpenAI's API, GPT-5 models); "function" sends each as a
    # function of one string argument, `input`, and turns the calls back into
    # custom ones. Unset: native for provider openai at api.openai.com or with
    # `api: responses`, else function.
    custom_tools: Literal["native", "function"] | None = None
    # OpenAI's wire (openai, azure): who runs chat's web_search_options. native: the
    # upstream (OpenAI's search models); gateway: the gateway, where it has a web backend
    # (ADR 0029). Default: native at api.openai.com, gateway elsewhere.
    web_search: Literal["native", "gateway"] | None = None
    # OpenAI's wire (openai, azure): how /v1/completions reaches this upstream. native:
    # its own /completions, the prompt as sent (base models, suffix, echo with logprobs,
    # several prompts); chat: the prompt as a user message on /chat/completions.
    # Default: native for provider openai off api.openai.com (vLLM, Ollama, llama.cpp),
    # chat elsewhere (OpenAI's and Azure's chat models serve no legacy completions).
    completions: Literal["native", "chat"] | None = None
    # OpenAI's wire (openai, azure; its /chat/completions): the reasoning of earlier
    # assistant turns, as chat's `reasoning_content` on their messages, which the
    # Messages and Responses edges fill from thinking blocks and reasoning items.
    # send: it goes where the conversation has it; always: so does " " on every other
    # assistant message (DeepSeek's and Kimi's thinking modes refuse a tool loop without
    # it, Kimi an empty one too); drop: it never goes. Unset: always at api.deepseek.com
    # and api.moonshot.ai/.cn, drop at api.openai.com and on Azure (a conversation
    # failing over from DeepSeek carries it); elsewhere a chat client's own goes as sent
    # and the other edges' does not (a server may refuse a field it does not know).
    reasoning_history: Literal["send", "always", "drop"] | None = None
    # The name that reasoning goes by with send and always: reasoning_content (the
    # default: DeepSeek, SGLang, llama.cpp) or reasoning (vLLM since 0.16 reads no other).
    reasoning_field: Literal["reasoning_content", "reasoning"] | None = None
    # OpenAI's wire (openai, azure): the name a request's token limit goes by, whichever
    # the client used. max_completion_tokens: OpenAI's reasoning models (gpt-5, o-series)
    # refuse max_tokens, which OpenAI deprecated for every model; max_tokens: for a server
    # that reads no other. Unset: max_completion_tokens at api.openai.com, max_tokens at
    # api.mistral.ai and api.deepseek.com, as sent elsewhere (set it on an Azure deployment
    # of a reasoning model).
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = None
    # OpenAI's wire (openai, azure): the `developer` role. native: as it is; system: as
    # `system`, which OpenAI made it the successor of (DeepSeek refuses `developer`, and
    # many servers' chat templates skip or refuse it). Default: native at api.openai.com
    # and on Azure, system elsewhere.
    developer_role: Literal["native", "system"] | None = None
    # OpenAI's wire (openai, azure): the API chat requests reach this upstream through.
    # chat: its /chat/completions; responses: its /responses (Azure: the resource's
    # /openai/v1/responses), the request and answer translated (the models served there
    # alone: gpt-5-codex, o3-pro, codex-mini ...).
    api: Literal["chat", "responses"] = "chat"
    # Azure OpenAI: the ``api-version`` query parameter.
    api_version: str | None = None
    # AWS Bedrock: region and credentials.
    aws: AwsConfig | None = None
    # Share of traffic relative to the group's other deployments: the weighted strategy,
    # and the weighted order within priority ties, pinned, canary and ab.
    weight: float = Field(default=1.0, gt=0)
    # The priority strategy tries lower values first; higher ones serve when those fail or are out.
    priority: int = 0
    # A version label: a /v1/infer request naming a version goes only to deployments with it,
    # and the canary strategy's canary_version picks by it. onnx reports it (unset: "1").
    version: str | None = None
    # Labels an ab strategy arm may name instead of a deployment id.
    tags: list[str] = Field(default_factory=list)

    @property
    def native_custom_tools(self) -> bool:
        """Whether this upstream is sent custom tools as they are (``custom_tools``)."""
        if self.custom_tools is not None:
            return self.custom_tools == "native"
        return self.at_openai or self.api == "responses"  # the Responses API has them

    @property
    def native_web_search(self) -> bool:
        """Whether this upstream is sent chat's ``web_search_options`` (``web_search``)."""
        if self.web_search is not None:
            return self.web_search == "native"
        return self.at_openai

    @property
    def native_completions(self) -> bool:
        """Whether /v1/completions calls this upstream's own completions (``completions``)."""
        if self.completions is not None:
            return self.completions == "native"
        return self.provider == "openai" and not self.at_openai

    @property
    def reasoning_policy(self) -> Literal["send", "always", "drop"] | None:
        """What an earlier turn's reasoning does on the way to this upstream
        (``reasoning_history``); None: a chat client's own goes, an edge's does not."""
        if self.reasoning_history is not None:
            return self.reasoning_history
        if self.provider == "openai" and self._host in _REASONING_ALWAYS:
            return "always"
        if self.at_openai or self.provider == "azure":
            return "drop"  # OpenAI's chat models read no other model's reasoning
        return None

    @property
    def token_limit_name(self) -> str | None:
        """The name the token limit is sent by (``max_tokens_field``); None: as sent."""
        if self.max_tokens_field is not None:
            return self.max_tokens_field
        if self.at_openai:
            return "max_completion_tokens"
        if self.provider == "openai" and self._host in _MAX_TOKENS_ONLY:
            return "max_tokens"
        return None

    @property
    def refuses_unknown_fields(self) -> bool:
        """Whether the server refuses request fields it does not know (``strict_fields``)."""
        if self.strict_fields is not None:
            return self.strict_fields
        return self._at_mistral

    @property
    def _at_mistral(self) -> bool:
        return self.provider == "openai" and self._host == "api.mistral.ai"

    @property
    def developer_as_system(self) -> bool:
        """Whether a ``developer`` message goes as ``system`` (``developer_role``)."""
        if self.developer_role is not None:
            return self.developer_role == "system"
        return self.provider == "openai" and not self.at_openai

    @property
    def at_openai(self) -> bool:
        """Provider ``openai`` at OpenAI's own API (not a compatible server)."""
        return self.provider == "openai" and self._host == "api.openai.com"

    @property
    def _host(self) -> str | None:
        return urlsplit(self.base_url).hostname if self.base_url else None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/") if value else value

    @field_validator("proxy", mode="before")
    @classmethod
    def _proxy_url(cls, value: object) -> object:
        if isinstance(value, str):
            return ProxyURL.parse(value)
        if value is not None and not isinstance(value, ProxyURL):
            raise ValueError("proxy must be a URL such as http://user:password@proxy:3128")
        return value

    @model_validator(mode="after")
    def _provider_needs(self) -> DeploymentConfig:
        if self.provider != "simulator" and not self.model:
            raise ValueError(f"provider {self.provider!r} needs `model` (the upstream model name)")
        if self.provider == "azure" and not self.base_url:
            raise ValueError(
                "provider 'azure' needs `base_url` (https://<resource>.openai.azure.com)"
            )
        if self.provider == "bedrock" and self.aws is None:
            raise ValueError("provider 'bedrock' needs `aws` (at least `region`)")
        if self.provider == "openai" and not self.base_url:
            raise ValueError("provider 'openai' needs `base_url` (e.g. http://127.0.0.1:8000/v1)")
        if self.completions == "native" and self.provider not in ("openai", "azure"):
            raise ValueError(
                f"`completions: native` needs OpenAI's wire (provider openai or azure), "
                f"not provider {self.provider!r}"
            )
        wire_only = (
            "reasoning_history",
            "reasoning_field",
            "max_tokens_field",
            "developer_role",
            "strict_fields",
        )
        for name in wire_only:
            if getattr(self, name) is not None and self.provider not in ("openai", "azure"):
                raise ValueError(
                    f"`{name}` is for OpenAI's wire (provider openai or azure), "
                    f"not provider {self.provider!r}"
                )
        if self.body_patch:
            _check_patch(self.provider, self.body_patch)
        if self.prompt_caching == "auto" and self.provider != "anthropic":
            raise ValueError(
                f"`prompt_caching: auto` is for Anthropic deployments (the others cache "
                f"by themselves or by the client's markers), not provider {self.provider!r}"
            )
        if self.api == "responses" and self.provider not in ("openai", "azure"):
            raise ValueError(
                f"`api: responses` needs OpenAI's wire (provider openai or azure), "
                f"not provider {self.provider!r}"
            )
        if self.provider == "sentence-transformers" and self.model not in _LOCAL_MODELS:
            raise ValueError(
                f"provider 'sentence-transformers' serves only the packaged model "
                f"`{MODEL_NAME}`, not {self.model!r}"
            )
        return self


# The providers that send a chat request body of their own.
_CHAT_WIRES = frozenset({"openai", "azure", "anthropic", "gemini", "bedrock"})
# What a patch may not set: the model (``model`` names it), the stream (the client
# asks for one or not) and the conversation, in each API's name for it.
_UNPATCHED = (
    "model",
    "stream",
    "messages",
    "input",
    "contents",
    "prompt",
    "system",
    "systemInstruction",
    "instructions",
)


def _check_patch(provider: str, patch: dict[str, Any]) -> None:
    if provider not in _CHAT_WIRES:
        raise ValueError(f"`body_patch` is for chat upstreams, not provider {provider!r}")
    for key in _UNPATCHED:
        if key in patch:
            raise ValueError(
                f"`body_patch` cannot set `{key}`: the model, the stream and the "
                "conversation are the deployment's and the request's own"
            )
