"""What telemetry costs per request and per streamed chunk, in process.

Times ``Telemetry.finish`` (metrics, access log, slow-request keeper, trace
span) and the per-chunk gap histogram, with each part on and off, on this
machine in this run. End-to-end figures are in results/latest.md; this
isolates the telemetry share. Run: ``python bench/telemetry_cost.py``.
"""

from __future__ import annotations

import asyncio
import io
import os
import platform
import statistics
import time
from collections.abc import Callable

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from interlock.app import build_providers, build_telemetry, provider_factory
from interlock.config import parse_config
from interlock.routing.chaos import ChaosControl
from interlock.telemetry.hub import Telemetry
from interlock.telemetry.record import RequestRecord
from interlock.tokens import EstimatingCounter

ROUNDS = 20_000
REPEATS = 5


class Discard(io.RawIOBase):
    """A log stream that writes nowhere (no file to leave open)."""

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        return len(data)  # type: ignore[arg-type]


class DroppingExporter(SpanExporter):
    """Accepts spans and throws them away: the export path without a network."""

    def export(self, spans: object) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _telemetry(access_log: bool, tracing: bool) -> Telemetry:
    raw = {
        "models": [{"name": "m", "deployments": [{"id": "d", "provider": "simulator"}]}],
        "keys": [{"name": "k", "key": "sk"}],
        "server": {"access_log": access_log},
    }
    config = parse_config(raw, env={})
    providers = build_providers(
        config, provider_factory(config, EstimatingCounter(), ChaosControl(config.chaos))
    )
    exporter = DroppingExporter() if tracing else None
    log = Discard() if access_log else io.BytesIO()
    return build_telemetry(config, providers, exporter, log)


def _request(telemetry: Telemetry) -> None:
    record = RequestRecord("req_bench", "POST", "/v1/chat/completions")
    telemetry.start(record, {})
    record.key_name, record.model, record.deployment, record.provider = "k", "m", "d", "openai"
    record.attempts, record.status = 1, 200
    record.input_tokens, record.output_tokens = 12, 40
    record.stages.update(admission=1e-6, validation=5e-6, routing=1e-6, upstream=1e-4)
    span = telemetry.child(
        record, "upstream d", __import__("opentelemetry.trace").trace.SpanKind.CLIENT
    )
    if span is not None:
        span.end()
    telemetry.metrics.observe_attempt(record, "d", 1e-4, None)
    telemetry.finish(record)


def _per_call_us(action: Callable[[], None]) -> float:
    for _ in range(1000):
        action()
    began = time.perf_counter()
    for _ in range(ROUNDS):
        action()
    return (time.perf_counter() - began) / ROUNDS * 1e6


def main() -> int:
    # Inside a running loop, as in the server: the access log flushes on a timer.
    return asyncio.run(_main())


async def _main() -> int:
    variants = {
        "metrics only (default minus access log)": _telemetry(False, False),
        "metrics + access log (default)": _telemetry(True, False),
        "metrics + access log + tracing (sampled 100 %)": _telemetry(True, True),
    }
    runs: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(REPEATS):  # interleaved, so drift hits every variant alike
        for label, telemetry in variants.items():
            runs[label].append(_per_call_us(lambda t=telemetry: _request(t)))  # type: ignore[misc]
    for telemetry in variants.values():
        telemetry.shutdown()
    rows = [(label, statistics.median(values)) for label, values in runs.items()]
    record = RequestRecord("req_bench", "POST", "/v1/chat/completions")
    gap = variants["metrics only (default minus access log)"].metrics.token_gap(record)
    rows.append(("per streamed chunk: gap histogram", _per_call_us(lambda: gap.observe(0.01))))
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"median of {REPEATS} interleaved runs of {ROUNDS}\n"
    )
    print("| telemetry per request | µs (CPU, in process) |")
    print("| --- | --- |")
    for label, micros in rows:
        print(f"| {label} | {micros:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
