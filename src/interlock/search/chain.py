"""The configured backends, in order: the first that answers wins.

Each backend is tried with its own retries and behind its own circuit
breaker, as the router treats model deployments:

- Retries: after a retryable ``BackendError`` the same backend is asked up to
  ``retries`` more times, after a full-jitter backoff (``routing.retry.
  RetryPolicy``: at most ``_MAX_BACKOFF_S``). A non-retryable error (a refused
  key, a malformed answer) goes straight to the next backend.
- Breaker: ``routing.breaker.CircuitBreaker``, the router's own, reused
  rather than a second one: ``failure_threshold`` failed tries in a row open
  it for ``cooldown_s`` (not growing: a search backend's outage is not
  probed harder than its config says); then one try probes it, and one
  success closes it. Every try asks the breaker first and reports its
  outcome, so a backend that trips during its retries is not asked again.
  Its state lives in the given ``StateStore``: the gateway's, so instances
  share it, or by default an in-process one.

Errors::

    BackendError            (base.py) one backend failed
    ├── CircuitOpen         skipped: its breaker is open
    └── NoBackendAnswered   every backend failed or was skipped; lists each

An empty result list is an answer: the backend worked and found nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from interlock.config import ConfigError
from interlock.config.search import (
    BackendSettings,
    BraveBackendConfig,
    GoogleBackendConfig,
    LocalBackendConfig,
    SearchBackendConfig,
    SearchConfig,
    SearxngBackendConfig,
)
from interlock.routing.breaker import BreakerConfig, BreakerState, CircuitBreaker
from interlock.routing.retry import RetryPolicy
from interlock.search.backends.base import BackendError, SearchBackend, SearchResult
from interlock.state.base import StateStore
from interlock.state.memory import MemoryStateStore

__all__ = [
    "BackendChain",
    "ChainAnswer",
    "CircuitOpen",
    "NoBackendAnswered",
    "build_backends",
]

log = logging.getLogger("interlock.search")

Sleep = Callable[[float], Awaitable[None]]

_BACKOFF_BASE_S = 0.05
_MAX_BACKOFF_S = 0.5


class CircuitOpen(BackendError):
    """The backend was skipped: its breaker is open after repeated failures."""

    def __init__(self, backend: str):
        super().__init__(backend, "skipped: circuit open after repeated failures")


class NoBackendAnswered(BackendError):
    """Every backend failed or was skipped; ``failures`` says why, in order."""

    def __init__(self, failures: Sequence[tuple[str, BackendError]]):
        reasons = "; ".join(str(error) for _, error in failures) or "none configured"
        super().__init__("search", f"no backend answered ({reasons})")
        self.failures = list(failures)


@dataclass(slots=True)  # not frozen: the service's ``Answer`` protocol has plain attributes
class ChainAnswer:
    """The results, the backend that gave them, and the ones that failed first."""

    results: list[SearchResult]
    backend: str
    tried: list[tuple[str, BackendError]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Link:
    backend: SearchBackend
    breaker: CircuitBreaker
    retry: RetryPolicy


class BackendChain:
    """Asks ``members`` in order; each is a backend and its ``BackendSettings``
    (from ``build_backends``: ``zip(backends, config.backends, strict=True)``).

    ``store``: where the breakers keep their state (default: in this process,
    on ``clock``); ``clock``/``wall``: the breakers' monotonic and epoch clocks;
    ``sleep``: waits out the backoff between retries; ``rng``: its jitter.
    """

    def __init__(
        self,
        members: Sequence[tuple[SearchBackend, BackendSettings]],
        *,
        store: StateStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ):
        store = store or MemoryStateStore(clock)
        rng = rng or random.Random()
        self._sleep = sleep
        self._links = [
            _Link(
                backend,
                CircuitBreaker(
                    f"search:{backend.name}",
                    store,
                    _breaker_config(settings),
                    clock=clock,
                    wall=wall,
                    on_transition=_log_transition,
                ),
                RetryPolicy(settings.retries + 1, _BACKOFF_BASE_S, _MAX_BACKOFF_S, rng=rng),
            )
            for backend, settings in members
        ]

    @property
    def names(self) -> list[str]:
        return [link.backend.name for link in self._links]

    async def search(
        self, query: str, num_results: int, safe_search: bool, only: str | None = None
    ) -> ChainAnswer:
        """The first answer, in configured order; ``NoBackendAnswered`` if none.

        ``only``: ask just the backend of that name (one of ``names``), with
        its retries and breaker; no other answers for it.
        """
        links = self._links
        if only is not None:
            links = [link for link in links if link.backend.name == only]
            if not links:
                raise ValueError(f"no search backend named {only!r}")
        tried: list[tuple[str, BackendError]] = []
        for link in links:
            try:
                results = await self._ask(link, query, num_results, safe_search)
            except BackendError as exc:
                tried.append((link.backend.name, exc))
                continue
            return ChainAnswer(results[:num_results], link.backend.name, tried)
        raise NoBackendAnswered(tried)

    async def close(self) -> None:
        for link in self._links:
            await link.backend.close()

    async def _ask(
        self, link: _Link, query: str, num_results: int, safe_search: bool
    ) -> list[SearchResult]:
        """One backend, with its retries, each try cleared and counted by its breaker."""
        last: BackendError | None = None
        for attempt in range(1, link.retry.max_attempts + 1):
            if last is not None:
                await self._sleep(link.retry.backoff(attempt - 1))
            if not await link.breaker.allow():
                raise last or CircuitOpen(link.backend.name)
            try:
                results = await link.backend.search(query, num_results, safe_search=safe_search)
            except BackendError as exc:
                await link.breaker.record_failure()
                if not exc.retryable:
                    raise
                last = exc
                continue
            except BaseException:
                # Cancelled, or our own bug: says nothing about the backend.
                await link.breaker.record_ignored()
                raise
            await link.breaker.record_success()
            return results
        assert last is not None  # max_attempts >= 1, and every try failed
        raise last


def _breaker_config(settings: BackendSettings) -> BreakerConfig:
    threshold = settings.failure_threshold
    return BreakerConfig(
        consecutive_failures=threshold,
        # The error-rate trip adds nothing here: "all of the last few failed"
        # is what the consecutive count already says.
        error_rate=1.0,
        min_requests=threshold,
        open_s=settings.cooldown_s,
        max_open_s=settings.cooldown_s,
        half_open_probes=1,
        close_after=1,
        # A probe's slot frees itself only if its instance died mid-try.
        probe_timeout_s=max(30.0, 2 * settings.timeout_s),
    )


def _log_transition(breaker_id: str, old: BreakerState, new: BreakerState) -> None:
    level = logging.WARNING if new is BreakerState.OPEN else logging.INFO
    log.log(level, "%s: circuit %s -> %s", breaker_id, old.value, new.value)


def build_backends(
    config: SearchConfig, *, environ: Mapping[str, str] | None = None
) -> list[SearchBackend]:
    """One backend per ``config.backends`` entry, in order.

    ``environ``: the data directory (``INTERLOCK_DATA_DIR``, for the local
    index) and the proxy variables (for web backends); default: the process's.
    Blocking (the local backend may build its index first): call it at start,
    off the event loop. If one fails, those already built are left unstarted:
    web and OpenSearch clients connect lazily, at the first search.
    """
    return [_build(entry, environ) for entry in config.backends]


def _build(entry: SearchBackendConfig, environ: Mapping[str, str] | None) -> SearchBackend:
    # Imported here: each backend's module (and OpenSearch's optional client)
    # loads only when configured.
    if isinstance(entry, LocalBackendConfig):
        from interlock.search.backends.local import open_local_backend

        return open_local_backend(entry, os.environ if environ is None else environ)
    if isinstance(entry, SearxngBackendConfig):
        from interlock.search.backends.searxng import SearxngBackend

        return SearxngBackend.from_config(entry, environ)
    if isinstance(entry, BraveBackendConfig):
        from interlock.search.backends.brave import BraveBackend

        return BraveBackend.from_config(entry, environ)
    if isinstance(entry, GoogleBackendConfig):
        from interlock.search.backends.google import GoogleBackend

        return GoogleBackend.from_config(entry, environ)
    try:
        from interlock.search.backends.opensearch import OpenSearchBackend
    except ImportError as exc:
        raise ConfigError(
            f"search backend {entry.name or entry.type!r} needs the OpenSearch client: "
            f"pip install 'interlock[opensearch]' ({exc})"
        ) from None
    return OpenSearchBackend.from_config(entry)
