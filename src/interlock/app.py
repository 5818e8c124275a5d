"""The composition root: builds every service from the config, once.

Nothing is created at import time; ``create_app`` returns an ASGI app whose
lifespan opens the upstream pools and closes them (and flushes telemetry)
on shutdown.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from starlette.types import ASGIApp

from interlock.admission.accounting import Accounting
from interlock.admission.concurrency import InFlightLimiter
from interlock.admission.gate import AdmissionGate, BudgetGuard
from interlock.admission.jwt_auth import JwtAuthenticator
from interlock.admission.keys import KeyRing
from interlock.admission.limits import FailoverLimiter, MemoryLimiter, RateLimiter, RedisLimiter
from interlock.api.asgi import GatewayApp
from interlock.api.background_streams import BackgroundStreams
from interlock.api.middleware import DrainState, RequestContextMiddleware
from interlock.api.services import RecordsRef, Services
from interlock.api.side_calls import SideCalls
from interlock.batch.metrics import BatchMetrics
from interlock.batch.runtime import BatchRuntime, open_batch
from interlock.cache import CacheSettings, ResponseCache
from interlock.config import ConfigError, DeploymentConfig, GatewayConfig
from interlock.console.runtime import ConsoleRuntime
from interlock.guardrails import GuardrailsBook, GuardrailsConfig
from interlock.pipeline import (
    AdmissionStage,
    Attempts,
    CacheStage,
    GuardrailsStage,
    Pipeline,
    RouteStage,
    Validation,
)
from interlock.pipeline.price_book import PriceBook
from interlock.pipeline.price_catalog import PriceCatalog
from interlock.pipeline.pricing import Price
from interlock.pipeline.web_search import WebSearch
from interlock.providers.base import Provider
from interlock.providers.registry import build_provider
from interlock.redaction import Redactor
from interlock.registry.canary import Breach, CanaryJudge
from interlock.registry.models import RegisteredModels
from interlock.registry.service import RegistryService
from interlock.registry.store import RegistryStore
from interlock.registry.sync import RegistrySync
from interlock.routing.base import DeploymentInfo
from interlock.routing.breaker import STATE_GAUGE, BreakerConfig, BreakerState, CircuitBreaker
from interlock.routing.chaos import ChaosControl, ChaosProvider
from interlock.routing.retry import RetryBudget, RetryPolicy
from interlock.routing.router import Deployment, ModelGroup, Router
from interlock.routing.strategies import build_strategy
from interlock.search.chain import BackendChain, build_backends
from interlock.search.service import ResultSource, SearchService
from interlock.search.tasks import TaskBoard
from interlock.search.web_tool import WebBackends, web_backend_names
from interlock.state import StateStore, StoreHealth, build_state_store
from interlock.store import Store, data_dir, open_store
from interlock.store.blobs import build_blob_store
from interlock.telemetry.access_log import AccessLog
from interlock.telemetry.cache_metrics import CacheCollector, CacheMetricsMirror
from interlock.telemetry.health import DeploymentHealth, HealthBoard
from interlock.telemetry.hub import Telemetry
from interlock.telemetry.metrics import Metrics
from interlock.tokens import TokenCounter, default_counter

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["Gateway", "build_gateway", "create_app"]


def provider_factory(
    config: GatewayConfig,
    counter: TokenCounter,
    chaos: ChaosControl,
    redactor: Redactor | None = None,
    metrics: Metrics | None = None,
) -> Callable[[DeploymentConfig], Provider]:
    """Builds one deployment's adapter. Adapters sit behind the chaos wrapper
    when chaos is configured or the admin API is on, so PUT /admin/chaos can
    arm drills at run time; otherwise streams skip the wrapper's per-chunk
    step. In-process engines report their batch sizes to ``metrics``."""
    chaos_armed = bool(
        config.chaos.enabled or config.chaos.rules or config.server.admin_key is not None
    )

    def build(deployment: DeploymentConfig) -> Provider:
        try:
            provider = build_provider(deployment, counter, redactor)
        except ValueError as exc:  # an adapter's own params, checked as it is built
            raise ConfigError(f"deployment {deployment.id}: {exc}") from None
        if metrics is not None and hasattr(provider, "on_batch"):
            provider.on_batch = metrics.infer_batch_size.labels(deployment.id).observe
        return ChaosProvider(provider, chaos) if chaos_armed else provider

    return build


def build_providers(
    config: GatewayConfig, build: Callable[[DeploymentConfig], Provider]
) -> dict[str, Provider]:
    """The config file's adapters, by deployment id."""
    return {d.id: build(d) for model in config.models for d in model.deployments}


