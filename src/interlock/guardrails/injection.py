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

    @property
    def families(self) -> tuple[str, ...]:
        by_name = {rule.name: rule.family for rule in RULES}
        return tuple(dict.fromkeys(by_name.get(name, name) for name in self.rules))


class InjectionDetector:
    """Scores a text for prompt injection; pure, shareable."""

    def __init__(self, rules: tuple[Rule, ...] = RULES):
        self._rules = rules

    def score(self, text: str) -> InjectionResult:
        normalized = normalize(text)
        present: dict[tuple[str, ...], bool] = {}  # anchor sets are shared by many rules
        matched = []
        for rule in self._rules:
            if rule.anchors:
                if rule.anchors not in present:
                    present[rule.anchors] = any(a in normalized for a in rule.anchors)
                if not present[rule.anchors]:
                    continue
            if rule.pattern.search(normalized):
                matched.append(rule)
        remaining = 1.0
        for rule in matched:
            remaining *= 1.0 - rule.weight
        return InjectionResult(round(1.0 - remaining, 4), tuple(rule.name for rule in matched))
