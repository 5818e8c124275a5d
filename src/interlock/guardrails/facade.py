"""The guardrails facade: one configuration's checks, and the per-request book.

``Guardrails.check_input(body)`` runs, in order: input limits, content
check, prompt-injection score (rules, the learned model, or both), PII. The
first three read the client's text as sent; PII then redacts, pseudonymizes,
annotates or blocks. The first block wins and nothing after it runs.
``output_stream(decision)`` gives the filter for the model's answer
(redaction of new values and/or restoring pseudonyms), one per streamed
choice; ``output_text`` does the same for a whole answer; ``redact_text`` is
for anything that is logged.

Everything here is pure and shareable: no I/O, no clock, no state across
requests (the pseudonym vault travels in the decision). The one CPU-heavy
check, the learned injection model, is why ``check_input_async`` exists: with
the model it runs the check in the model's thread pool, otherwise inline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import orjson

from interlock.guardrails.body import TextField, rewrite_json_strings, text_fields, with_texts
from interlock.guardrails.config import GuardrailsConfig
from interlock.guardrails.content import ContentClassifier, ContentVerdict, WordListClassifier
from interlock.guardrails.decision import Action, Block, InputDecision
from interlock.guardrails.injection import InjectionDetector, InjectionResult
from interlock.guardrails.injection_model import InjectionScorer, load_injection_model
from interlock.guardrails.json_stream import JsonStringsFilter
from interlock.guardrails.pseudonyms import PseudonymVault
from interlock.guardrails.scanner import PiiScanner
from interlock.guardrails.spans import Replacer, label_replacer, replace_spans
from interlock.guardrails.stream import ChainedFilter, StreamRedactor, StreamRestorer, TextFilter
from interlock.guardrails.validation import check_limits
from interlock.minilm import require_extra

__all__ = ["Guardrails", "GuardrailsBook", "key_override_text"]

# Compiled policies a book keeps: (model groups + 1) x distinct key overrides.
_MAX_POLICIES = 1024


class InjectionModelNotLoaded(Exception):
    """A request's policy needs the learned injection model, not loaded yet:
    ``await GuardrailsBook.load_model()``, then ask for the policy again."""


class Guardrails:
    """One configuration's checks, compiled once, shared by every request."""

    def __init__(
        self,
        config: GuardrailsConfig,
        *,
        classifiers: Sequence[ContentClassifier] = (),
        injection_model: InjectionScorer | None = None,
        max_hold: int = 128,
    ):
        self.config = config
        self._max_hold = max_hold
        pii = config.pii
        self._pii = pii if pii is not None and pii.action != "off" else None
        self._scanner = PiiScanner.for_types(pii.types if pii is not None else None)
        # Logs are redacted of every known type, whatever the request policy.
        self._log_scanner = PiiScanner.for_types()
        injection = config.injection
        self._injection = injection if injection is not None and injection.action != "off" else None
        self._detector = InjectionDetector()
        self._model: InjectionScorer | None = None
        if config.uses_injection_model:
            if injection_model is None:
                raise ValueError("injection.detector needs a loaded injection model")
            self._model = injection_model
        content = config.content
        self._content = content if content is not None and content.action != "off" else None
        self._classifiers: tuple[ContentClassifier, ...] = ()
        if self._content is not None:
            self._classifiers = (WordListClassifier(self._content.words), *classifiers)

    @property
    def enabled(self) -> bool:
        """False when there is nothing to check: the pipeline may skip the stage."""
        return bool(self._pii or self._injection or self._content or self.config.limits)

    def check_input(self, body: Mapping[str, Any]) -> InputDecision:
        if self.config.limits is not None:
            block = check_limits(body, self.config.limits)
            if block is not None:
                return InputDecision(body, (Action(f"limits:{block.code}", "block"),), block)
        fields = text_fields(body)
        actions: list[Action] = []
        verdict, block = self._check_content(fields, actions)
        injection = None
        if block is None:
            injection, block = self._check_injection(fields, actions)
        if block is not None:
            return InputDecision(body, tuple(actions), block, injection=injection, content=verdict)
        return self._apply_pii(body, fields, actions, injection, verdict)

    async def check_input_async(self, body: Mapping[str, Any]) -> InputDecision:
        """``check_input``, off the event loop when the learned model runs."""
        if self._model is None:
            return self.check_input(body)
        return await self._model.offload(partial(self.check_input, body))

    def filters_output(self, decision: InputDecision) -> bool:
        """Whether answers to this request are rewritten (redacted or restored)."""
        pii = self._pii
        return pii is not None and (pii.output_mode == "redact" or bool(decision.vault))

    def output_stream(self, decision: InputDecision) -> TextFilter | None:
        """A fresh filter for one streamed choice of the answer, or ``None``."""
        if self._pii is None:
            return None
        redactor = (
            StreamRedactor(self._scanner, max_hold=self._max_hold)
            if self._pii.output_mode == "redact"
            else None
        )
        restorer = StreamRestorer(decision.vault) if decision.vault else None
        if redactor is not None and restorer is not None:
            return ChainedFilter(redactor, restorer)
        return redactor or restorer

    def output_arguments_stream(self, decision: InputDecision) -> TextFilter | None:
        """A fresh filter for one streamed tool call's arguments (JSON text:
        each string value filtered as ``output_stream`` filters text), or
        ``None`` when answers are left alone."""
        if not self.filters_output(decision):
            return None

        def for_each_value() -> TextFilter:
            text_filter = self.output_stream(decision)
            assert text_filter is not None  # the same policy and decision as above
            return text_filter

        return JsonStringsFilter(for_each_value)

    def output_text(self, decision: InputDecision, text: str) -> str:
        """What ``output_stream`` would make of a whole (non-streamed) answer."""
        if self._pii is None:
            return text
        if self._pii.output_mode == "redact":
            text = self._scanner.redact(text)
        return decision.vault.restore(text) if decision.vault else text

    def output_arguments(self, decision: InputDecision, arguments: str) -> str:
        """What ``output_text`` makes of each string value in a tool call's
        JSON arguments (of the whole text, where it is not a JSON object or
        array); restored values are written JSON-escaped."""
        if self._pii is None:
            return arguments
        rewritten = rewrite_json_strings(arguments, partial(self.output_text, decision))
        return self.output_text(decision, arguments) if rewritten is None else rewritten

    def redact_text(self, text: str) -> str:
        """For logs: every PII type replaced by its label."""
        return self._log_scanner.redact(text)

    def _check_content(
        self, fields: list[TextField], actions: list[Action]
    ) -> tuple[ContentVerdict | None, Block | None]:
        policy = self._content
        if policy is None:
            return None, None
        for field in fields:
            if field.role is not None and field.role not in policy.roles:
                continue  # ``input`` / ``prompt`` text (no role) is always checked
            for classifier in self._classifiers:
                verdict = classifier.classify(field.text)
                if not verdict.flagged:
                    continue
                actions.append(Action("content", policy.action))
                if policy.action == "block":
                    categories = ", ".join(verdict.categories) or classifier.name
                    message = f"The request was blocked by the content policy ({categories})."
                    return verdict, Block(
                        "content", "content_policy_violation", field.param, message
                    )
                return verdict, None
        return ContentVerdict(False), None

    def _check_injection(
        self, fields: list[TextField], actions: list[Action]
    ) -> tuple[InjectionResult | None, Block | None]:
        policy = self._injection
        if policy is None:
            return None, None
        checked = [f for f in fields if f.role is None or f.role in policy.roles]
        worst, where = InjectionResult(0.0, ()), None
        flagged = False
        if policy.detector != "model":
            for field in checked:
                result = self._detector.score(field.text)
                if result.score > worst.score:
                    worst, where = result, field.param
            flagged = worst.score >= policy.threshold
        if self._model is not None and checked:
            scores = self._model.scores([field.text for field in checked])
            top = max(range(len(scores)), key=scores.__getitem__)
            worst = replace(worst, model_score=round(scores[top], 4))
            if not flagged and scores[top] >= policy.model_threshold:
                flagged, where = True, checked[top].param
        if not flagged:
            return worst, None
        actions.append(Action("injection", policy.action))
        if policy.action == "block":
            message = "The request was blocked as a likely prompt injection."
            return worst, Block("injection", "prompt_injection_detected", where, message)
        return worst, None

    def _apply_pii(
        self,
        body: Mapping[str, Any],
        fields: list[TextField],
        actions: list[Action],
        injection: InjectionResult | None,
        verdict: ContentVerdict | None,
    ) -> InputDecision:
        policy = self._pii
        if policy is None:
            return InputDecision(body, tuple(actions), injection=injection, content=verdict)
        vault = PseudonymVault() if policy.action == "pseudonymize" else None
        replace: Replacer = vault.placeholder if vault is not None else label_replacer
        texts: dict[tuple[str | int, ...], str] = {}
        for field in fields:
            if policy.roles is not None and field.role not in policy.roles:
                continue
            spans = self._scanner.find(field.text)
            if not spans:
                continue
            types = list(dict.fromkeys(span.type for span in spans))
            for kind in types:
                action = Action(f"pii:{kind.lower()}", policy.action)
                if action not in actions:
                    actions.append(action)
            if policy.action == "block":
                message = (
                    f"The request contains personal or secret data ({', '.join(types)}) "
                    f"in {field.param} and was not sent."
                )
                block = Block("pii", "pii_detected", field.param, message)
                return InputDecision(
                    body, tuple(actions), block, injection=injection, content=verdict
                )
            if policy.action != "detect":
                texts[field.path] = replace_spans(field.text, spans, replace)
        return InputDecision(
            with_texts(body, texts) if texts else body,
            tuple(actions),
            vault=vault if vault else None,
            injection=injection,
            content=verdict,
            modified=bool(texts),
        )


