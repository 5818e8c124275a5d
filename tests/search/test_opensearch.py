"""The OpenSearch backend, through the official client, against a fake node on loopback.

No OpenSearch server installs from PyPI or Debian, so the node is a fake
speaking the documented response shapes of ``GET /``, ``_search`` and ``_bulk``.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

pytest.importorskip("opensearchpy")

from interlock.config import Secret
from interlock.config.search import OpenSearchBackendConfig, SearchConfig
from interlock.search.backends.base import BackendError
from interlock.search.backends.opensearch import OpenSearchBackend
from interlock.search.chain import build_backends
from interlock.search.sources import Document
from tests.search.fakes import FakeOpenSearch
from tests.support.servers import FakeUpstream

PASSWORD = "os-pass-0123456789abcdef"
DOCS = [
    Document("BM25 explained", "https://example.org/bm25", "BM25 ranks documents by terms."),
    Document(
        "SQLite FTS5", "https://example.org/fts5", "FTS5 offers <b>bm25</b> ranking &amp; more."
    ),
    Document("Unrelated", "https://example.org/other", "Nothing to see here."),
]

Open = Callable[..., OpenSearchBackend]

# opensearch-py asks aiohttp for enable_cleanup_closed, which aiohttp deprecates
# on Pythons that no longer need it (3.12.8+): the client's doing, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:enable_cleanup_closed ignored:DeprecationWarning")


@pytest.fixture
def node(fake_upstream: Callable[..., FakeUpstream]) -> Iterator[tuple[FakeOpenSearch, str]]:
    fake = FakeOpenSearch()
    yield fake, str(fake_upstream(fake.app()).url)
    fake.release()


@pytest.fixture
async def connect() -> AsyncIterator[Open]:
    """Backends from config, closed at teardown."""
    opened: list[OpenSearchBackend] = []

    def make(url: str, **kwargs: object) -> OpenSearchBackend:
        config = OpenSearchBackendConfig.model_validate(
            {"type": "opensearch", "url": url, "username": "search", **kwargs}
        )
        backend = OpenSearchBackend.from_config(config)
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        await backend.close()


def auth_of(password: str) -> str:
    return "Basic " + base64.b64encode(f"search:{password}".encode()).decode()


def messages(exc: BaseException) -> str:
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        parts += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


async def test_index_then_search(node: tuple[FakeOpenSearch, str], connect: Open) -> None:
    _, url = node
    backend = connect(url, password=Secret(PASSWORD))

    assert await backend.index_documents(DOCS, refresh=True) == 3
    results = await backend.search("bm25 ranking", 5, safe_search=True)

    assert [r.url for r in results] == ["https://example.org/bm25", "https://example.org/fts5"]
    assert [r.rank for r in results] == [1, 2]
    assert results[0].title == "BM25 explained"
    assert results[1].snippet == "FTS5 offers bm25 ranking & more."  # plain text
    assert {r.source for r in results} == {"opensearch"}


async def test_the_search_request(node: tuple[FakeOpenSearch, str], connect: Open) -> None:
    fake, url = node
    backend = connect(url, password=Secret(PASSWORD), index="docs")

    await backend.search("bm25", 4, safe_search=False)

    seen = fake.requests[-1]
    assert seen.path == "/docs/_search"
    assert seen.headers["authorization"] == auth_of(PASSWORD)
    body = json.loads(seen.body)
    assert body["query"] == {"multi_match": {"query": "bm25", "fields": ["title^2", "body"]}}
    assert body["size"] == 4
    assert body["highlight"]["pre_tags"] == [""]  # fragments come back as plain text
    assert "body" in body["highlight"]["fields"]


async def test_bulk_indexing_uses_the_url_as_id(
    node: tuple[FakeOpenSearch, str], connect: Open
) -> None:
    fake, url = node
    backend = connect(url, password=Secret(PASSWORD))

    await backend.index_documents(DOCS[:1])
    await backend.index_documents([Document("BM25, again", DOCS[0].url, "new body")])

    assert fake.docs == {
        f"interlock-search/{DOCS[0].url}": {
            "title": "BM25, again",
            "url": DOCS[0].url,
            "body": "new body",
        }
    }
    assert [seen.path for seen in fake.requests] == ["/_bulk", "/_bulk"]


async def test_refused_documents_are_an_error(
    node: tuple[FakeOpenSearch, str], connect: Open
) -> None:
    fake, url = node
    fake.mode = "bulk_reject"
    backend = connect(url, password=Secret(PASSWORD))

    with pytest.raises(BackendError) as caught:
        await backend.index_documents(DOCS)

    assert "3 document(s) refused" in str(caught.value)
    assert not caught.value.retryable


@pytest.mark.parametrize(
    ("mode", "retryable"),
    [
        ("500", True),
        ("429", True),
        ("401", False),
        ("404", False),
        ("garbage", False),
        ("wrong_shape", False),
    ],
)
async def test_errors_are_classified(
    mode: str, retryable: bool, node: tuple[FakeOpenSearch, str], connect: Open
) -> None:
    fake, url = node
    fake.mode = mode
    backend = connect(url, password=Secret(PASSWORD))

    with pytest.raises(BackendError) as caught:
        await backend.search("bm25", 5, safe_search=False)

    assert caught.value.backend == "opensearch"
    assert caught.value.retryable is retryable
    assert PASSWORD not in messages(caught.value)
    assert auth_of(PASSWORD) not in messages(caught.value)
    assert len(fake.requests) == 1  # the client's own retries are off


async def test_a_slow_node_times_out_within_timeout_s(
    node: tuple[FakeOpenSearch, str], connect: Open
) -> None:
    fake, url = node
    fake.mode = "slow"
    backend = connect(url, password=Secret(PASSWORD), timeout_s=0.2)

    started = time.monotonic()
    with pytest.raises(BackendError) as caught:
        await backend.search("bm25", 5, safe_search=False)

    assert time.monotonic() - started < 1.5
    assert caught.value.retryable and "timed out" in str(caught.value)


async def test_an_unreachable_node_is_retryable(connect: Open) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = connect(f"http://127.0.0.1:{port}", password=Secret(PASSWORD), timeout_s=1.0)

    with pytest.raises(BackendError) as caught:
        await backend.search("bm25", 5, safe_search=False)

    assert caught.value.retryable
    assert PASSWORD not in messages(caught.value)


async def test_build_backends_makes_an_opensearch_backend(
    node: tuple[FakeOpenSearch, str],
) -> None:
    _, url = node
    config = SearchConfig.model_validate(
        {"backends": [{"type": "opensearch", "url": url, "name": "big", "index": "docs"}]}
    )
    (backend,) = build_backends(config, environ={})
    try:
        assert isinstance(backend, OpenSearchBackend)
        assert (backend.name, backend.index) == ("big", "docs")
        assert await backend.search("anything", 3, safe_search=False) == []
    finally:
        await backend.close()
