"""The simulator's cited summary for the search service's prompt."""

from __future__ import annotations

from interlock.providers.simulator_summary import cited_summary
from interlock.search.backends.base import SearchResult
from interlock.search.summary import build_messages


def _prompt(*snippets: str) -> str:
    results = [
        SearchResult(f"Title {n}", f"https://interlock.invalid/{n}", s, "local", n)
        for n, s in enumerate(snippets, 1)
    ]
    return "\n".join(m["content"] for m in build_messages("a question", results))


def test_each_of_the_first_results_gives_its_first_sentence_and_citation() -> None:
    prompt = _prompt(
        "Light travels at 299,792 km/s in a vacuum. Nothing is faster.",
        "Sound needs a medium! It cannot cross a vacuum.",
        "Lightning heats the air.",
        "A fourth result is not summarized.",
    )
    assert cited_summary(prompt) == (
        "Light travels at 299,792 km/s in a vacuum [1]. Sound needs a medium [2]. "
        "Lightning heats the air [3]."
    )


def test_the_same_prompt_gives_the_same_summary_and_other_prompts_none() -> None:
    prompt = _prompt("One sentence.")
    assert cited_summary(prompt) == cited_summary(prompt) == "One sentence [1]."
    assert cited_summary("Hello, how are you?") is None
    assert cited_summary(_prompt()) == "The search found nothing to summarize."


def test_a_long_sentence_is_cut_at_a_word() -> None:
    summary = cited_summary(_prompt("word " * 100))
    assert summary is not None and summary.endswith("… [1].") and len(summary) < 260


def test_a_snippet_cut_from_mid_document_loses_its_ellipsis() -> None:
    assert cited_summary(_prompt("…in a vacuum it travels fast. More.")) == (
        "in a vacuum it travels fast [1]."
    )
