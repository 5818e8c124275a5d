"""What a guardrail check decides: allow (maybe with a rewritten body) or block.

Decisions are plain data. A ``Block`` names the check, an OpenAI-style
error code and the offending ``param``; its message never repeats the value
that caused it. ``Block.error()`` turns it into the gateway's 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from interlock.errors import InvalidRequest
from interlock.guardrails.content import ContentVerdict
from interlock.guardrails.injection import InjectionResult
from interlock.guardrails.pseudonyms import PseudonymVault

__all__ = ["Action", "Block", "InputDecision"]


@dataclass(frozen=True, slots=True)
class Action:
    """One thing a guardrail did: ``rule`` ("pii:email", "injection", "limits") and
    ``action`` ("redact", "pseudonymize", "detect", "flag", "block")."""

    rule: str
    action: str

    def __str__(self) -> str:
        return f"{self.rule}:{self.action}"


@dataclass(frozen=True, slots=True)
class Block:
    """Refuse the request: a 400 carrying ``code`` and ``param``."""

    check: str  # "limits" | "pii" | "injection" | "content"
    code: str
    param: str | None
    message: str

    def error(self) -> InvalidRequest:
        return InvalidRequest(self.message, param=self.param, code=self.code)


@dataclass(frozen=True, slots=True)
class InputDecision:
    """The outcome of ``Guardrails.check_input``.

    ``body`` is what to send upstream: the request's own object when nothing
    changed, otherwise a copy with redactions or placeholders in place (the
    caller's object is never mutated). ``vault`` is set when values were
    pseudonymized; the output filter needs it to restore them.
    """

    body: Mapping[str, Any]
    actions: tuple[Action, ...] = ()
    block: Block | None = None
    vault: PseudonymVault | None = None
    injection: InjectionResult | None = None
    content: ContentVerdict | None = None
    modified: bool = False

    @property
    def allowed(self) -> bool:
        return self.block is None

    @property
    def labels(self) -> list[str]:
        """``["pii:email:redact", "injection:flag"]``: for the access log."""
        return [str(action) for action in self.actions]
