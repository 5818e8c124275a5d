"""Guardrails: input limits, PII detection and redaction (also in streams),
prompt-injection scoring and content checks. Pure policy objects, no I/O.

The pipeline uses ``GuardrailsBook.for_request(group, key_override)`` to get a
``Guardrails``, calls ``check_input(body)`` before routing, and wraps each
streamed choice in ``output_stream(decision)``.
"""

from interlock.guardrails.config import ContentPolicy, GuardrailsConfig, InjectionPolicy, PiiPolicy
from interlock.guardrails.content import ContentClassifier, ContentVerdict, WordListClassifier
from interlock.guardrails.decision import Action, Block, InputDecision
from interlock.guardrails.facade import Guardrails, GuardrailsBook, key_override_text
from interlock.guardrails.injection import InjectionDetector, InjectionResult
from interlock.guardrails.injection_model import InjectionModel, InjectionScorer
from interlock.guardrails.pseudonyms import PseudonymVault
from interlock.guardrails.scanner import PII_TYPES, PiiScanner
from interlock.guardrails.spans import Span
from interlock.guardrails.stream import ChainedFilter, StreamRedactor, StreamRestorer, TextFilter
from interlock.guardrails.validation import InputLimits, check_limits

__all__ = [
    "PII_TYPES",
    "Action",
    "Block",
    "ChainedFilter",
    "ContentClassifier",
    "ContentPolicy",
    "ContentVerdict",
    "Guardrails",
    "GuardrailsBook",
    "GuardrailsConfig",
    "InjectionDetector",
    "InjectionModel",
    "InjectionPolicy",
    "InjectionResult",
    "InjectionScorer",
    "InputDecision",
    "InputLimits",
    "PiiPolicy",
    "PiiScanner",
    "PseudonymVault",
    "Span",
    "StreamRedactor",
    "StreamRestorer",
    "TextFilter",
    "WordListClassifier",
    "check_limits",
    "key_override_text",
]
