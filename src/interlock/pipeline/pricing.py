"""What an answer costs, each class of token at its own rate.

OpenAI-shaped usage counts every input token in ``prompt_tokens``;
``prompt_tokens_details.cached_tokens`` says how many of them were read
from a prompt cache (OpenAI, Anthropic, Gemini report it; DeepSeek as
``prompt_cache_hit_tokens``, read where the other is absent) and
``cache_write_tokens`` how many were written to one (Anthropic's cache
creation, dearer than plain input). Charging them all at the input rate
overbills cache reads several times over; here each class has its rate.
Web searches an upstream runs as a server tool (Anthropic's) are billed
per thousand, apart from tokens: ``usage.server_tool_use``.

A ``Price`` is the rates in use for one deployment and where they came
from: the config file's ``price``, the offline catalog
(``pipeline.price_catalog``), or nothing to pay for an in-process engine.
Catalog prices can have long-context tiers (a higher rate for every token
once the prompt passes a size); they are applied here as the catalog does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from interlock.chat_markers import cached_prompt_tokens
from interlock.config import PriceConfig

__all__ = ["Price", "Rates", "TokenClasses", "token_classes", "usage_cost", "web_searches"]


@dataclass(frozen=True, slots=True)
class Rates:
    """US dollars per million tokens of each class, and per thousand web
    searches an upstream ran itself (Anthropic's server tool)."""

    input: float
    output: float
    cache_read: float
    cache_write: float
    web_search: float = 0.0

    @classmethod
    def of(cls, config: PriceConfig) -> Rates:
        """A config ``price``; an unset cache rate is the input rate."""
        read, write = config.cached_input_per_million, config.cache_write_per_million
        return cls(
            config.input_per_million,
            config.output_per_million,
            config.input_per_million if read is None else read,
            config.input_per_million if write is None else write,
            config.web_search_per_thousand,
        )

    def card(self) -> dict[str, float]:
        card = {
            "input_per_million": self.input,
            "output_per_million": self.output,
            "cached_input_per_million": self.cache_read,
            "cache_write_per_million": self.cache_write,
        }
        if self.web_search:
            card["web_search_per_thousand"] = self.web_search
        return card


@dataclass(frozen=True, slots=True)
class Price:
    """The rates one deployment is charged at, and their source:
    ``config``, ``catalog`` or ``in-process`` (nothing per token)."""

    base: Rates
    source: str
    # What the catalog matched, e.g. "genai-prices 0.2.5: anthropic/claude-sonnet-4-5".
    reference: str = ""
    # (prompt tokens above which, the rates from there), ascending.
    tiers: tuple[tuple[int, Rates], ...] = ()

    @classmethod
    def of(cls, config: PriceConfig) -> Price:
        return cls(Rates.of(config), "config")

    def rates(self, prompt_tokens: int) -> Rates:
        for threshold, rates in reversed(self.tiers):
            if prompt_tokens > threshold:
                return rates
        return self.base

    def card(self) -> dict[str, Any]:
        """How ``/v1/models`` shows it."""
        card: dict[str, Any] = {**self.base.card(), "source": self.source}
        if self.reference:
            card["reference"] = self.reference
        if self.tiers:
            card["tiers"] = [
                {"above_prompt_tokens": threshold, **rates.card()}
                for threshold, rates in self.tiers
            ]
        return card


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
    read = min(cached_prompt_tokens(usage), prompt)
    written = min(_count(details.get("cache_write_tokens")), prompt - read)
    return TokenClasses(
        prompt - read - written, read, written, _count(usage.get("completion_tokens"))
    )


def usage_cost(usage: dict[str, Any], price: Price | PriceConfig) -> float:
    """US dollars for ``usage`` at ``price``."""
    if isinstance(price, PriceConfig):
        price = Price.of(price)
    tokens = token_classes(usage)
    prompt = tokens.plain_input + tokens.cache_read + tokens.cache_write
    rates = price.rates(prompt) if price.tiers else price.base
    parts = (
        tokens.plain_input * rates.input,
        tokens.cache_read * rates.cache_read,
        tokens.cache_write * rates.cache_write,
        tokens.output * rates.output,
        web_searches(usage) * rates.web_search * 1_000,
    )
    return math.fsum(parts) / 1_000_000


def web_searches(usage: dict[str, Any]) -> int:
    """Searches the upstream ran and bills apart (Anthropic's
    ``usage.server_tool_use.web_search_requests``)."""
    server = usage.get("server_tool_use")
    return _count(server.get("web_search_requests")) if isinstance(server, dict) else 0


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
