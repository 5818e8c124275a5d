from __future__ import annotations

from interlock.guardrails.content import WordListClassifier


def test_builtin_list_flags_whole_words_and_endings() -> None:
    words = WordListClassifier()
    assert words.classify("this is fucking broken").flagged
    assert words.classify("What a BITCH of a day").categories == ("profanity",)
    assert words.classify("oh piss   off").flagged


def test_no_scunthorpe_problem() -> None:
    words = WordListClassifier()
    for text in ["Scunthorpe United", "an assassin's creed", "Dickens wrote it", "shitake? no"]:
        assert not words.classify(text).flagged, text


def test_configurable_list() -> None:
    words = WordListClassifier(["darn", "heck*"], category="mild")
    assert words.classify("Darn it").categories == ("mild",)
    assert words.classify("what the heckin").flagged
    assert not words.classify("fuck").flagged


def test_empty_list_flags_nothing() -> None:
    assert not WordListClassifier([]).classify("anything at all").flagged
