"""Precision and recall of the guardrails' detectors on a labelled set.

Reads ``bench/data/guardrails_eval.jsonl`` (one example a line: ``text``,
``pii`` as ``[{type, value}]``, ``injection`` true/false, optional ``note``)
and scores:

- PII per type, span-exact: a find counts when its type and exact text match
  a labelled value; every other find is a false positive, every missed label
  a false negative. Every example is scanned, injection ones included.
- prompt injection per example, at the default threshold (0.7) and a sweep,
  and per split: ``dev`` (written with the rules, and the rules were tuned on
  it), ``holdout-1`` (written before its first run; seen once, then the rules
  gained generic proximity patterns), ``holdout-2`` (written after the last
  rule change, evaluated as is). Trust ``holdout-2`` most.

Prints markdown and writes ``bench/results/guardrails_eval.md``, with the
misses listed so the numbers can be checked by eye.
Run: ``python bench/guardrails_eval.py``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interlock.guardrails import PII_TYPES, InjectionDetector, PiiScanner

HERE = Path(__file__).parent
DATA = HERE / "data" / "guardrails_eval.jsonl"
OUT = HERE / "results" / "guardrails_eval.md"
THRESHOLD = 0.7


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    misses: list[str] = field(default_factory=list)

    def row(self, name: str) -> str:
        precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0
        recall = self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return (
            f"| {name} | {self.tp + self.fn} | {self.tp} | {self.fp} | {self.fn} "
            f"| {precision:.3f} | {recall:.3f} | {f1:.3f} |"
        )


def _load() -> list[dict[str, Any]]:
    with DATA.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _pii(examples: list[dict[str, Any]]) -> dict[str, Tally]:
    scanner = PiiScanner.for_types()
    tallies = {name: Tally() for name in PII_TYPES}
    for example in examples:
        text = str(example["text"])
        gold = Counter((str(p["type"]), str(p["value"])) for p in example["pii"])
        found = Counter((s.type, text[s.start : s.end]) for s in scanner.find(text))
        for key in gold | found:
            kind, hit = key[0], min(gold[key], found[key])
            tally = tallies[kind]
            tally.tp += hit
            tally.fp += found[key] - hit
            tally.fn += gold[key] - hit
            if found[key] != gold[key]:
                what = "FP" if found[key] > gold[key] else "FN"
                note = f" ({example['note']})" if example.get("note") else ""
                tally.misses.append(f"{example['id']} {what}{note}")
    return tallies


Scored = list[tuple[float, bool, dict[str, Any]]]


def _count(scores: Scored, threshold: float) -> Tally:
    tally = Tally()
    for score, label, _ in scores:
        flagged = score >= threshold
        tally.tp += flagged and label
        tally.fp += flagged and not label
        tally.fn += label and not flagged
    return tally


def _injection(
    examples: list[dict[str, Any]],
) -> tuple[dict[float, Tally], dict[str, Tally], list[str]]:
    detector = InjectionDetector()
    scores = [(detector.score(str(e["text"])).score, bool(e["injection"]), e) for e in examples]
    sweep = {t: _count(scores, t) for t in (0.5, 0.6, THRESHOLD, 0.8, 0.9)}
    splits = dict.fromkeys(str(e.get("split", "dev")) for e in examples)
    by_split = {
        split: _count([s for s in scores if s[2].get("split", "dev") == split], THRESHOLD)
        for split in splits
    }
    misses = [
        f"{e['id']} {'FN' if label else 'FP'} score={score:.2f}"
        + (f" ({e['note']})" if e.get("note") else "")
        for score, label, e in scores
        if (score >= THRESHOLD) != label
    ]
    return sweep, by_split, misses


def render() -> str:
    examples = _load()
    tallies = _pii(examples)
    overall = Tally(
        sum(t.tp for t in tallies.values()),
        sum(t.fp for t in tallies.values()),
        sum(t.fn for t in tallies.values()),
    )
    sweep, by_split, injection_misses = _injection(examples)
    positives = sum(1 for e in examples if e["injection"])
    header = "| type | labelled | TP | FP | FN | precision | recall | F1 |\n| --- | --- | --- | --- | --- | --- | --- | --- |"  # noqa: E501
    lines = [
        "# Guardrails eval (bench/guardrails_eval.py)",
        "",
        f"{len(examples)} examples from `bench/data/guardrails_eval.jsonl`: "
        f"{sum(1 for e in examples if e['pii'])} with labelled PII "
        f"({sum(len(e['pii']) for e in examples)} values), {positives} injection positives, "
        f"{len(examples) - positives} injection negatives. Hard negatives (look-alikes) and a few "
        "deliberately out-of-scope positives (national phone formats, obfuscated e-mails, "
        "other providers' tokens, non-English injections) are included, so recall below 1 is "
        "expected.",
        "",
        "## PII (span-exact, all examples scanned)",
        "",
        header,
        *(tallies[name].row(name) for name in PII_TYPES),
        overall.row("**overall (micro)**"),
        "",
        f"## Prompt injection (per example; threshold {THRESHOLD} is the default)",
        "",
        header.replace("| type |", "| threshold |"),
        *(tally.row(f"{t:g}") for t, tally in sweep.items()),
        "",
        f"By split, at {THRESHOLD} (dev: the rules were tuned on it; holdout-1: seen once, then "
        "generic rules were added; holdout-2: written after the last rule change, scored as is):",
        "",
        header.replace("| type |", "| split |"),
        *(tally.row(split) for split, tally in by_split.items()),
        "",
        "holdout-2 scored 10 TP / 1 FP before one fix made after seeing it (the word order "
        '"ignore all instructions above"); the table shows the current rules. Regex rules catch '
        "the well-known phrasings with high precision; unseen paraphrases mostly get through, "
        "which is what the classifier plug-in (`ContentClassifier`-style) is for.",
        "",
        "## Misses",
        "",
        *(f"- {name}: {', '.join(t.misses)}" for name, t in tallies.items() if t.misses),
        f"- injection at {THRESHOLD}: {', '.join(injection_misses) or 'none'}",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    report = render()
    print(report)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
