"""Credentials: provider API keys, JWTs and PEM private-key blocks.

Keys and JWTs can run longer than a stream may hold back, so this detector
is open-ended: each value is recognisable from a bounded prefix (``sk-`` and
20 key characters; a JWT header that decodes to JSON with ``alg`` and the
start of its payload; a PEM ``BEGIN ... PRIVATE KEY`` line), and a stream
replaces it as soon as that prefix is complete, then drops the rest of the
value as it arrives (``continuation``). ``find`` gives the whole value, so
one-shot and streamed redaction agree.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from interlock.guardrails.spans import Continuation, Span

__all__ = ["SecretDetector"]

_B = r"(?<![A-Za-z0-9_-])"  # a token starts at a token boundary
_PEM_END = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_KEY_RUN = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class _Pattern:
    label: str
    regex: re.Pattern[str]
    # Substrings one of which must be present: a cheap filter before the regex.
    hints: tuple[str, ...]
    # Which group is the secret (the AWS secret pattern matches its key name too).
    group: int = 0
    # How a stream swallows the rest: "run" (key characters), "jwt", "pem", or "".
    rest: str = ""
    run: re.Pattern[str] = _KEY_RUN
    # How far before ``start`` a match may begin (its name precedes the secret).
    lookback: int = 0


_PATTERNS = (
    _Pattern("anthropic", re.compile(_B + r"sk-ant-(?=[a-z_-]{0,19}[A-Z0-9])[A-Za-z0-9_-]{20,}"),
             ("sk-ant-",), rest="run"),
    _Pattern("openai", re.compile(
        _B + r"sk-(?:proj-|svcacct-|admin-)?(?=[a-z_-]{0,19}[A-Z0-9])[A-Za-z0-9_-]{20,}"),
             ("sk-",), rest="run"),
    _Pattern("aws_access_key_id",
             re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])"),
             ("AKIA", "ASIA")),
    _Pattern("aws_secret_access_key", re.compile(
        r"(?i:aws_?secret_?access_?key)[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"),
             ("secret", "SECRET", "Secret"), group=1, lookback=64),
    _Pattern("github_token", re.compile(_B + r"gh[pousr]_[A-Za-z0-9]{30,}"),
             ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), rest="run",
             run=re.compile(r"[A-Za-z0-9]*")),
    _Pattern("github_pat", re.compile(_B + r"github_pat_[A-Za-z0-9_]{40,}"), ("github_pat_",),
             rest="run", run=re.compile(r"[A-Za-z0-9_]*")),
    _Pattern("slack", re.compile(_B + r"xox[baprs]-[A-Za-z0-9-]{10,}"), ("xox",), rest="run",
             run=re.compile(r"[A-Za-z0-9-]*")),
    _Pattern("google", re.compile(_B + r"AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"), ("AIza",)),
    _Pattern("stripe", re.compile(_B + r"[sr]k_(?:live|test)_[0-9a-zA-Z]{24,}"),
             ("k_live_", "k_test_"), rest="run", run=re.compile(r"[0-9a-zA-Z]*")),
    _Pattern("jwt", re.compile(_B + r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?"),
             ("eyJ",), rest="jwt"),
    _Pattern("private_key", re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
        r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|.*\Z)", re.DOTALL),
             ("-----BEGIN",), rest="pem"),
)  # fmt: skip
_BY_LABEL = {p.label: p for p in _PATTERNS}
_HINTS = tuple(dict.fromkeys(hint for p in _PATTERNS for hint in p.hints))


def _jwt_header_ok(token: str) -> bool:
    header = token.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):  # bad base64, bad UTF-8 or bad JSON
        return False
    return isinstance(decoded, dict) and "alg" in decoded


class SecretDetector:
    """API keys of common providers, JWTs and PEM private keys; ``label`` says which."""

    type = "SECRET"
    # Fewer, shorter strings than ``_HINTS``, one of which each of them contains:
    # "_" stands for the GitHub and Stripe prefixes, "ecret" for "secret" and "Secret".
    hints: tuple[str, ...] = (
        "sk-",
        "_",
        "eyJ",
        "AKIA",
        "ASIA",
        "AIza",
        "xox",
        "ecret",
        "ECRET",
        "-----BEGIN",
    )
    trigger: tuple[str, ...] = ()
    # Text in which ``find`` finds anything holds one of these (a cheap filter for callers).
    value_hints: tuple[str, ...] = _HINTS
    tail = (
        r"[A-Za-z0-9_-]+\Z"
        r"|eyJ[A-Za-z0-9_-]*\.(?:e(?:y(?:J[A-Za-z0-9_-]*)?)?)?\Z"
        r"|(?i:aws_?secret_?access_?key)[\"']?\s*[:=]?\s*[\"']?[A-Za-z0-9/+=]{0,40}\Z"
        r"|-----BEGIN(?: [A-Z0-9 ]*-{0,5})?\Z"
    )
    blank_tail = r"BEGIN|(?i:secret)"

    def find(self, text: str, start: int = 0) -> list[Span]:
        spans: list[Span] = []
        present = {hint: hint in text for hint in _HINTS}
        for pattern in _PATTERNS:
            if not any(present[hint] for hint in pattern.hints):
                continue
            for m in pattern.regex.finditer(text, max(0, start - pattern.lookback)):
                if pattern.label == "jwt" and not _jwt_header_ok(m.group()):
                    continue
                begin, end = m.span(pattern.group)
                if begin < start:
                    continue
                spans.append(Span(begin, end, self.type, pattern.label))
        return spans

    def continuation(self, span: Span, text: str) -> Continuation | None:
        pattern = _BY_LABEL[span.label]
        value = text[span.start : span.end]
        if pattern.rest == "run":
            return _RunRest(pattern.run)
        if pattern.rest == "jwt":
            return _JwtRest(in_signature=value.count(".") >= 2)
        if pattern.rest == "pem" and _PEM_END.search(value) is None:
            return _PemRest(value[-64:])
        return None


class _RunRest:
    """The key goes on while its characters do."""

    def __init__(self, run: re.Pattern[str]):
        self._run = run

    def consume(self, text: str) -> tuple[int, bool]:
        match = self._run.match(text)
        used = match.end() if match else 0
        return used, used < len(text)


class _JwtRest:
    """Payload characters, one dot, signature characters."""

    def __init__(self, in_signature: bool):
        self._in_signature = in_signature

    def consume(self, text: str) -> tuple[int, bool]:
        used = _KEY_RUN.match(text)
        count = used.end() if used else 0
        if count < len(text) and text[count] == "." and not self._in_signature:
            self._in_signature = True
            rest = _KEY_RUN.match(text, count + 1)
            count = rest.end() if rest else count + 1
        return count, count < len(text)


class _PemRest:
    """Everything up to and including the END line (which may arrive in pieces)."""

    def __init__(self, seen: str):
        self._seen = seen

    def consume(self, text: str) -> tuple[int, bool]:
        window = self._seen + text
        match = _PEM_END.search(window)
        if match is None:
            self._seen = window[-64:]
            return len(text), False
        return match.end() - len(self._seen), True
