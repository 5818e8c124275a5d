"""What the HTTP handlers may use, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from interlock.api.background_streams import BackgroundStreams
from interlock.api.middleware import DrainState
from interlock.api.side_calls import SideCalls
from interlock.batch.runtime import BatchRuntime
from interlock.batch.service import BatchService
from interlock.config import ChaosConfig
from interlock.config.chat_completions import ChatCompletionsConfig
from interlock.config.files import FilesConfig
from interlock.config.responses import ResponsesConfig
from interlock.console.runtime import ConsoleRuntime
from interlock.errors import ServiceUnavailable
from interlock.pipeline import Pipeline
from interlock.redaction import Redactor
from interlock.registry.service import RegistryService
from interlock.search.service import SearchService
from interlock.state import StateStore
from interlock.store import Store, data_dir
from interlock.store.blobs import BlobStore, LocalBlobStore
from interlock.telemetry.hub import Telemetry
from interlock.tokens import TokenCounter, default_counter

__all__ = ["BatchesRef", "ChaosSwitch", "RecordsRef", "RegistryRef", "Services"]


class ChaosSwitch(Protocol):
    """Where the admin API reads and replaces the chaos settings at run time
    (``routing.chaos.ChaosControl``; the edge needs no more of it)."""

    config: ChaosConfig


@dataclass(slots=True)
class RecordsRef:
    """The durable store, set once it is open in the app's lifespan."""

    store: Store | None = None

    def get(self) -> Store:
        if self.store is None:
            raise ServiceUnavailable("The records store is not open yet.")
        return self.store


@dataclass(slots=True)
class BatchesRef:
    """Batch inference's API side, set once the records store is open (None
    while it is not, or when ``batch.enabled`` is false)."""

    service: BatchService | None = None
    # Everything batch inference runs on in this process (queue, worker).
    runtime: BatchRuntime | None = None


@dataclass(slots=True)
class RegistryRef:
    """The model registry, set once the records store is open (None while it
    is not, or when ``registry.enabled`` is false)."""

    service: RegistryService | None = None

    def get(self) -> RegistryService:
        if self.service is None:
            raise ServiceUnavailable(
                "The model registry is off (registry.enabled) or not open yet."
            )
        return self.service


@dataclass(frozen=True, slots=True)
class Services:
    pipeline: Pipeline
    drain: DrainState
    max_body_bytes: int
    telemetry: Telemetry
    chaos: ChaosSwitch
    records: RecordsRef
    tiers: frozenset[str]
    state: StateStore
    # An edge's model calls besides the request's own (``side_calls.py``).
    side_calls: SideCalls
    # admission.on_state_failure == fail_closed: a state-store outage stops service.
    state_outage_fatal: bool = False
    # SHA-256 of the admin key; None turns the admin API off.
    admin_key_digest: bytes | None = None
    # What error bodies and events must not show: every secret in the config.
    redactor: Redactor = field(default_factory=Redactor)
    # /health/deployments without the admin key.
    public_deployment_health: bool = False
    # The AI search service (/api/v1/search, /search); None when disabled.
    search: SearchService | None = None
    # The Batches and Jobs APIs.
    batches: BatchesRef = field(default_factory=BatchesRef)
    registry: RegistryRef = field(default_factory=RegistryRef)
    # The Files API: its limits, and where the bytes are kept.
    files: FilesConfig = field(default_factory=FilesConfig)
    blobs: BlobStore = field(default_factory=lambda: LocalBlobStore(data_dir() / "files"))
    # The gateway's token counter (``/v1/messages/count_tokens``).
    counter: TokenCounter = field(default_factory=default_counter)
    # The Responses API: how long stored responses are kept.
    responses: ResponsesConfig = field(default_factory=ResponsesConfig)
    # Chat Completions: how long stored completions are kept.
    chat_completions: ChatCompletionsConfig = field(default_factory=ChatCompletionsConfig)
    # Background responses created with ``stream: true`` (``api/background_streams.py``).
    background_streams: BackgroundStreams | None = None
    # The web console's sessions and live figures (``/console``).
    console: ConsoleRuntime = field(default_factory=ConsoleRuntime)
