"""What the guardrails cost, in process: the input check and each streamed chunk.

Times ``Guardrails.check_input`` on a chat request of about 4 KB (clean
text, and the same with a dozen PII values in it) under several policies,
and ``StreamRedactor.feed`` / ``StreamRestorer.feed`` per chunk on a ~4 KB
answer streamed in token-sized pieces (4 characters). Medians of
interleaved runs. Run: ``python bench/guardrails_cost.py``; writes
``bench/results/guardrails_cost.md``.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from interlock.guardrails import (
    Guardrails,
    GuardrailsConfig,
    PiiScanner,
    StreamRedactor,
    StreamRestorer,
)

OUT = Path(__file__).parent / "results" / "guardrails_cost.md"
REPEATS = 9
CHUNK = 4

_PROSE = (
    "The quarterly report covers revenue, churn and the roadmap for the next two releases. "
    "Please summarise the main risks, list the owners of each action item, and suggest which "
    "metrics we should watch weekly. Version 2.4.1 shipped on 2024-05-02 with 37 fixes. "
)
_PII = (
    "Contact Maria at maria.lopez@example.com or +34 612 345 678; the invoice went to "
    "(415) 555-2671. Card 4111 1111 1111 1111 was charged, refund to IBAN "
    "DE89 3704 0044 0532 0130 00. Her SSN 212-45-7788 is on file; the VPN logged "
    "10.20.30.40 and 2001:db8::42. Rotate key AKIAIOSFODNN7EXAMPLE today. "
)


def _text(size: int, with_pii: bool) -> str:
    base = (_PROSE * 2 + _PII) if with_pii else _PROSE * 3
    return (base * (size // len(base) + 1))[:size]


def _body(with_pii: bool) -> dict[str, Any]:
    text = _text(4096 - 200, with_pii)
    return {
        "model": "m",
        "max_tokens": 512,
        "messages": [
            {"role": "system", "content": "You are a concise analyst. Answer in bullet points."},
            {"role": "user", "content": text[:2000]},
            {"role": "assistant", "content": "Noted. Anything else?"},
            {"role": "user", "content": text[2000:]},
        ],
    }


POLICIES: dict[str, dict[str, Any]] = {
    "PII redact": {"pii": {"action": "redact"}},
    "PII pseudonymize": {"pii": {"action": "pseudonymize"}},
    "injection + content only": {"injection": {"action": "flag"}, "content": {"action": "flag"}},
    "all checks (PII redact, injection, content, limits)": {
        "pii": {"action": "redact"},
        "injection": {"action": "flag"},
        "content": {"action": "flag"},
        "limits": {"max_messages": 50, "max_total_chars": 100_000, "max_tokens": 4096},
    },
}


@dataclass(frozen=True)
class Case:
    what: str
    case: str
    action: Callable[[], object]
    rounds: int
    per: int = 1  # units per action (chunks per streamed answer)


def _stream(make: Callable[[], StreamRedactor | StreamRestorer], text: str) -> tuple[Any, int]:
    chunks = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)]

    def run() -> None:
        stream = make()
        for chunk in chunks:
            stream.feed(chunk)
        stream.flush()

    return run, len(chunks)


def _cases() -> list[Case]:
    cases: list[Case] = []
    for label, raw in POLICIES.items():
        guardrails = Guardrails(GuardrailsConfig.from_mapping(raw))
        for with_pii in (False, True):
            check = partial(guardrails.check_input, _body(with_pii))
            case = f"{label}; {'with' if with_pii else 'no'} PII"
            cases.append(Case("check_input, 4 KB request", case, check, 200))
    scanner = PiiScanner.for_types()
    pseudonymize = Guardrails(GuardrailsConfig.from_mapping({"pii": {"action": "pseudonymize"}}))
    vault = pseudonymize.check_input(_body(True)).vault
    assert vault is not None
    answer_pii = _text(4096, True)
    streams = {
        "StreamRedactor, no PII": _stream(lambda: StreamRedactor(scanner), _text(4096, False)),
        "StreamRedactor, with PII": _stream(lambda: StreamRedactor(scanner), answer_pii),
        "StreamRestorer, placeholders": _stream(
            lambda: StreamRestorer(vault), scanner.redact(answer_pii, vault.placeholder)
        ),
    }
    for label, (run, chunks) in streams.items():
        cases.append(Case(f"per {CHUNK}-char chunk, 4 KB answer", label, run, 10, chunks))
    redact = partial(scanner.redact, answer_pii)
    cases.append(
        Case("whole text, 4 KB", "PiiScanner.redact (unary answer, log line)", redact, 200)
    )
    return cases


def _measure(cases: list[Case]) -> list[tuple[Case, float, float]]:
    """Median and best µs per unit; runs interleaved so drift hits every case alike."""
    for case in cases:  # warm up
        for _ in range(max(case.rounds // 10, 1)):
            case.action()
    runs: dict[int, list[float]] = {i: [] for i in range(len(cases))}
    for _ in range(REPEATS):
        for i, case in enumerate(cases):
            began = time.perf_counter()
            for _ in range(case.rounds):
                case.action()
            runs[i].append((time.perf_counter() - began) / (case.rounds * case.per) * 1e6)
    return [(case, statistics.median(runs[i]), min(runs[i])) for i, case in enumerate(cases)]


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    rows = _measure(_cases())
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        "# Guardrails cost (bench/guardrails_cost.py)",
        "",
        f"Commit {_commit()}, {datetime.now(UTC):%Y-%m-%d}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), load average "
        f"{load} at the end (the machine was shared: read the best column as the cost, the "
        f"median as what a busy box sees); {REPEATS} interleaved runs, in process, one thread. "
        'The 4 KB request is 4 messages; "with PII" holds 12 values of 8 types.',
        "",
        "| what | case | µs median | µs best |",
        "| --- | --- | --- | --- |",
        *(f"| {c.what} | {c.case} | {median:.1f} | {best:.1f} |" for c, median, best in rows),
        "",
    ]
    report = "\n".join(lines)
    print(report)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
