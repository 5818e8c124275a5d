"""The admit stage as one unit: its order, what it holds, what it times."""

from __future__ import annotations

import asyncio

import pytest

from interlock.admission.concurrency import InFlightLimiter
from interlock.admission.gate import AdmissionGate, BudgetGuard
from interlock.admission.keys import KeyRing
from interlock.admission.limits import Decision, KeyLimits, MemoryLimiter
from interlock.config import KeyConfig, Secret
from interlock.config.access import _default_tiers
from interlock.errors import AuthenticationFailed, TooManyRequests
from interlock.pipeline import AdmissionStage, ModelRequest, Operation
from interlock.telemetry.metrics import Metrics
from interlock.telemetry.record import RequestRecord

ROUND_TRIP_S = 0.05


class SlowLimiter(MemoryLimiter):
    """In-memory limits behind a round trip, as Redis's would be."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def admit(
        self, key: str, limits: KeyLimits, *, requests: int = 1, tokens: int = 0
    ) -> Decision:
        self.calls += 1
        await asyncio.sleep(ROUND_TRIP_S)
        return await super().admit(key, limits, requests=requests, tokens=tokens)


def _stage(limiter: MemoryLimiter, max_in_flight: int = 4) -> AdmissionStage:
    keys = KeyRing(
        [
            KeyConfig(name="std", key=Secret("sk-std"), tier="standard"),
            KeyConfig(name="prem", key=Secret("sk-prem"), tier="premium"),
        ],
        _default_tiers(),
    )
    gate = AdmissionGate(limiter, BudgetGuard(lambda: None))
    in_flight = InFlightLimiter(max_in_flight, max_queue=4, queue_timeout_s=30)
    return AdmissionStage(keys, in_flight, gate, Metrics())


def _request(key: str) -> ModelRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    record = RequestRecord("req", "POST", "/v1/chat/completions")
    return ModelRequest(Operation.CHAT, body, record, f"Bearer {key}")


async def test_the_stage_timing_covers_the_rate_limit_round_trip() -> None:
    stage = _stage(SlowLimiter())
    request = _request("sk-std")
    admitted = await stage.admit(request)
    assert request.record.stages["admission"] >= ROUND_TRIP_S
    admitted.release()
    admitted.release()  # once only
    assert stage.in_flight.in_flight == 0


async def test_an_unknown_key_takes_no_slot_and_reaches_no_limiter() -> None:
    limiter = SlowLimiter()
    stage = _stage(limiter)
    request = _request("sk-nobody")
    with pytest.raises(AuthenticationFailed):
        await stage.admit(request)
    assert (stage.in_flight.in_flight, limiter.calls) == (0, 0)
    assert "admission" in request.record.stages


async def test_a_refusal_by_the_limits_gives_the_slot_back() -> None:
    stage = _stage(MemoryLimiter())
    limits = stage.keys.authenticate("Bearer sk-std").rate_limits
    for _ in range(limits.rpm or 0):
        request = _request("sk-std")
        (await stage.admit(request)).release()
        await stage.gate.settle(request.record)  # as Accounting does after the last byte
    with pytest.raises(TooManyRequests):
        await stage.admit(_request("sk-std"))
    assert stage.in_flight.in_flight == 0


async def test_the_wait_queue_serves_higher_tiers_first() -> None:
    stage = _stage(MemoryLimiter(), max_in_flight=1)
    holder = await stage.admit(_request("sk-std"))
    order: list[str] = []

    async def wait(key: str) -> None:
        admitted = await stage.admit(_request(key))
        order.append(key)
        admitted.release()

    # Each task runs up to its wait in the queue at its first turn.
    standard = asyncio.create_task(wait("sk-std"))
    await asyncio.sleep(0)
    premium = asyncio.create_task(wait("sk-prem"))
    await asyncio.sleep(0)
    assert stage.in_flight.queued == 2
    holder.release()
    await asyncio.gather(standard, premium)
    assert order == ["sk-prem", "sk-std"]
