"""The AI search service (``search:``): its backends, summary and tasks."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from interlock.config.base import Secret, _Strict

__all__ = [
    "AnonymousSearchConfig",
    "BackendSettings",
    "BraveBackendConfig",
    "GoogleBackendConfig",
    "LocalBackendConfig",
    "OpenSearchBackendConfig",
    "RerankConfig",
    "SearchBackendConfig",
    "SearchConfig",
    "SearxngBackendConfig",
]


class BackendSettings(_Strict):
    """What every network backend shares: how long, how often, when to rest it."""

    name: str | None = None  # default: the type; unique among backends
    # Seconds one try may take; past it the try fails as retryable (a retry, or the
    # next backend, follows).
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Tries after the first, for retryable failures only.
    retries: int = Field(default=1, ge=0, le=5)
    # The backend's circuit breaker: this many failures in a row open it for cooldown_s.
    failure_threshold: int = Field(default=3, ge=1, le=100)
    # Seconds the backend's breaker stays open once tripped (not growing); then one try probes it.
    cooldown_s: float = Field(default=30.0, gt=0, le=3600)


class LocalBackendConfig(BackendSettings):
    """The embedded index: SQLite FTS5 with BM25 ranking."""

    # The embedded SQLite index (the default backend).
    type: Literal["local"] = "local"
    # The index file. Default: search-index.sqlite3 in the data directory,
    # built from the bundled corpus at first start when missing.
    path: str | None = None


class SearxngBackendConfig(BackendSettings):
    # A SearXNG instance's JSON API.
    type: Literal["searxng"]
    # The instance's base URL; its JSON API must be enabled (formats: json).
    url: str
    # Sent as a Bearer token, for instances behind a proxy.
    api_key: Secret | None = None


class BraveBackendConfig(BackendSettings):
    # The Brave Search API.
    type: Literal["brave"]
    # The web search endpoint queried with GET.
    url: str = "https://api.search.brave.com/res/v1/web/search"
    # The subscription token, sent as X-Subscription-Token.
    api_key: Secret


class GoogleBackendConfig(BackendSettings):
    """Google Programmable Search (Custom Search JSON API)."""

    # Google Programmable Search.
    type: Literal["google"]
    # The Custom Search JSON API endpoint queried with GET.
    url: str = "https://www.googleapis.com/customsearch/v1"
    # The API key, sent in the query string (never quoted in errors).
    api_key: Secret
    # The search engine id.
    cx: str


class OpenSearchBackendConfig(BackendSettings):
    """An OpenSearch (or Elasticsearch) index holding the documents at scale."""

    # An OpenSearch or Elasticsearch index (needs the opensearch extra).
    type: Literal["opensearch"]
    # The cluster's URL, given to opensearch-py.
    url: str
    # The index searched (a multi_match over its title and body fields).
    index: str = "interlock-search"
    # A user for HTTP basic authentication; None: no authentication.
    username: str | None = None
    # That user's password (give it as os.environ/NAME); unset: empty.
    password: Secret | None = None


SearchBackendConfig = Annotated[
    LocalBackendConfig
    | SearxngBackendConfig
    | BraveBackendConfig
    | GoogleBackendConfig
    | OpenSearchBackendConfig,
    Field(discriminator="type"),
]


class AnonymousSearchConfig(_Strict):
    """The search page for people without an API key (off by default)."""

    # Admit searches without an Authorization header, each client address as its own
    # principal, to the search's models only; false: they get 401.
    enabled: bool = False
    # Searches per minute per client address, through the same admission stage as keys.
    rpm: int = Field(default=10, ge=1)
    # Searches one client address may have running at once; one more gets a 429.
    max_concurrent: int = Field(default=2, ge=1)
    # Load balancers in front (addresses or CIDR networks): behind one of
    # them, the client is read from X-Forwarded-For (search/client_address.py).
    trusted_proxies: list[str] = Field(default_factory=list)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"not an address or network: {entry!r}") from None
        return value


class RerankConfig(_Strict):
    """Semantic re-ranking through the gateway's own /v1/embeddings pipeline."""

    model: str  # an embedding model group of this gateway
    candidates: int = Field(default=20, ge=1, le=100)  # results fetched, then re-ranked


def _local_only() -> list[SearchBackendConfig]:
    return [LocalBackendConfig()]


class SearchConfig(_Strict):
    # The search service: /api/v1/search and the /search page; false: they answer 404.
    enabled: bool = True
    # Tried in order: when one fails, the next answers (the response says which).
    backends: list[SearchBackendConfig] = Field(default_factory=_local_only, min_length=1)
    # The chat model group that writes the summary when a request names none; unset: the
    # first group in `models`.
    model: str | None = None
    # Longest query, in characters; a longer one gets 400 before any work.
    max_query_chars: int = Field(default=500, ge=1, le=10_000)
    # Longest summary, in characters: the model is stopped there and the summary cut.
    summary_max_chars: int = Field(default=1000, ge=100, le=100_000)
    # Tasks live in the state store this long after they were created.
    task_ttl_s: float = Field(default=3600, gt=0)
    # Searches without an API key, limited per client address; off by default.
    anonymous: AnonymousSearchConfig = Field(default_factory=AnonymousSearchConfig)
    # Re-orders results by embedding similarity to the query; None: the backend's order.
    rerank: RerankConfig | None = None
    # The web searches models ask for (Claude Code's WebSearch, the Responses API's
    # web_search, chat's web_search_options), run on the web backends (searxng, brave,
    # google) for models that cannot search themselves (ADR 0029); false: not run.
    web_search_tool: bool = True

    @model_validator(mode="after")
    def _unique_backend_names(self) -> SearchConfig:
        seen: set[str] = set()
        for backend in self.backends:
            name = backend.name or backend.type
            if name in seen:
                raise ValueError(f"duplicate search backend name {name!r} (set name:)")
            seen.add(name)
        return self
