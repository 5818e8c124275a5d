"""No secret leaves the gateway: one policy for every place text leaves it.

``Redactor`` is built once from the config by the composition root and
applied where text goes out: the error map at the edge (every client-facing
error body and SSE error event), the log formatter, the access log, and the
adapters, where an upstream's error text first enters (so an exception's
message is clean wherever it travels next). Each match becomes ``[REDACTED]``.

What it scrubs:

- every configured secret, wherever it appears: each ``Secret`` in the
  config (deployments' ``api_key``, keys' ``key``, ``server.admin_key``),
  the passwords of proxies (a deployment's ``proxy``, the environment's
  proxy variables; also as the ``Basic`` token a proxy may echo) and of any
  URL in the config, and a URL's credential-like query values
  (``?key=``, ``?token=``, ...);
- any run of 8 or more consecutive characters of one of them, as an
  upstream echoes a key half masked (``sk-abc12345****wxyz``), unless the run
  reads like a word (no digit, no capital after its first letter): random
  keys almost never hold such a run, while a test key made of words
  (``sk-test-interlock``) would otherwise shred ordinary text such as the
  logger name ``interlock.access``. At most 7 characters of a secret, or a
  word-like stretch of it, can show;
- strings shaped like credentials even when not configured: ``sk-`` and
  ``AIza`` keys, JWTs, private keys ... (guardrails' ``SecretDetector``, whose
  patterns need the full shape, so ordinary text is left alone). The keys
  the gateway issues through the admin API are stored only as digests: their
  ``sk-il-`` shape is the only way to know one a client sent in the wrong
  field.

Secrets of fewer than 4 characters are not scrubbed: they protect nothing
and would shred every word. The policy is pure: text in, text out.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel

from interlock.config import DeploymentConfig, GatewayConfig, ProxyURL, Secret
from interlock.guardrails.secrets import SecretDetector

__all__ = ["REDACTED", "Redactor"]

REDACTED = "[REDACTED]"
MIN_SECRET_CHARS = 4
# An echoed run this long of a configured secret is scrubbed.
FRAGMENT_CHARS = 8
# Secrets are found by their 4-character pieces, looked up every 4th position
# of the text: any run of 7 or more characters contains one such piece.
_GRAM = 4
_FOUND_BY_GRAMS = 2 * _GRAM - 1
# Query parameters whose values are credentials (``?key=`` on Gemini URLs).
_CREDENTIAL_PARAMS = ("key", "token", "secret", "password", "passwd", "sig", "auth", "credential")
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")
_JSON_NATIVE = (str, int, float, bool, type(None))
_PIECES = re.compile(f".{{{_GRAM}}}", re.DOTALL)


class Redactor:
    """Scrubs the given secrets, fragments of them and key-shaped strings."""

    def __init__(self, secrets: Iterable[str] = ()):
        known = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)
        self._secrets = tuple(known)
        # Too short for the 4-character pieces to find them whole: searched as they are.
        self._short = tuple(s for s in known if len(s) < _FOUND_BY_GRAMS)
        self._grams: dict[str, list[tuple[int, int]]] = {}
        for index, secret in enumerate(known):
            if len(secret) >= _FOUND_BY_GRAMS:
                for offset in range(len(secret) - _GRAM + 1):
                    self._grams.setdefault(secret[offset : offset + _GRAM], []).append(
                        (index, offset)
                    )
        self._shapes = SecretDetector()
        # One search instead of the detector's own checks, for the common text without any.
        self._shape_hints = re.compile("|".join(map(re.escape, SecretDetector.value_hints)))

    @classmethod
    def from_config(
        cls, config: GatewayConfig, environ: Mapping[str, str] | None = None
    ) -> Redactor:
        """Every secret in ``config``, and the proxy variables' passwords in ``environ``."""
        return cls([*_secrets_in(config), *_environment_secrets(environ or {})])

    @classmethod
    def for_deployment(
        cls, deployment: DeploymentConfig, environ: Mapping[str, str] | None = None
    ) -> Redactor:
        """What one deployment sends upstream: an adapter's default when it is
        built outside the composition root (tools, tests)."""
        env = environ if deployment.trust_env and deployment.proxy is None else None
        return cls([*_secrets_in(deployment), *_environment_secrets(env or {})])

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secrets)"

    def scrub(self, text: str) -> str:
        """``text`` with every secret, fragment and key-shaped string replaced."""
        if len(text) < MIN_SECRET_CHARS:
            return text
        spans = self._secret_spans(text)
        if self._shape_hints.search(text) is not None:
            spans.extend((span.start, span.end) for span in self._shapes.find(text))
        return _replace(text, spans) if spans else text

    def scrub_value(self, value: Any) -> Any:
        """A log field made safe: strings scrubbed, containers walked, other
        objects turned into their (scrubbed) text."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, _JSON_NATIVE):
            return value
        if isinstance(value, Mapping):
            return {str(k): self.scrub_value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self.scrub_value(v) for v in value]
        return self.scrub(str(value))

    # -- matching --------------------------------------------------------

    def _secret_spans(self, text: str) -> list[tuple[int, int]]:
        spans = []
        for secret in self._short:
            start = text.find(secret)
            while start >= 0:
                spans.append((start, start + len(secret)))
                start = text.find(secret, start + len(secret))
        grams = self._grams
        if not grams or len(text) < _FOUND_BY_GRAMS:
            return spans
        pieces = _PIECES.findall(text)  # the text's 4-character pieces, every 4th position
        if grams.keys().isdisjoint(pieces):  # the common case, in C
            return spans
        for n, piece in enumerate(pieces):
            for index, offset in grams.get(piece, ()):
                span = self._match(text, n * _GRAM, self._secrets[index], offset)
                if span is not None:
                    spans.append(span)
        return spans

    @staticmethod
    def _match(text: str, at: int, secret: str, offset: int) -> tuple[int, int] | None:
        """The run of ``secret`` around its piece at ``offset`` found at
        ``text[at]``, if it is whole or a fragment worth scrubbing."""
        start = at - offset
        if start >= 0 and text.startswith(secret, start):
            return start, start + len(secret)
        left = 0
        while left < offset and left < at and text[at - left - 1] == secret[offset - left - 1]:
            left += 1
        right = _GRAM
        end = min(len(secret) - offset, len(text) - at)
        while right < end and text[at + right] == secret[offset + right]:
            right += 1
        run = text[at - left : at + right]
        if len(run) < FRAGMENT_CHARS or _reads_like_a_word(run):
            return None
        return at - left, at + right


def _reads_like_a_word(run: str) -> bool:
    return not any(c.isdigit() for c in run) and not any(c.isupper() for c in run[1:])


def _replace(text: str, spans: list[tuple[int, int]]) -> str:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    out, position = [], 0
    for start, end in merged:
        out += [text[position:start], REDACTED]
        position = end
    out.append(text[position:])
    return "".join(out)


# -- where the secrets are ---------------------------------------------------


def _secrets_in(node: Any) -> Iterator[str]:
    """Every secret in a config tree, walked generically so a new ``Secret``
    field is covered the day it is added."""
    if isinstance(node, Secret):
        yield node.reveal()
    elif isinstance(node, ProxyURL):
        yield from _proxy_secrets(node)
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _secrets_in(getattr(node, name))
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from _secrets_in(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _secrets_in(value)
    elif isinstance(node, str) and "://" in node:
        yield from _url_secrets(node)


def _url_secrets(url: str) -> Iterator[str]:
    """A URL's password and credential-like query values (``?key=...``)."""
    try:
        parts = urlsplit(url.strip())
        password = parts.password
    except ValueError:
        return
    if password:
        yield unquote(password)
        yield from _basic_tokens(unquote(parts.username or ""), unquote(password))
    for name, value in parse_qsl(parts.query, keep_blank_values=False):
        if any(word in name.lower() for word in _CREDENTIAL_PARAMS):
            yield value


def _proxy_secrets(proxy: ProxyURL) -> Iterator[str]:
    if proxy.password:
        yield proxy.password
        yield from _basic_tokens(proxy.username, proxy.password)


def _basic_tokens(username: str, password: str) -> Iterator[str]:
    """The ``Proxy-Authorization: Basic`` value the gateway sends, which a
    proxy's error page may echo."""
    yield base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _environment_secrets(environ: Mapping[str, str]) -> Iterator[str]:
    for lower in _PROXY_VARIABLES:
        for name in (lower, lower.upper()):
            value = environ.get(name, "").strip()
            if value:
                yield from _url_secrets(value if "://" in value else f"http://{value}")
