"""A user's question as an FTS5 query: words only, never FTS5 syntax.

The text is split into words (Unicode letters and digits), lower-cased,
stripped of common English stopwords and de-duplicated (``query_terms``);
each word becomes one quoted FTS5 string and the strings are joined with
``OR`` (``plan_query``, which leaves out words too common to be worth their
cost). BM25 then ranks the documents that match any word, so a
natural-language question ("how fast does light travel?") finds the
documents sharing its rarest words first, and a document matching more of
them ranks above one matching fewer.

Because every word is quoted, nothing the user types reaches FTS5 as an
operator: ``NEAR``, ``AND``, ``*``, ``-``, ``^``, ``:``, parentheses and quotes
are all either separators or plain words. A query with no words at all
(empty, whitespace, punctuation only) has no FTS5 form: ``None``.
"""

from __future__ import annotations

import re

__all__ = [
    "MAX_TERMS",
    "RANK_BUDGET",
    "STOPWORDS",
    "every_term_common",
    "plan_query",
    "query_terms",
]

# How many postings (document hits, summed over the chosen terms) BM25 may
# score for one query: ranking costs about 1.5 us a posting, so this bounds a
# query's ranking to ~15 ms however large the index grows.
RANK_BUDGET = 10_000

# A question longer than this is cut: BM25 over dozens of OR'ed terms costs
# more and ranks no better.
MAX_TERMS = 16

_WORD = re.compile(r"[^\W_]+")

# Words that carry no topic. Dropped unless the query has nothing else
# ("the who" still searches for something).
STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been
    before being below between both but by can could did do does doing down during
    each few for from further had has have having he her here hers herself him
    himself his how i if in into is it its itself just me more most my myself no
    nor not now of off on once only or other our ours ourselves out over own same
    she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when
    where which while who whom why will with would you your yours yourself
    yourselves tell explain describe please know many much does
    """.split()
)


def query_terms(text: str, *, max_terms: int = MAX_TERMS) -> list[str]:
    """The words of ``text`` worth searching for, in order, without repeats."""
    words = [w.casefold() for w in _WORD.findall(text)]
    kept = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(kept))[:max_terms]


def plan_query(frequencies: dict[str, int], *, budget: int = RANK_BUDGET) -> str | None:
    """The MATCH expression to rank, given each term's document frequency.

    The rarest terms are kept, OR'ed, while their postings fit ``budget``:
    a word found in a large share of the documents says little about which
    one is wanted (its BM25 weight is small) and costs the most to score, so
    it is dropped when rarer words can carry the query (the cut-off idea of
    Lucene's "common terms" query). When even the rarest term is over the
    budget, every term is common: their AND is ranked instead, the documents
    having all of them. Terms no document has are left out; ``None`` when no
    term is left.
    """
    present = sorted((t for t in frequencies if frequencies[t] > 0), key=frequencies.__getitem__)
    if not present:
        return None
    if frequencies[present[0]] > budget:
        return _join(present, " AND ")
    chosen: list[str] = []
    postings = 0
    for term in present:
        postings += frequencies[term]
        if postings > budget:
            break
        chosen.append(term)
    return _join(chosen, " OR ")


def every_term_common(frequencies: dict[str, int], *, budget: int = RANK_BUDGET) -> bool:
    """Whether ``plan_query`` fell back to the AND of every term: even the
    rarest present term has more postings than ``budget``."""
    present = [count for count in frequencies.values() if count > 0]
    return bool(present) and min(present) > budget


def _join(terms: list[str], operator: str) -> str:
    # _WORD admits no double quote, but escape anyway: this is the only
    # place user text enters FTS5 syntax.
    return operator.join('"' + term.replace('"', '""') + '"' for term in terms)