def key_override_text(raw: Mapping[str, Any] | None) -> str | None:
    """A key's override as the book looks it up: canonical JSON (sorted keys),
    so every key with the same override shares one compiled policy."""
    if raw is None:
        return None
    return orjson.dumps(raw, option=orjson.OPT_SORT_KEYS).decode()


class GuardrailsBook:
    """The guardrails for each request: the global config, then the model group's
    override, then the key's (later wins, field by field). Group overrides are
    validated when the book is built, key overrides by ``check_key_override``
    (at start-up for the config file's keys, at creation for stored ones).
    Each distinct result is compiled once."""

    def __init__(
        self,
        config: GuardrailsConfig,
        *,
        groups: Mapping[str, Mapping[str, Any]] | None = None,
        classifiers: Sequence[ContentClassifier] = (),
        load_model: Callable[[], InjectionScorer] = load_injection_model,
        check_model: Callable[[], None] = require_extra,
    ):
        self._config = config
        self._groups = dict(groups or {})
        self._classifiers = tuple(classifiers)
        self._load_model = load_model
        self._check_model = check_model
        self._model: InjectionScorer | None = None
        self._loading: asyncio.Lock | None = None
        self._model_for(config)
        for name, raw in self._groups.items():
            self._model_for(config.override(raw, where=f"models[{name}].guardrails"))
        # Bounded: past _MAX_POLICIES (many keys with distinct overrides) both
        # maps start over, and policies are compiled again as requests need them.
        self._by_pair: dict[tuple[str | None, str | None], Guardrails] = {}
        self._by_config: dict[GuardrailsConfig, Guardrails] = {}

    def check_key_override(self, raw: Mapping[str, Any] | None, where: str) -> str | None:
        """Validate a key's override (on the global policy and on every group's);
        return its lookup text for ``for_request``. Raises ``ValueError`` naming
        the path (``keys[team].guardrails.pii.action``)."""
        self._model_available(self._config.override(raw, where=where))
        for raw_group in self._groups.values():
            self._model_available(self._config.override(raw_group).override(raw, where=where))
        return key_override_text(raw)

    def _model_available(self, config: GuardrailsConfig) -> None:
        """A key's override may name the model: its extra must be installed
        (checked without loading it; the first request loads it)."""
        if config.uses_injection_model and self._model is None:
            self._check_model()

    def _model_for(self, config: GuardrailsConfig, *, load: bool = True) -> InjectionScorer | None:
        """The learned injection model if ``config`` uses it. The config
        file's policies load it at start (a missing extra is then a config
        error); a policy compiled for a request (``load=False``) that finds it
        not loaded raises ``InjectionModelNotLoaded``, and the caller loads it
        off the event loop (``load_model``) and asks again."""
        if not config.uses_injection_model:
            return None
        if self._model is None:
            if not load:
                raise InjectionModelNotLoaded
            self._model = self._load_model()
        return self._model

    def close(self) -> None:
        """Stop the injection model's threads, if it was loaded (at shutdown)."""
        close = getattr(self._model, "close", None)
        if close is not None:
            close()

    async def load_model(self) -> None:
        """Load the injection model in a thread, once (seconds of CPU)."""
        if self._loading is None:
            self._loading = asyncio.Lock()
        async with self._loading:
            if self._model is None:
                self._model = await asyncio.to_thread(self._load_model)

    def for_request(self, model_group: str | None, key_override: str | None = None) -> Guardrails:
        """The policy for a request to ``model_group`` with a key whose override
        is ``key_override`` (``key_override_text``'s form, or None)."""
        group = model_group if model_group in self._groups else None
        found = self._by_pair.get((group, key_override))
        if found is None:
            found = self._compile(group, key_override)
        return found

    def _compile(self, group: str | None, key_override: str | None) -> Guardrails:
        config = self._config
        if group is not None:
            config = config.override(self._groups[group])
        if key_override is not None:
            config = config.override(orjson.loads(key_override), where="key guardrails")
        if len(self._by_pair) >= _MAX_POLICIES:
            self._by_pair.clear()
            self._by_config.clear()
        found = self._by_config.get(config)
        if found is None:
            found = self._by_config[config] = Guardrails(
                config,
                classifiers=self._classifiers,
                injection_model=self._model_for(config, load=False),
            )
        self._by_pair[(group, key_override)] = found
        return found
