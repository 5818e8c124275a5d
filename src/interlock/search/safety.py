"""What a search query may be, and what a summary may hold.

Queries (checked before any work, a 400 naming the problem): at most
``search.max_query_chars`` characters (500), no control characters (a
newline or tab is folded to a space; NUL, escape codes and the like are
refused), and not a prompt-injection attempt (the guardrails' rules at their
usual 0.7 threshold): the query goes into the summary's prompt, so an
injection in it would be one into our own prompt.

Summaries, on their way out: unicode-normalized (NFKC), control and
invisible characters removed, dangerous patterns removed (script, iframe,
event-handler attributes, ``javascript:``/``data:``/``vbscript:`` URLs),
HTML-escaped, and cut at ``search.summary_max_chars``. The page then treats
what it gets as text as well: two layers, since a summary is model output
built from third-party pages.

``safe_search`` runs results and summary through the content checks (the
guardrails' word list): a flagged result is dropped, a flagged summary
sentence is replaced.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence

from interlock.errors import InvalidRequest
from interlock.guardrails.content import ContentClassifier, WordListClassifier
from interlock.guardrails.injection import InjectionDetector
from interlock.search.backends.base import SearchResult

__all__ = ["QueryPolicy", "SummaryCleaner", "filter_results", "filter_summary"]

_FOLDED_BLANKS = re.compile(r"[\t\n\r\u00a0]+")
_DANGEROUS = re.compile(
    r"<\s*/?\s*(?:script|iframe|object|embed|style|svg|math|form|meta|link|base)\b[^>]*>?"
    r"|\bon[a-z]{3,20}\s*="
    r"|\b(?:javascript|vbscript|data)\s*:",
    re.IGNORECASE,
)
_INJECTION_THRESHOLD = 0.7
FLAGGED_SENTENCE = "[removed by safe search]"


def _is_control(char: str) -> bool:
    # Cc: C0/C1 controls; Cf: format characters (zero-width, bidi overrides),
    # which can hide text or flip its direction on the page.
    return unicodedata.category(char) in ("Cc", "Cf")


class QueryPolicy:
    def __init__(self, max_chars: int, detector: InjectionDetector | None = None):
        self.max_chars = max_chars
        self._detector = detector or InjectionDetector()

    def check(self, query: object) -> str:
        """The query, cleaned (blanks folded, trimmed); ``InvalidRequest`` otherwise."""
        if not isinstance(query, str):
            raise InvalidRequest("`query` must be a string.", param="query")
        query = _FOLDED_BLANKS.sub(" ", query).strip()
        if not query:
            raise InvalidRequest("`query` must not be empty.", param="query")
        if len(query) > self.max_chars:
            raise InvalidRequest(
                f"`query` is {len(query)} characters long; the limit is {self.max_chars}.",
                param="query",
                code="query_too_long",
            )
        if any(_is_control(c) for c in query):
            raise InvalidRequest(
                "`query` contains control characters.", param="query", code="invalid_query"
            )
        if self._detector.score(query).score >= _INJECTION_THRESHOLD:
            raise InvalidRequest(
                "`query` looks like an attempt to instruct the summarizer; ask a question instead.",
                param="query",
                code="query_refused",
            )
        return query


class SummaryCleaner:
    """Makes model text safe to send: see the module docstring."""

    def __init__(self, max_chars: int):
        self.max_chars = max_chars

    def clean(self, text: str) -> str:
        """The whole summary (or a delta of it) made safe; not yet cut."""
        text = unicodedata.normalize("NFKC", text)
        text = "".join(c for c in text if c in "\n" or not _is_control(c))
        text = _DANGEROUS.sub("", text)
        return html.escape(text, quote=True)

    def cut(self, text: str) -> str:
        """``text`` (cleaned) within the limit, cut at a word where one is near."""
        if len(text) <= self.max_chars:
            return text
        cut = text[: self.max_chars - 1]
        space = cut.rfind(" ")
        if space > self.max_chars * 0.8:
            cut = cut[:space]
        amp = cut.rfind("&")  # never cut an escape such as &amp; in half
        if amp > cut.rfind(";"):
            cut = cut[:amp]
        return cut + "…"


def filter_results(
    results: Sequence[SearchResult], classifier: ContentClassifier | None = None
) -> list[SearchResult]:
    """Results whose title and snippet pass the content check, ranks kept."""
    classifier = classifier or WordListClassifier()
    return [r for r in results if not classifier.classify(f"{r.title}\n{r.snippet}").flagged]


def filter_summary(text: str, classifier: ContentClassifier | None = None) -> str:
    """``text`` with each flagged sentence replaced."""
    classifier = classifier or WordListClassifier()
    sentences = re.split(r"(?<=[.!?])\s+", text)
    return " ".join(FLAGGED_SENTENCE if classifier.classify(s).flagged else s for s in sentences)
