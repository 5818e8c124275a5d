"""The simulator's answer to a search-summary prompt: a deterministic
summary that cites the numbered results it was given, so the search
service's whole flow (results, a streamed cited summary, citations checked)
works offline with no model server.

The prompt's contract is ``interlock.search.summary``'s: numbered results
written as ``[n] title`` followed by their snippet lines, under a line
``Search results:``. The answer takes the first sentence of each of the
first results' snippets and cites it; the simulator knows nothing else about
search.
"""

from __future__ import annotations

import re

__all__ = ["cited_summary"]

_MARKER = "Search results:"
_RESULT = re.compile(r"^\[(\d{1,2})\] (.*)$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
# Results summarized: enough to show several citations, short enough to read.
_CITED = 3
_MAX_SENTENCE_CHARS = 240


def cited_summary(prompt: str) -> str | None:
    """The summary for a search-summary ``prompt``; None for any other prompt."""
    at = prompt.find(_MARKER)
    if at < 0:
        return None
    snippets: dict[int, list[str]] = {}
    current: int | None = None
    for line in prompt[at + len(_MARKER) :].splitlines():
        found = _RESULT.match(line.strip())
        if found is not None:
            current = int(found.group(1))
            snippets[current] = []
        elif current is not None and line.strip():
            snippets[current].append(line.strip())
    sentences = []
    for number, lines in list(snippets.items())[:_CITED]:
        sentence = _first_sentence(" ".join(lines))
        if sentence:
            sentences.append(f"{sentence} [{number}].")
    if not sentences:
        return "The search found nothing to summarize."
    return " ".join(sentences)


def _first_sentence(text: str) -> str:
    # A snippet cut from mid-document starts with an ellipsis: not the answer's.
    text = text.strip().lstrip("….").strip()
    sentence = _SENTENCE_END.split(text, maxsplit=1)[0]
    if len(sentence) > _MAX_SENTENCE_CHARS:
        sentence = sentence[:_MAX_SENTENCE_CHARS].rsplit(" ", 1)[0] + "…"
    return sentence.rstrip(" .!?")