def build_router(
    config: GatewayConfig,
    providers: Mapping[str, Provider],
    telemetry: Telemetry,
    store: StateStore,
    rng: random.Random,
    prices: PriceBook,
    clock: Callable[[], float] = time.monotonic,
) -> Router:
    created = int(time.time())
    metrics = telemetry.metrics

    def on_transition(deployment: str, before: BreakerState, after: BreakerState) -> None:
        metrics.breaker_transitions.labels(deployment, before.value, after.value).inc()
        metrics.breaker_state.labels(deployment).set(STATE_GAUGE[after])
        health = telemetry.health.by_deployment.get(deployment)
        if health is not None:  # None if the registry replaced its model group
            health.breaker_changed(before, after)

    groups = {}
    for model in config.models:
        settings = model.routing
        breaker_config = BreakerConfig(**settings.breaker.model_dump())
        deployments = [
            Deployment(
                provider=providers[d.id],
                info=_deployment_info(d, prices.add(d)),
                breaker=CircuitBreaker(d.id, store, breaker_config, on_transition=on_transition),
                health=telemetry.health.by_deployment[d.id],
                timeouts=d.timeouts,
            )
            for d in model.deployments
        ]
        for deployment in deployments:
            metrics.breaker_state.labels(deployment.id).set(0)
            deployment.health.follow_breaker(deployment.breaker)
        retry = RetryPolicy(
            settings.max_attempts,
            settings.backoff_base_s,
            settings.backoff_max_s,
            rng=rng,
        )
        groups[model.name] = ModelGroup(
            model.name,
            deployments,
            build_strategy(settings.strategy, settings.params, rng),
            settings,
            retry,
            RetryBudget(settings.retry_budget_ratio),
            created,
        )
    aliases = {alias: model.name for model in config.models for alias in model.aliases}
    return Router(groups, metrics, clock=clock, aliases=aliases)


def _deployment_info(deployment: DeploymentConfig, price: Price | None) -> DeploymentInfo:
    # The cost strategy ranks an unknown price as free: it cannot know better.
    return DeploymentInfo(
        id=deployment.id,
        weight=deployment.weight,
        priority=deployment.priority,
        input_price=price.base.input if price is not None else 0.0,
        output_price=price.base.output if price is not None else 0.0,
        version=deployment.version,
        tags=frozenset(deployment.tags),
    )


def build_telemetry(
    config: GatewayConfig,
    providers: Mapping[str, Provider],
    span_exporter: SpanExporter | None,
    log_stream: BinaryIO | None = None,
    redactor: Redactor | None = None,
    metrics: Metrics | None = None,
) -> Telemetry:
    settings = config.telemetry
    health = HealthBoard(
        {
            model.name: [
                DeploymentHealth(d.id, providers[d.id].provider_name) for d in model.deployments
            ]
            for model in config.models
        },
        unhealthy_after=settings.unhealthy_after_failures,
    )
    tracing = None
    if settings.tracing.enabled or span_exporter is not None:
        from interlock.telemetry.tracing import Tracing  # the SDK only when tracing is on

        tracing = Tracing(
            settings.tracing.service_name,
            exporter=span_exporter,
            otlp_endpoint=settings.tracing.otlp_endpoint,
            sample_rate=settings.tracing.sample_rate,
            batch=span_exporter is None,
        )
    return Telemetry(
        settings,
        metrics or Metrics(),
        health,
        access_log=AccessLog(log_stream, redactor=redactor) if config.server.access_log else None,
        tracing=tracing,
    )


