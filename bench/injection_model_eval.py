"""Rules vs the learned injection model vs both (either flags), on holdouts.

Sets: ``holdout-2`` of ``bench/data/guardrails_eval.jsonl`` (written after the
last rule change) and ``bench/data/injection_holdout-3.jsonl`` (written after
the model's head was frozen; never used for training or for choosing its
threshold). ``dev`` and the training set are shown too, marked as seen.
Each detector at its default cut: the rules' 0.7, the head's trained
threshold. Cost: milliseconds per check of one ~1 KB and one ~4 KB prompt
on this machine's CPU (torch's default threads), median of repeated runs.

Prints markdown and writes ``bench/results/injection_model.md``.
Run (needs the ``injection-model`` extra): ``python bench/injection_model_eval.py``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from interlock.guardrails import InjectionDetector
from interlock.guardrails.injection_model import InjectionModel, load_injection_model

HERE = Path(__file__).parent
EVAL = HERE / "data" / "guardrails_eval.jsonl"
HOLDOUT_3 = HERE / "data" / "injection_holdout-3.jsonl"
TRAIN = HERE / "data" / "injection_train.jsonl"
OUT = HERE / "results" / "injection_model.md"
RULES_THRESHOLD = 0.7
PARAGRAPH = (
    "Our quarterly review covers revenue, hiring and the migration of the billing "
    "system to the new platform. Revenue grew twelve percent, driven by enterprise "
    "renewals; hiring is on plan except for two senior engineering roles. "
)


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def _sets() -> dict[str, list[dict[str, Any]]]:
    eval_rows = _rows(EVAL)
    return {
        "holdout-3 (fresh)": _rows(HOLDOUT_3),
        "holdout-2": [r for r in eval_rows if r.get("split") == "holdout-2"],
        "holdout-1": [r for r in eval_rows if r.get("split") == "holdout-1"],
        "dev (seen: rules and model)": [r for r in eval_rows if r.get("split", "dev") == "dev"],
        "training set (seen: model)": _rows(TRAIN),
    }


def _row(name: str, detector: str, labels: list[bool], flags: list[bool]) -> str:
    tp = sum(f and y for f, y in zip(flags, labels, strict=True))
    fp = sum(f and not y for f, y in zip(flags, labels, strict=True))
    fn = sum(y and not f for f, y in zip(flags, labels, strict=True))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return f"| {name} | {detector} | {tp} | {fp} | {fn} | {precision:.3f} | {recall:.3f} |"


def _median_ms(check: Callable[[], object], runs: int) -> float:
    check()  # warm-up
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        check()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def _cost(model: InjectionModel, rules: InjectionDetector) -> list[str]:
    lines = []
    for size in (1000, 4000):
        text = (PARAGRAPH * (size // len(PARAGRAPH) + 1))[:size]
        model_ms = _median_ms(lambda t=text: model.scores([t]), 30)  # type: ignore[misc]
        rules_ms = _median_ms(lambda t=text: rules.score(t), 300)  # type: ignore[misc]
        lines.append(f"| {size // 1000} KB | {rules_ms:.3f} | {model_ms:.1f} |")
    return lines


def render() -> str:
    rules = InjectionDetector()
    model = load_injection_model()
    cut = model.head.threshold
    table = []
    misses = []
    for name, rows in _sets().items():
        labels = [bool(r["injection"]) for r in rows]
        by_rules = [rules.score(str(r["text"])).score >= RULES_THRESHOLD for r in rows]
        probabilities = model.scores([str(r["text"]) for r in rows])
        by_model = [p >= cut for p in probabilities]
        both = [a or b for a, b in zip(by_rules, by_model, strict=True)]
        table += [
            _row(name, f"rules ({RULES_THRESHOLD})", labels, by_rules),
            _row(name, f"model ({cut:g})", labels, by_model),
            _row(name, "both (either)", labels, both),
        ]
        if name.startswith("holdout-3"):
            misses = [
                f"{r['id']} {'FN' if y else 'FP'} p={p:.2f} ({r.get('family', '')})"
                for r, y, p, f in zip(rows, labels, probabilities, by_model, strict=True)
                if f != y
            ]
    cpu = platform.processor() or platform.machine()
    lines = [
        "# Learned injection detector vs rules (bench/injection_model_eval.py)",
        "",
        "Model: logistic-regression head (`src/interlock/guardrails/data/injection_head.json`, "
        "trained by `bench/train_injection_model.py` on `bench/data/injection_train.jsonl` and "
        "the eval set's `dev` split) over normalised all-MiniLM-L6-v2 embeddings. "
        "`holdout-3` was written after the head was frozen and has not been used to train or "
        "tune anything; trust it and `holdout-2` most. Sets marked *seen* are for reference.",
        "",
        "holdout-3 (71 injections, 66 hard negatives) was written to test generalisation: "
        "paraphrased overrides, exfiltration and role play that avoid the stock phrasings, "
        "injections inside documents, tool output and reviews, obfuscations (leetspeak, hex, "
        "reversed text, full-width letters), and benign twins of the document examples. "
        "Because it avoids the stock phrasings on purpose, the rules' recall on it (a few "
        "percent) understates them on ordinary traffic; holdout-2 is the fairer comparison "
        "for the rules.",
        "",
        "| set | detector | TP | FP | FN | precision | recall |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *table,
        "",
        f"## Cost per check (ms, median; {os.cpu_count()} CPUs, {cpu})",
        "",
        "One text scored on its own (a request's texts are batched into one forward pass). "
        "Text over 1,000 characters is scored in windows, the worst counts.",
        "",
        "| prompt | rules | model |",
        "| --- | --- | --- |",
        *_cost(model, rules),
        "",
        f"## Model misses on holdout-3 at {cut:g}",
        "",
        *(f"- {miss}" for miss in misses),
        "",
        "Command: `python bench/injection_model_eval.py` (after "
        "`pip install -e '.[injection-model]'`).",
        "",
    ]
    model.close()
    return "\n".join(lines)


def main() -> int:
    report = render()
    print(report)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
