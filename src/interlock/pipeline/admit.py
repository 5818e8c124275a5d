"""The admit stage: whether the gateway spends any work on this request.

Cheapest refusal first, all of it timed as the ``admission`` stage:

1. authentication: the key is known, not revoked, not expired, or the JWT
   verifies and names a known tier (401, 403);
2. permissions: the key's model allow-list, and forcing a deployment (403);
3. the in-flight slot: load shedding across all keys, with a short bounded
   wait queue served higher tiers first (503 + Retry-After);
4. budgets, then rate limits and the key's concurrency (429 + Retry-After):
   one Redis round trip when limits are shared. A stream holds its
   concurrency lease like any request, until its last byte.

What admission takes is given back in two places: the in-flight slot by
``Admitted.release`` when the answer is complete (for a stream, when it
closes), the rate-limit reservation and concurrency lease by
``Accounting.finish`` after the last byte, when the actual usage is known.
The policies live in ``interlock.admission``; this module only orders them.
"""

from __future__ import annotations

import time

from interlock.admission.concurrency import InFlightLimiter
from interlock.admission.gate import AdmissionGate
from interlock.admission.keys import KeyRing, Principal
from interlock.errors import PermissionDenied
from interlock.pipeline.request import ModelRequest
from interlock.telemetry.metrics import Metrics
from interlock.telemetry.record import RequestRecord

__all__ = ["AdmissionStage", "Admitted"]


class Admitted:
    """An admitted request: who is calling, and the in-flight slot it holds."""

    __slots__ = ("_stage", "principal")

    def __init__(self, principal: Principal, stage: AdmissionStage | None):
        self.principal = principal
        self._stage = stage

    def release(self) -> None:
        """Give the in-flight slot back; later calls do nothing."""
        stage, self._stage = self._stage, None
        if stage is not None:
            stage.release_slot()


class AdmissionStage:
    def __init__(
        self, keys: KeyRing, in_flight: InFlightLimiter, gate: AdmissionGate, metrics: Metrics
    ):
        self.keys = keys
        self.in_flight = in_flight
        self.gate = gate
        self._metrics = metrics

    @property
    def limits_degraded(self) -> bool:
        """True while shared limits are out and per-instance limits stand in."""
        return bool(getattr(self.gate.limiter, "degraded", False))

    def identify(self, authorization: str | None, record: RequestRecord) -> Principal:
        """Authentication alone, for routes that call no model (``/v1/models``).
        It fetches nothing: a JWT whose signing key is not fetched yet is a
        401 here until the key set is next refreshed (or a model request
        fetches it)."""
        return _identified(self.keys.authenticate(authorization), record)

    async def admit(self, request: ModelRequest) -> Admitted:
        record = request.record
        began = time.perf_counter()
        try:
            principal = await self.keys.authenticate_or_refresh(request.authorization)
            return await self._admit(principal, request)
        finally:
            record.stages["admission"] = time.perf_counter() - began

    async def admit_as(self, principal: Principal, request: ModelRequest) -> Admitted:
        """Admission for a caller the edge identified itself, without a
        credential: the search page's anonymous visitors, one principal per
        client address. Everything after authentication is the same."""
        record = request.record
        began = time.perf_counter()
        try:
            return await self._admit(principal, request)
        finally:
            record.stages["admission"] = time.perf_counter() - began

    async def _admit(self, principal: Principal, request: ModelRequest) -> Admitted:
        record = request.record
        _identified(principal, record)
        _check_permissions(principal, request)
        await self._take_slot(principal.priority)
        try:
            # The body is not validated yet: the token estimate counts what
            # looks right, and validation refuses the rest next.
            await self.gate.admit(principal, record, request.body)
        except BaseException:
            self.release_slot()
            raise
        return Admitted(principal, self)

    async def _take_slot(self, priority: int) -> None:
        limiter = self.in_flight
        if limiter.queued or limiter.in_flight >= limiter.max_in_flight:
            self._metrics.queue_depth.set(limiter.queued + 1)
        await limiter.acquire(priority)

    def release_slot(self) -> None:
        self.in_flight.release()
        self._metrics.queue_depth.set(self.in_flight.queued)


def _identified(principal: Principal, record: RequestRecord) -> Principal:
    record.key_name = principal.name
    record.key_id = principal.key_id
    return principal


def _check_permissions(principal: Principal, request: ModelRequest) -> None:
    model = request.model
    if model is not None and not principal.may_use(model):
        raise PermissionDenied(
            f"This key may not use the model `{model}`.", code="model_not_allowed"
        )
    if request.options.forced is not None and "force_deployment" not in principal.permissions:
        raise PermissionDenied(
            "This key may not force a deployment (permission `force_deployment`)."
        )
