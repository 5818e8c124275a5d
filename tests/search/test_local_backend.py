"""The embedded backend over a real SQLite FTS5 index: ranking, query safety,
incremental indexing, the sources it reads, ``interlock search index``, the
bundled corpus, and searches running off the event loop."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
import yaml

from interlock.cli import main
from interlock.config import ConfigError
from interlock.config.search import LocalBackendConfig
from interlock.search.backends.base import BackendError
from interlock.search.backends.local import LocalSearchBackend, open_local_backend
from interlock.search.index import IndexWriter, bundled_corpus, ensure_index
from interlock.search.query import every_term_common, plan_query, query_terms
from interlock.search.sources import Document, SourceError, open_sources
from tests.conftest import TEST_KEY, simulator_config

DOCS = [
    Document(
        "Light",
        "https://interlock.invalid/corpus/light",
        "Light travels at about 299,792 kilometres per second in a vacuum; "
        "the speed of light is a universal constant.",
    ),
    Document(
        "Sound",
        "https://interlock.invalid/corpus/sound",
        "Sound is a pressure wave. Its speed in air is about 343 metres per second, "
        "far slower than light.",
    ),
    Document(
        "Volcano",
        "https://interlock.invalid/corpus/volcano",
        "An opening in the crust through which molten rock and ash escape.",
    ),
    Document(
        "Mountains",
        "https://interlock.invalid/corpus/mountains",
        "Mountains form where plates collide; some mountains are a volcano, "
        "others are folded rock, and a volcano may grow for thousands of years.",
    ),
    Document(
        "Cats",
        "https://interlock.invalid/corpus/cats",
        "Cats are small carnivorous mammals kept as pets. Crème brûlée is not for cats.",
    ),
]


def _build(path: Path, docs: Iterable[Document] = DOCS) -> Path:
    with IndexWriter(path) as writer:
        writer.add_all(docs)
    return path


@pytest.fixture
def index(tmp_path: Path) -> Path:
    return _build(tmp_path / "index.sqlite3")


@pytest.fixture
async def backend(index: Path) -> AsyncIterator[LocalSearchBackend]:
    backend = LocalSearchBackend(index)
    yield backend
    await backend.close()


async def _titles(backend: LocalSearchBackend, query: str, n: int = 10) -> list[str]:
    return [r.title for r in await backend.search(query, n, safe_search=False)]


# -- ranking --------------------------------------------------------------------------


async def test_search_ranks_the_matching_document_first(backend: LocalSearchBackend) -> None:
    results = await backend.search("What is the speed of light?", 5, safe_search=False)
    assert results[0].title == "Light"
    assert results[0].url == "https://interlock.invalid/corpus/light"
    assert [r.rank for r in results] == list(range(1, len(results) + 1))
    assert {r.source for r in results} == {"local"}
    assert "Cats" not in [r.title for r in results]


async def test_a_title_match_outranks_body_matches(backend: LocalSearchBackend) -> None:
    # "Mountains" says volcano twice in its body; "Volcano" only has it as its title.
    assert await _titles(backend, "volcano") == ["Volcano", "Mountains"]


async def test_stemming_and_diacritics_fold(backend: LocalSearchBackend) -> None:
    assert (await _titles(backend, "travelling"))[0] == "Light"
    assert await _titles(backend, "creme brulee") == ["Cats"]


async def test_num_results_is_respected(backend: LocalSearchBackend) -> None:
    assert len(await _titles(backend, "light sound speed", 1)) == 1
    assert len(await _titles(backend, "light sound speed", 2)) == 2
    assert await _titles(backend, "light", 0) == []


def test_the_query_keeps_words_and_drops_stopwords() -> None:
    assert query_terms("What is the speed of Light? light!") == ["speed", "light"]
    assert query_terms("the who") == ["the", "who"]  # nothing but stopwords: keep them
    assert query_terms('NEAR(a b) "x" -y * ^z:') == ["near", "b", "x", "y", "z"]
    assert query_terms("  \t ") == []


def test_the_plan_keeps_the_rarest_terms_within_the_budget() -> None:
    frequencies = {"the": 900, "bird": 40, "kestrel": 3, "zzz": 0}
    assert plan_query(frequencies, budget=100) == '"kestrel" OR "bird"'
    assert plan_query(frequencies, budget=10_000) == '"kestrel" OR "bird" OR "the"'
    # Every term common: the documents having all of them.
    assert plan_query({"world": 500, "first": 300}, budget=100) == '"first" AND "world"'
    assert plan_query({"zzz": 0}) is None
    assert plan_query({'a"b': 1}) == '"a""b"'


# -- the user's text is never FTS5 syntax -----------------------------------------------

HOSTILE = [
    '"',
    'light"',
    '"unterminated phrase',
    "*",
    "light*",
    "NEAR(light sound)",
    "NEAR(light sound, 2)",
    "light -sound",
    "-light",
    "(light OR",
    "light) AND (",
    "title:light",
    "{title body}: light",
    "^light",
    "light AND OR NOT",
    "AND",
    "light + sound",
    "'; DROP TABLE documents; --",
    "lumière 光 🚀 Ωmega",
    "\x00light",
    "light " * 500,
]


@pytest.mark.parametrize("query", HOSTILE)
async def test_fts5_syntax_in_the_query_is_harmless(
    backend: LocalSearchBackend, index: Path, query: str
) -> None:
    results = await backend.search(query, 5, safe_search=False)
    if "light" in query.lower():
        assert "Light" in [r.title for r in results]
    with sqlite3.connect(index) as db:
        assert db.execute("SELECT count(*) FROM documents").fetchone() == (len(DOCS),)


@pytest.mark.parametrize("query", ["", "   ", "\n\t", "*** () ^ -", '""'])
async def test_a_query_without_words_has_no_results(
    backend: LocalSearchBackend, query: str
) -> None:
    assert await backend.search(query, 5, safe_search=True) == []


# -- snippets ---------------------------------------------------------------------------


async def test_snippets_are_plain_text(tmp_path: Path) -> None:
    body = "Intro line.\n\n" + "filler words here. " * 40 + "The kestrel hovers over fields."
    path = _build(tmp_path / "i.sqlite3", [Document("Birds", "u/birds", body)])
    backend = LocalSearchBackend(path)
    try:
        [result] = await backend.search("kestrel", 3, safe_search=False)
    finally:
        await backend.close()
    assert "kestrel hovers" in result.snippet
    assert result.snippet.startswith("…")  # cut from a long body, no markers added
    assert not any(c in result.snippet for c in "<>[]\n\t")
    assert "  " not in result.snippet


# -- writing ----------------------------------------------------------------------------


async def test_reindexing_a_url_replaces_the_document(index: Path) -> None:
    backend = LocalSearchBackend(index, threads=1)  # one reader: its counts must go stale
    try:
        assert await _titles(backend, "photons") == []
        with IndexWriter(index) as writer:
            writer.add(Document("Light, revised", DOCS[0].url, "Photons have no rest mass."))
            assert writer.count() == len(DOCS)
        assert await _titles(backend, "photons") == ["Light, revised"]
        assert "Light, revised" not in await _titles(backend, "vacuum")
    finally:
        await backend.close()


def test_a_failed_batch_is_rolled_back(tmp_path: Path) -> None:
    path = tmp_path / "i.sqlite3"
    with pytest.raises(RuntimeError), IndexWriter(path) as writer:
        writer.add(DOCS[0])
        raise RuntimeError("source broke")
    with IndexWriter(path) as writer:
        assert writer.count() == 0


# -- sources ----------------------------------------------------------------------------


def _write_docs_dir(root: Path) -> Path:
    docs = root / "docs"
    (docs / "guide").mkdir(parents=True)
    (docs / ".hidden").mkdir()
    (docs / "guide" / "setup.md").write_text(
        "# Setting *up* the `gateway`\n\nRun it with [the CLI](cli.md).\n\n"
        "| a | b |\n|---|---|\n| zebra | quagga |\n",
        encoding="utf-8",
    )
    (docs / "page.html").write_text(
        "<html><head><title>Kiwi &amp; friends</title><style>p{color:red}</style></head>"
        "<body><h1>Ignored heading</h1><script>var flightless = 1;</script>"
        "<p>The kiwi is a <b>flightless</b> bird.</p></body></html>",
        encoding="utf-8",
    )
    (docs / "release_notes.txt").write_text("Version two adds wombats.\n", encoding="utf-8")
    (docs / ".hidden" / "secret.md").write_text("# Secret\n\nplatypus", encoding="utf-8")
    (docs / "image.png").write_bytes(b"\x89PNG")
    return docs


def test_a_directory_of_pages_becomes_documents(tmp_path: Path) -> None:
    total, documents = open_sources([_write_docs_dir(tmp_path)])
    by_url = {d.url: d for d in documents}
    assert total == 3 and set(by_url) == {
        "docs/guide/setup.md",
        "docs/page.html",
        "docs/release_notes.txt",
    }
    setup = by_url["docs/guide/setup.md"]
    assert setup.title == "Setting *up* the gateway"
    assert "Run it with the CLI" in setup.body and "zebra" in setup.body
    assert not any(c in setup.body for c in "#`[]()|")
    page = by_url["docs/page.html"]
    assert page.title == "Kiwi & friends"
    assert page.body.splitlines() == ["Ignored heading", "The kiwi is a flightless bird."]
    assert by_url["docs/release_notes.txt"].title == "Release notes"


async def test_html_pages_are_searchable_as_text(tmp_path: Path) -> None:
    _, documents = open_sources([_write_docs_dir(tmp_path)])
    backend = LocalSearchBackend(_build(tmp_path / "i.sqlite3", documents))
    try:
        [kiwi] = await backend.search("flightless", 5, safe_search=False)
        assert await backend.search("color red", 5, safe_search=False) == []
        assert await backend.search("platypus", 5, safe_search=False) == []
    finally:
        await backend.close()
    assert kiwi.title == "Kiwi & friends" and "<" not in kiwi.snippet


def test_a_malformed_jsonl_line_is_reported_with_its_number(tmp_path: Path) -> None:
    source = tmp_path / "docs.jsonl"
    source.write_text('{"url": "u/1", "text": "ok"}\n\n{"title": "no url", "body": "x"}\n')
    total, documents = open_sources([source])
    assert total == 2
    with pytest.raises(SourceError, match=r"docs\.jsonl:3: url"):
        list(documents)


# -- the CLI ----------------------------------------------------------------------------


def _jsonl(path: Path, docs: Iterable[Document]) -> Path:
    lines = (json.dumps({"title": d.title, "url": d.url, "body": d.body}) for d in docs)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def test_the_cli_indexes_jsonl_and_directories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _jsonl(tmp_path / "docs.jsonl", DOCS)
    index = tmp_path / "out" / "index.sqlite3"
    argv = ["search", "index", str(source), str(_write_docs_dir(tmp_path)), "--index", str(index)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "indexed 8 documents in" in out and "docs/s" in out and "it holds 8 documents" in out
    assert "indexing" in err and "8/8" in err and err.endswith("\n")

    assert main(argv) == 0  # the same urls again: replaced, not added
    assert "it holds 8 documents" in capsys.readouterr().out
    backend = LocalSearchBackend(index)
    try:
        assert (await _titles(backend, "kiwi"))[0] == "Kiwi & friends"
        assert (await _titles(backend, "speed of light"))[0] == "Light"
    finally:
        await backend.close()


def test_the_cli_takes_the_index_path_from_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_KEY", TEST_KEY)
    index = tmp_path / "configured.sqlite3"
    config = {**simulator_config(), "search": {"backends": [{"type": "local", "path": str(index)}]}}
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    source = _jsonl(tmp_path / "docs.jsonl", DOCS[:2])
    assert main(["search", "index", str(source), "--config", str(config_file)]) == 0
    assert str(index) in capsys.readouterr().out
    with IndexWriter(index) as writer:
        assert writer.count() == 2


def test_documents_added_to_the_default_index_join_the_bundled_corpus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTERLOCK_DATA_DIR", str(tmp_path / "data"))
    mine = [Document("Our runbook", "runbook.md", "Restart the gateway with SIGTERM.")]
    source = _jsonl(tmp_path / "docs.jsonl", mine)
    assert main(["search", "index", str(source)]) == 0
    with IndexWriter(tmp_path / "data" / "search-index.sqlite3") as writer:
        held = writer.count()
    assert held == len(list(bundled_corpus())) + 1
    assert f"it holds {held} documents" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        (["missing.jsonl"], "missing.jsonl: no such file"),
        (["notes.pdf"], "notes.pdf: not a directory, .jsonl or page"),
        ([], "nothing to index"),
    ],
)
def test_the_cli_reports_bad_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sources: list[str], message: str
) -> None:
    (tmp_path / "notes.pdf").write_bytes(b"%PDF")
    paths = [str(tmp_path / s) for s in sources]
    assert main(["search", "index", *paths, "--index", str(tmp_path / "i.sqlite3")]) == 1
    assert message in capsys.readouterr().err


# -- the bundled corpus and first start -------------------------------------------------


@pytest.mark.parametrize(
    ("question", "title"),
    [
        ("speed of light", "Light"),
        ("Who painted the Mona Lisa?", "Mona Lisa"),
        ("when did the Berlin Wall fall", "Berlin Wall"),
        ("how do vaccines work", "Vaccine"),
        ("what is the largest animal that ever lived", "Blue whale"),
        ("python programming language", "Python (programming language)"),
        ("What causes earthquakes?", "Earthquake"),
    ],
)
async def test_the_bundled_corpus_answers_real_questions(
    tmp_path_factory: pytest.TempPathFactory, question: str, title: str
) -> None:
    path = ensure_index(tmp_path_factory.getbasetemp() / "bundled" / "index.sqlite3")
    backend = LocalSearchBackend(path)
    try:
        results = await backend.search(question, 3, safe_search=False)
    finally:
        await backend.close()
    assert results[0].title == title
    assert results[0].url.startswith("https://interlock.invalid/corpus/")


def test_the_bundled_corpus_is_large_enough() -> None:
    corpus = Path(__file__).parents[2] / "src/interlock/search/corpus/articles.jsonl"
    articles = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
    assert len(articles) >= 300
    assert len({a["url"] for a in articles}) == len(articles)
    assert all(80 <= len(a["body"].split()) <= 200 for a in articles)


def test_processes_starting_at_once_build_one_index(tmp_path: Path) -> None:
    path = tmp_path / "data" / "search-index.sqlite3"
    barrier = threading.Barrier(4)
    built: list[Path] = []

    def start() -> None:
        barrier.wait()
        built.append(ensure_index(path))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert built == [path] * 4
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp files left
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM documents").fetchone()[0] >= 300
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_an_existing_index_is_left_alone(index: Path) -> None:
    before = index.stat().st_mtime_ns
    assert ensure_index(index) == index
    assert index.stat().st_mtime_ns == before


async def test_the_default_index_is_built_in_the_data_directory(tmp_path: Path) -> None:
    backend = open_local_backend(LocalBackendConfig(), {"INTERLOCK_DATA_DIR": str(tmp_path)})
    try:
        assert backend.path == tmp_path / "search-index.sqlite3"
        assert backend.name == "local"
        assert (await _titles(backend, "speed of light"))[0] == "Light"
    finally:
        await backend.close()


def test_a_configured_index_that_is_missing_is_a_config_error(tmp_path: Path) -> None:
    config = LocalBackendConfig(name="docs", path=str(tmp_path / "nope.sqlite3"))
    with pytest.raises(ConfigError, match=r"docs.*no index at .*interlock search index"):
        open_local_backend(config, {})


# -- failures and the event loop ---------------------------------------------------------


async def test_a_missing_or_broken_file_is_a_backend_error(tmp_path: Path) -> None:
    missing = LocalSearchBackend(tmp_path / "gone.sqlite3", name="mine")
    with pytest.raises(BackendError, match="mine: index") as caught:
        await missing.search("light", 3, safe_search=False)
    assert caught.value.backend == "mine"
    await missing.close()

    (tmp_path / "junk.sqlite3").write_bytes(b"not a database at all" * 100)
    junk = LocalSearchBackend(tmp_path / "junk.sqlite3")
    with pytest.raises(BackendError) as caught:
        await junk.search("light", 3, safe_search=False)
    assert caught.value.retryable is False
    await junk.close()


async def test_a_search_on_a_closed_backend_fails(index: Path) -> None:
    backend = LocalSearchBackend(index)
    await backend.close()
    await backend.close()  # idempotent
    with pytest.raises(BackendError, match="closed"):
        await backend.search("light", 3, safe_search=False)


async def test_a_search_past_its_timeout_is_interrupted(index: Path) -> None:
    # Another process holds the index exclusively: the reader waits on the lock.
    holder = sqlite3.connect(index, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    backend = LocalSearchBackend(index, timeout_s=0.2)
    try:
        with pytest.raises(BackendError, match=r"no answer within 0\.2 s") as caught:
            await backend.search("light", 3, safe_search=False)
        assert caught.value.retryable
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        await backend.close()


async def test_searches_run_off_the_event_loop(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = ensure_index(tmp_path_factory.getbasetemp() / "bundled" / "index.sqlite3")
    backend = LocalSearchBackend(path, threads=2)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    questions = ["speed of light", "history of rome", "how do bees make honey"] * 100
    ticking = asyncio.create_task(ticker())
    try:
        results = await asyncio.gather(
            *(backend.search(q, 10, safe_search=False) for q in questions)
        )
    finally:
        done.set()
        await ticking
        await backend.close()
    assert all(len(r) == 10 for r in results)
    # Had the searches run on the loop, the ticker would have waited for all 300.
    assert ticks >= 50


async def test_when_every_word_is_common_title_matches_come_first_then_the_rest(
    tmp_path: Path,
) -> None:
    docs = [Document(f"Note {n}", f"note-{n}", f"river and stone, entry {n}") for n in range(6)] + [
        Document("River stone", "river-stone", "a page on river and stone")
    ]
    # A budget of 2 postings: both words (in 7 documents each) count as common.
    backend = LocalSearchBackend(_build(tmp_path / "index.sqlite3", docs), rank_budget=2)
    try:
        titles = await _titles(backend, "river stone", 4)
        everything = await _titles(backend, "river stone", 20)
    finally:
        await backend.close()
    assert titles[0] == "River stone" and len(titles) == 4
    assert sorted(everything) == sorted(d.title for d in docs)  # each once
    assert every_term_common({"river": 7, "stone": 7}, budget=2)
    assert not every_term_common({"river": 7, "pebble": 1}, budget=2)