def build_guardrails(config: GatewayConfig, metrics: Metrics) -> GuardrailsStage:
    """The top-level policy, overridden per model group and then per key.

    Always built, even with no policy anywhere in the config: a key created
    through the admin API may bring its own. A request whose policy checks
    nothing skips the stage after one dict lookup.
    """
    groups = {m.name: m.guardrails for m in config.models if m.guardrails is not None}
    try:
        book = GuardrailsBook(GuardrailsConfig.from_mapping(config.guardrails), groups=groups)
        for key in config.keys:
            book.check_key_override(key.guardrails, where=f"keys[{key.name}].guardrails")
    except ValueError as exc:
        raise ConfigError(f"guardrails: {exc}") from None
    return GuardrailsStage(book, metrics)


def build_cache(config: GatewayConfig, state: StateStore) -> ResponseCache | None:
    settings = config.cache
    if not settings.enabled:
        return None
    shared = config.state.backend == "redis"
    return ResponseCache(
        CacheSettings(
            ttl_s=settings.ttl_s,
            model_ttl_s=settings.model_ttl_s,
            cache_nondeterministic=settings.cache_nondeterministic,
            shared_namespace=settings.shared_namespace,
            l1_max_entries=settings.l1_max_entries,
            l1_max_bytes=settings.l1_max_bytes,
            # On the memory store a second tier would only copy the first.
            l2_enabled=shared,
            remote_wait_s=settings.remote_wait_s if shared else 0.0,
        ),
        state,
    )


def build_search(
    config: GatewayConfig,
    pipeline: Pipeline,
    state: StateStore,
    telemetry: Telemetry,
    accounting: Accounting,
) -> SearchService | None:
    """The AI search service on this pipeline (None when ``search.enabled``
    is false). Its backends are built at the first search."""
    settings = config.search
    if not settings.enabled:
        return None

    def open_source() -> BackendChain:
        backends = build_backends(settings)
        return BackendChain(list(zip(backends, settings.backends, strict=True)), store=state)

    return SearchService(
        settings,
        pipeline,
        open_source,
        TaskBoard(state, settings.task_ttl_s),
        telemetry,
        accounting,
        default_model=settings.model or config.models[0].name,
    )


@dataclass(slots=True)
class RegistryParts:
    """The registry's pieces that live for the whole process; the records
    store they need opens later, in the lifespan (``open``)."""

    config: GatewayConfig
    models: RegisteredModels
    judge: CanaryJudge
    make_provider: Callable[[DeploymentConfig], Provider]
    state: StateStore
    metrics: Metrics
    service: RegistryService | None = None

    async def open(self, store: Store, configured_names: frozenset[str]) -> RegistryService:
        sync = RegistrySync(
            RegistryStore(store.engine),
            self.models,
            self.state,
            self.config.registry,
            on_reload=self.metrics.registry_reloads.inc,
        )
        self.service = RegistryService(
            sync.store,
            sync,
            configured_names=configured_names,
            make_provider=self.make_provider,
            on_rollback=lambda model, trigger: self.metrics.registry_rollbacks.labels(
                model, trigger
            ).inc(),
        )
        await sync.reload()
        sync.start()
        return self.service


