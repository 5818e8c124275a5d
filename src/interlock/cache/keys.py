"""Cache keys: which parts of a request determine its answer, hashed.

The key is a blake2b digest of the namespace (the tenant), the model group,
the invalidation generations and the request body in a canonical form
(sorted keys, ``null`` fields dropped, numbers in sampling parameters as
floats, ``stop`` as a list).

Every body field is part of the key except the few known not to change the
answer (``IGNORED_FIELDS``). A denylist, not an allowlist, because clients
send fields we do not know (``reasoning_effort``, ``verbosity``, ...) and any
of them may change the answer: a wrongly split cache costs a miss, a wrongly
merged one serves a different answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = [
    "IGNORED_EMBEDDING_FIELDS",
    "IGNORED_FIELDS",
    "body_digest",
    "canonical_json",
    "embedding_input_digest",
    "storage_key",
]

# Transport, identity and bookkeeping fields: the same answer whatever they say.
IGNORED_FIELDS = frozenset(
    {
        "model",  # replaced by the model group the key is built for
        "user",
        "stream",
        "stream_options",
        "metadata",
        "store",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
    }
)
# Embeddings: the input is keyed per item; vectors are cached as floats and
# ``encoding_format`` is applied after the cache.
IGNORED_EMBEDDING_FIELDS = IGNORED_FIELDS | {"input", "encoding_format"}

# Numeric parameters where ``0`` and ``0.0`` must be the same key.
_FLOAT_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
_DIGEST_BYTES = 20


def canonical_json(value: Any) -> bytes:
    """One byte string per JSON value: dict keys sorted at every depth."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _normalized(body: Mapping[str, Any], ignored: frozenset[str]) -> dict[str, Any]:
    out = {k: v for k, v in body.items() if k not in ignored and v is not None}
    for name in _FLOAT_FIELDS:
        value = out.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    if isinstance(out.get("stop"), str):
        out["stop"] = [out["stop"]]
    if out.get("n") == 1:
        del out["n"]  # OpenAI's default
    return out


def body_digest(
    body: Mapping[str, Any],
    *,
    embedding: bool = False,
    dialect: str = "openai",
    dialect_headers: Mapping[str, str] | None = None,
) -> str:
    """The digest of the answer-determining parts of ``body`` (pure, no tenant).

    For embeddings the input is left out: it is keyed per item by
    ``embedding_input_digest``, so a batch shares entries with its parts.
    ``dialect`` is the API the client spoke (its edge translated the body):
    other than OpenAI's, it is part of the key, and so are the dialect's
    headers that reach upstreams (Anthropic's ``anthropic-beta``: a beta can
    change the answer).
    """
    ignored = IGNORED_EMBEDDING_FIELDS if embedding else IGNORED_FIELDS
    kind = b"embed\0" if embedding else b"chat\0"
    if dialect != "openai":  # OpenAI's keys stay as they were
        kind += dialect.encode() + b"\0"
    if dialect_headers:
        kind += canonical_json(dict(dialect_headers)) + b"\0"
    data = kind + canonical_json(_normalized(body, ignored))
    return hashlib.blake2b(data, digest_size=_DIGEST_BYTES).hexdigest()


def embedding_input_digest(item: str | list[int]) -> str:
    """The digest of one embeddings input (a string or a token list)."""
    return hashlib.blake2b(canonical_json(item), digest_size=_DIGEST_BYTES).hexdigest()


def storage_key(namespace: str, model: str, generations: tuple[int, int], digest: str) -> str:
    """The key an answer is stored under.

    The namespace is hashed in, so one tenant cannot address another's entry;
    the (namespace, model) generations too, so bumping either one moves every
    later lookup to fresh keys (see ``interlock.cache.invalidation``).
    """
    data = canonical_json([namespace, model, generations[0], generations[1], digest])
    return hashlib.blake2b(data, digest_size=_DIGEST_BYTES).hexdigest()
