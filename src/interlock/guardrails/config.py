"""Guardrails configuration: plain frozen dataclasses, validated once.

The YAML shape (every section optional; a missing or ``null`` section is off)::

    guardrails:
      pii: {action: redact|block|detect|pseudonymize|off, types: [EMAIL, ...],
            output: redact|off, roles: [user, ...]}
      injection: {action: block|flag|off, threshold: 0.7, roles: [user, tool],
                  detector: rules|model|both, model_threshold: 0.5}
      content: {action: block|flag|off, words: [...], extra_words: [...], roles: [user]}
      limits: {max_messages, max_message_chars, max_total_chars, max_tokens,
               allowed_roles: [...], allowed_content_types: [...]}

``GuardrailsConfig.override(raw)`` applies the same shape on top of a
config, field by field, for per-model-group and per-key overrides.
Mistakes raise ``ValueError`` naming the path (``guardrails.pii.action``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from interlock.guardrails.content import DEFAULT_WORDS
from interlock.guardrails.scanner import PII_TYPES
from interlock.guardrails.validation import InputLimits

__all__ = ["ContentPolicy", "GuardrailsConfig", "InjectionPolicy", "PiiPolicy"]

PII_ACTIONS = ("redact", "block", "detect", "pseudonymize", "off")
CHECK_ACTIONS = ("block", "flag", "off")
INJECTION_DETECTORS = ("rules", "model", "both")


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return str(value)

    return parse


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError("must be a list of strings")
    return tuple(value)


def _roles(value: Any) -> frozenset[str]:
    return frozenset(_strings(value))


def _types(value: Any) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.upper() for name in _strings(value)))
    unknown = [name for name in names if name not in PII_TYPES]
    if unknown:
        raise ValueError(f"unknown types {unknown}; known: {', '.join(PII_TYPES)}")
    return names


def _threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError("must be a number from 0 to 1")
    return float(value)


def _count(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be a positive integer")
    return value


@dataclass(frozen=True, slots=True)
class PiiPolicy:
    action: str = "redact"
    types: tuple[str, ...] = PII_TYPES
    # Model output: "redact" values in it, or "off". None picks: redact when the
    # input is redacted, off otherwise. Pseudonymized values are always restored.
    output: str | None = None
    # Which messages are scanned; None: all of them.
    roles: frozenset[str] | None = None

    @property
    def output_mode(self) -> str:
        if self.output is not None:
            return self.output
        return "redact" if self.action == "redact" else "off"


@dataclass(frozen=True, slots=True)
class InjectionPolicy:
    action: str = "flag"
    threshold: float = 0.7
    # Tool results are the usual carrier of indirect injection.
    roles: frozenset[str] = frozenset({"user", "tool"})
    # "rules" (injection.py), "model" (injection_model.py, an optional extra)
    # or "both": flagged when either crosses its own threshold.
    detector: str = "rules"
    # The cut the head was trained with (injection_head.json), on its probability.
    model_threshold: float = 0.5

    @property
    def uses_model(self) -> bool:
        return self.action != "off" and self.detector != "rules"


@dataclass(frozen=True, slots=True)
class ContentPolicy:
    action: str = "flag"
    words: tuple[str, ...] = DEFAULT_WORDS
    roles: frozenset[str] = frozenset({"user"})


_PARSERS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "pii": {
        "action": _choice(PII_ACTIONS),
        "types": _types,
        "output": _choice(("redact", "off")),
        "roles": _roles,
    },
    "injection": {
        "action": _choice(CHECK_ACTIONS),
        "threshold": _threshold,
        "roles": _roles,
        "detector": _choice(INJECTION_DETECTORS),
        "model_threshold": _threshold,
    },
    "content": {"action": _choice(CHECK_ACTIONS), "words": _strings, "roles": _roles},
    "limits": {
        "max_messages": _count,
        "max_message_chars": _count,
        "max_total_chars": _count,
        "max_tokens": _count,
        "allowed_roles": _roles,
        "allowed_content_types": _roles,
    },
}
_DEFAULTS: dict[str, Callable[[], Any]] = {
    "pii": PiiPolicy,
    "injection": InjectionPolicy,
    "content": ContentPolicy,
    "limits": InputLimits,
}


@dataclass(frozen=True, slots=True)
class GuardrailsConfig:
    """Each check's policy; ``None`` turns that check off."""

    pii: PiiPolicy | None = None
    injection: InjectionPolicy | None = None
    content: ContentPolicy | None = None
    limits: InputLimits | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> GuardrailsConfig:
        return cls().override(raw)

    def override(
        self, raw: Mapping[str, Any] | None, where: str = "guardrails"
    ) -> GuardrailsConfig:
        """This config with ``raw`` applied on top, section by section and field by field."""
        if raw is None:
            return self
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: must be a mapping")
        unknown = set(raw) - set(_PARSERS)
        if unknown:
            raise ValueError(f"{where}: unknown sections {sorted(unknown)}")
        changes = {
            name: _section(name, getattr(self, name), section, f"{where}.{name}")
            for name, section in raw.items()
        }
        return replace(self, **changes)

    @property
    def enabled(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    @property
    def uses_injection_model(self) -> bool:
        return self.injection is not None and self.injection.uses_model


def _section(name: str, current: Any, raw: Any, where: str) -> Any:
    if raw is None or raw is False:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: must be a mapping (or null to turn it off)")
    parsers = dict(_PARSERS[name])
    if name == "content":
        parsers["extra_words"] = _strings
    unknown = set(raw) - set(parsers)
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            values[key] = parsers[key](value)
        except ValueError as exc:
            raise ValueError(f"{where}.{key}: {exc}") from None
    base = current if current is not None else _DEFAULTS[name]()
    if "extra_words" in values:
        values["words"] = values.get("words", base.words) + values.pop("extra_words")
    try:
        return replace(base, **values)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