def build_registry(
    config: GatewayConfig,
    router: Router,
    telemetry: Telemetry,
    state: StateStore,
    make_provider: Callable[[DeploymentConfig], Provider],
    rng: random.Random,
    prices: PriceBook,
) -> RegistryParts:
    metrics = telemetry.metrics

    def on_transition(deployment: str, before: BreakerState, after: BreakerState) -> None:
        metrics.breaker_transitions.labels(deployment, before.value, after.value).inc()
        metrics.breaker_state.labels(deployment).set(STATE_GAUGE[after])
        health = telemetry.health.by_deployment.get(deployment)
        if health is not None:  # None once its version left the registry
            health.breaker_changed(before, after)
        if after is BreakerState.OPEN:
            judge.breaker_opened(deployment)

    breaker_config = BreakerConfig(**config.registry.routing.breaker.model_dump())

    def make_deployment(
        provider: Provider, deployment: DeploymentConfig, info: DeploymentInfo
    ) -> Deployment:
        metrics.breaker_state.labels(deployment.id).set(0)
        prices.add(deployment)
        breaker = CircuitBreaker(deployment.id, state, breaker_config, on_transition=on_transition)
        health = DeploymentHealth(deployment.id, provider.provider_name)
        health.follow_breaker(breaker)
        return Deployment(
            provider=provider,
            info=info,
            breaker=breaker,
            health=health,
            timeouts=deployment.timeouts,
        )

    def on_breach(breach: Breach) -> None:
        if parts.service is not None:
            parts.service.breached(breach)

    judge = CanaryJudge(config.registry.canary, on_breach)
    models = RegisteredModels(
        router,
        telemetry.health,
        make_provider=make_provider,
        make_deployment=make_deployment,
        judge=judge,
        rng=rng,
        settings=config.registry.routing,
    )
    parts = RegistryParts(config, models, judge, make_provider, state, metrics)
    return parts


def build_store_health(config: GatewayConfig, metrics: Metrics) -> StoreHealth | None:
    """The one latch for the Redis that the state store and the limiter share
    (None on the memory backend); ``interlock_limits_degraded`` follows it."""
    if config.state.backend != "redis":
        return None
    settings = config.state.health
    health = StoreHealth(
        trip_after=settings.trip_after,
        probe_after_s=settings.probe_after_s,
        probe_max_s=settings.probe_max_s,
    )
    health.on_change(lambda available: metrics.limits_degraded.set(0 if available else 1))
    return health


def build_limiter(config: GatewayConfig, health: StoreHealth | None) -> RateLimiter:
    """Shared limits through Redis when the state backend is Redis (with
    per-instance limits while it is out), else in-process limits."""
    if health is None or config.state.url is None:
        return MemoryLimiter()
    return FailoverLimiter(
        RedisLimiter.from_url(
            config.state.url,
            prefix=config.state.prefix,
            timeout_s=config.state.timeout_s,
            health=health,
        ),
        MemoryLimiter(),
        health=health,
        mode=config.admission.on_state_failure,
    )


@dataclass(frozen=True, slots=True)
class Gateway:
    """Every service, built; ``lifespan`` opens the stores and upstream pools
    and closes them again (flushing the usage ledger and telemetry)."""

    services: Services
    accounting: Accounting
    lifespan: Callable[[], AbstractAsyncContextManager[None]]
    keys: KeyRing
    batch_metrics: BatchMetrics

    def open_batch(self, config: GatewayConfig, *, run_worker: bool) -> BatchRuntime:
        """Batch inference on this gateway's pipeline (inside ``lifespan``)."""
        services = self.services
        return open_batch(
            config,
            services.records.get(),
            services.pipeline,
            services.telemetry,
            self.accounting,
            self.keys,
            services.blobs,
            self.batch_metrics,
            services.state,
            run_worker=run_worker,
        )


