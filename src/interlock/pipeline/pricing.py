"""What an answer costs, each class of token at its own rate.

OpenAI-shaped usage counts every input token in ``prompt_tokens``;
``prompt_tokens_details.cached_tokens`` says how many of them were read
from a prompt cache (OpenAI, Anthropic, Gemini, DeepSeek report it) and
``cache_write_tokens`` how many were written to one (Anthropic's cache
creation, dearer than plain input). Charging them all at the input rate
overbills cache reads several times over; here each class has its rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from interlock.config import PriceConfig

__all__ = ["TokenClasses", "token_classes", "usage_cost"]


@dataclass(frozen=True, slots=True)
class TokenClasses:
    """Input split by cache use (they sum to the prompt tokens), and output."""

    plain_input: int
    cache_read: int
    cache_write: int
    output: int


def token_classes(usage: dict[str, Any]) -> TokenClasses:
    prompt = _count(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    # Never more cached than the prompt holds, whatever an upstream reports.
    read = min(_count(details.get("cached_tokens")), prompt)
    written = min(_count(details.get("cache_write_tokens")), prompt - read)
    return TokenClasses(
        prompt - read - written, read, written, _count(usage.get("completion_tokens"))
    )


def usage_cost(usage: dict[str, Any], price: PriceConfig) -> float:
    """US dollars for ``usage`` at ``price``."""
    tokens = token_classes(usage)
    read_rate = price.cached_input_per_million
    write_rate = price.cache_write_per_million
    parts = (
        tokens.plain_input * price.input_per_million,
        tokens.cache_read * (price.input_per_million if read_rate is None else read_rate),
        tokens.cache_write * (price.input_per_million if write_rate is None else write_rate),
        tokens.output * price.output_per_million,
    )
    return math.fsum(parts) / 1_000_000


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
