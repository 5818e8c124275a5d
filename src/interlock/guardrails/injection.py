"""Prompt-injection heuristics: named rules, a score in [0, 1].

Each rule is a regex over normalised text (NFKC, invisible characters
removed, lower case, runs of blanks collapsed) with a weight, the rough
probability that a text matching it is an attack. Matched weights combine
as independent evidence (noisy-OR: ``1 - prod(1 - w)``), so one strong rule
crosses a 0.7 threshold alone while weak ones (a ``System:`` line, a chat
template token) need company. Families:

- instruction override: "ignore all previous instructions", "disregard the above";
- system-prompt extraction: "reveal your system prompt", "what were your instructions";
- role-play jailbreak: "you are DAN", "pretend you have no restrictions", jailbreak modes;
- delimiter smuggling: ``<|im_start|>system``, ``[INST]``, ``<<SYS>>``, ``### System:``,
  ``</system>``, role markers inside user content.

Heuristics, English only: they catch the common copy-paste attacks, not a
determined adversary; the threshold and action are the operator's call.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from interlock.guardrails.injection_rules import RULES, Rule

__all__ = ["InjectionDetector", "InjectionResult", "normalize"]


_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
# Only blanks that change: a run of two or more, or a tab / no-break space.
_BLANKS = re.compile(r"[ \t\u00a0]{2,}|[\t\u00a0]")


def normalize(text: str) -> str:
    """Fold the cheap disguises: width and compatibility forms, zero-width
    characters, case, repeated blanks. Typographic apostrophes become ASCII."""
    if text.isascii():  # nothing for NFKC or the invisible-character table to do
        folded = text.lower()
    else:
        folded = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).lower()
        folded = folded.replace("\u2019", "'")
    if "  " in folded or "\t" in folded or "\u00a0" in folded:
        folded = _BLANKS.sub(" ", folded)
    return folded


@dataclass(frozen=True, slots=True)
class InjectionResult:
    score: float
    rules: tuple[str, ...]  # names of the matched rules, in rule order
    # The learned detector's probability (injection_model.py), when it ran.
    model_score: float | None = None

    @property
    def families(self) -> tuple[str, ...]:
        by_name = {rule.name: rule.family for rule in RULES}
        return tuple(dict.fromkeys(by_name.get(name, name) for name in self.rules))


class InjectionDetector:
    """Scores a text for prompt injection; pure, shareable."""

    def __init__(self, rules: tuple[Rule, ...] = RULES):
        self._rules = rules
        self._anchors = _AnchorScan(rules)
        # Each rule with the anchor set it needs (None: always run).
        self._gated = tuple(
            (rule, self._anchors.group(rule.anchors) if rule.anchors else None) for rule in rules
        )

    def score(self, text: str) -> InjectionResult:
        normalized = normalize(text)
        present = self._anchors.groups_in(normalized)
        matched = []
        gates: dict[re.Pattern[str], bool] = {}  # shared by rules
        for rule, group in self._gated:
            if group is not None and group not in present:
                continue
            gate = rule.gate
            if gate is not None:
                found = gates.get(gate)
                if found is None:
                    found = gates[gate] = gate.search(normalized) is not None
                if not found:
                    continue
            if rule.pattern.search(normalized):
                matched.append(rule)
        remaining = 1.0
        for rule in matched:
            remaining *= 1.0 - rule.weight
        return InjectionResult(round(1.0 - remaining, 4), tuple(rule.name for rule in matched))


class _AnchorScan:
    """Which rules' anchor sets occur in a text: each distinct anchor is looked
    for once (a substring search in C), however many sets share it, and credits
    every set holding it. Cheaper than a regex alternation, which ``re`` tries
    anchor by anchor at every position."""

    def __init__(self, rules: tuple[Rule, ...]):
        sets = list(dict.fromkeys(rule.anchors for rule in rules if rule.anchors))
        self._ids = {anchors: i for i, anchors in enumerate(sets)}
        owners: dict[str, set[int]] = {}
        for i, anchors in enumerate(sets):
            for anchor in anchors:
                owners.setdefault(anchor, set()).add(i)
        self._credits = {anchor: frozenset(ids) for anchor, ids in owners.items()}

    def group(self, anchors: tuple[str, ...]) -> int:
        return self._ids[anchors]

    def groups_in(self, text: str) -> set[int]:
        """The ids of the anchor sets one of whose anchors ``text`` contains."""
        present: set[int] = set()
        for anchor, ids in self._credits.items():
            if anchor in text:
                present |= ids
        return present