def create_app(
    config: GatewayConfig,
    *,
    drain: DrainState | None = None,
    counter: TokenCounter | None = None,
    span_exporter: SpanExporter | None = None,
    log_stream: BinaryIO | None = None,
    rng: random.Random | None = None,
    redactor: Redactor | None = None,
) -> ASGIApp:
    """The gateway as an ASGI app. ``span_exporter`` and ``log_stream`` let
    tests read traces and the access log in process; ``rng`` makes routing
    reproducible; ``redactor`` is one the process built already for its logs
    (default: built from ``config`` and the environment)."""
    drain = drain or DrainState()
    gateway = build_gateway(
        config,
        drain=drain,
        counter=counter,
        span_exporter=span_exporter,
        log_stream=log_stream,
        rng=rng,
        redactor=redactor,
    )
    services = gateway.services
    return RequestContextMiddleware(
        GatewayApp(services, gateway.lifespan), drain, services.telemetry, gateway.accounting
    )


def build_gateway(
    config: GatewayConfig,
    *,
    drain: DrainState | None = None,
    counter: TokenCounter | None = None,
    span_exporter: SpanExporter | None = None,
    log_stream: BinaryIO | None = None,
    rng: random.Random | None = None,
    redactor: Redactor | None = None,
    batch_worker: bool | None = None,
) -> Gateway:
    """Every service from the config, for the HTTP app or any other client of
    the pipeline (see ``create_app`` for the arguments). ``batch_worker``:
    run a batch worker in this process (default: ``batch.worker.in_process``)."""
    drain = drain or DrainState()
    rng = rng or random.Random()
    chaos = ChaosControl(config.chaos)
    # What no error body, event or log line may show: every secret in the config.
    redactor = redactor or Redactor.from_config(config, os.environ)
    metrics = Metrics()
    counter = counter or default_counter()
    make_provider = provider_factory(config, counter, chaos, redactor, metrics)
    providers = build_providers(config, make_provider)
    telemetry = build_telemetry(config, providers, span_exporter, log_stream, redactor, metrics)
    chaos.on_inject = lambda deployment, fault: metrics.chaos_injections.labels(
        deployment, fault
    ).inc()
    health = build_store_health(config, metrics)
    state = build_state_store(
        config.state.backend,
        config.state.url,
        prefix=config.state.prefix,
        timeout_s=config.state.timeout_s,
        health=health,
    )
    prices = PriceBook(PriceCatalog())
    router = build_router(config, providers, telemetry, state, rng, prices)
    registry = build_registry(config, router, telemetry, state, make_provider, rng, prices)
    jwt = config.admission.jwt
    keys = KeyRing(
        config.keys,
        config.tiers,
        jwt=JwtAuthenticator.from_config(jwt, config.tiers) if jwt is not None else None,
    )
    records = RecordsRef()
    limiter = build_limiter(config, health)
    budgets = BudgetGuard(lambda: records.store.ledger if records.store else None)
    gate = AdmissionGate(
        limiter,
        budgets,
        on_reject=lambda reason: metrics.limiter_rejections.labels(reason).inc(),
    )
    accounting = Accounting(gate=gate)
    cache = build_cache(config, state)
    cache_mirror: CacheMetricsMirror | None = None
    if cache is not None and metrics.multiprocess:
        cache_mirror = CacheMetricsMirror(cache, metrics.registry)
        metrics.before_render(cache_mirror.sync)
    elif cache is not None:
        metrics.registry.register(CacheCollector(cache))

    batch_metrics = BatchMetrics(metrics.registry)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        started: list[Provider] = []
        refresher: asyncio.Task[None] | None = None
        mirroring: asyncio.Task[None] | None = None
        batch: BatchRuntime | None = None
        try:
            records.store = await open_store(
                config.store.url, ledger_journal_dir=config.store.journal_dir
            )
            keys.use_store(records.store.keys)
            await keys.refresh()
            refresher = asyncio.create_task(keys.run_refresher(config.admission.key_refresh_s))
            if cache_mirror is not None:
                mirroring = asyncio.create_task(cache_mirror.run())
            accounting.ledger = records.store.ledger
            for provider in providers.values():
                await provider.start()
                started.append(provider)
            if config.registry.enabled:
                services.registry.service = await registry.open(
                    records.store, router.configured_names
                )
            if config.batch.enabled:
                run_worker = (
                    config.batch.worker.in_process if batch_worker is None else batch_worker
                )
                batch = gateway.open_batch(config, run_worker=run_worker)
                services.batches.service, services.batches.runtime = batch.service, batch
            yield
        finally:
            if services.background_streams is not None:  # each stored as it stopped
                await services.background_streams.aclose(_drain_left(drain, config))
            if batch is not None:  # items in flight finish or go back to the queue
                services.batches.service = services.batches.runtime = None
                await batch.aclose()
            if registry.service is not None:
                services.registry.service = None
                await registry.service.aclose()
            # Requests have drained by now: stop polling, release upstreams,
            # then flush the usage ledger so nothing is lost on SIGTERM.
            if refresher is not None:
                refresher.cancel()
                # Waited for, not only cancelled: a refresh caught mid-query must
                # hand its connection back before the pool closes. Left pending,
                # its aiosqlite connection (a non-daemon worker thread) outlived
                # the loop and the process hung at exit after a clean drain.
                await asyncio.wait([refresher])
            if mirroring is not None:
                mirroring.cancel()
                await asyncio.wait([mirroring])
            if search is not None:
                await search.aclose()
            pipeline.guardrails.book.close()
            if cache is not None:
                await cache.aclose()
            for provider in started:
                await provider.aclose()
            if records.store is not None:
                await budgets.spend.settle()
                await records.store.aclose()
            await state.aclose()
            await limiter.aclose()
            telemetry.shutdown()

    def reject(reason: str) -> None:
        metrics.limiter_rejections.labels(reason).inc()

    limits = config.limits
    in_flight = InFlightLimiter(
        limits.max_in_flight, limits.max_queue, limits.queue_timeout_s, reject
    )
    search: SearchService | None = None

    async def search_source() -> ResultSource:  # the service below, at the first search
        assert search is not None
        return await search.source()

    web_names = web_backend_names(config.search)
    web_search = (
        WebSearch(WebBackends(search_source, web_names), telemetry.web_search)
        if web_names
        else None
    )
    pipeline = Pipeline(
        AdmissionStage(keys, in_flight, gate, metrics),
        Validation(router, web_search),
        build_guardrails(config, metrics),
        CacheStage(cache),
        RouteStage(router, Attempts(telemetry, prices)),
    )
    search = build_search(config, pipeline, state, telemetry, accounting)
    admin_key = config.server.admin_key
    admin_digest = (
        hashlib.sha256(admin_key.reveal().encode()).digest() if admin_key is not None else None
    )
    services = Services(
        pipeline=pipeline,
        drain=drain,
        max_body_bytes=config.server.max_request_body_bytes,
        telemetry=telemetry,
        chaos=chaos,
        records=records,
        tiers=frozenset(config.tiers),
        state=state,
        side_calls=SideCalls(pipeline, telemetry, accounting),
        state_outage_fatal=config.admission.on_state_failure == "fail_closed",
        admin_key_digest=admin_digest,
        public_deployment_health=config.server.public_deployment_health,
        redactor=redactor,
        search=search,
        files=config.files,
        blobs=build_blob_store(config.files, data_dir() / "files"),
        responses=config.responses,
        chat_completions=config.chat_completions,
        counter=counter,
        background_streams=BackgroundStreams(
            pipeline,
            telemetry,
            accounting,
            state,
            config.responses.background_events_s,
            redactor,
        ),
        console=ConsoleRuntime.for_admin_key(admin_digest),
    )
    gateway = Gateway(services, accounting, lifespan, keys, batch_metrics)
    return gateway


def _drain_left(drain: DrainState, config: GatewayConfig) -> float:
    """What is left of the drain's time, once the connections have drained
    (none when the gateway stops without one: a test's, a worker's)."""
    if drain.began_at is None:
        return 0.0
    return max(0.0, config.server.drain_timeout_s - (time.monotonic() - drain.began_at))
