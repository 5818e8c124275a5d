"""The web search adapters (SearXNG, Brave, Google) against fake services on loopback.

The shared behaviour runs on every adapter; each adapter's own request
(parameters, auth header, limits) has its own tests.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from interlock.config import Secret
from interlock.config.search import (
    BraveBackendConfig,
    GoogleBackendConfig,
    SearchConfig,
    SearxngBackendConfig,
)
from interlock.search.backends.base import BackendError, SearchBackend
from interlock.search.backends.brave import BraveBackend
from interlock.search.backends.google import GoogleBackend
from interlock.search.backends.searxng import SearxngBackend
from interlock.search.backends.web import plain_text
from interlock.search.chain import build_backends
from tests.search.fakes import BRAVE_PATH, GOOGLE_PATH, Doc, FakeSearchService
from tests.support.servers import FakeUpstream

KEY = "sk-search-0123456789abcdef"
KINDS = ["searxng", "brave", "google"]
DOCS = [
    Doc(f"Result <b>{i}</b>", f"https://example.org/{i}", f"<strong>Fast</strong> &amp; safe {i}")
    for i in range(1, 16)
]

Serve = Callable[[FakeSearchService], str]


@pytest.fixture
def serve(fake_upstream: Callable[..., FakeUpstream]) -> Iterator[Serve]:
    """Serve a fake; at teardown, release its stalled requests so it can stop."""
    started: list[FakeSearchService] = []

    def start(fake: FakeSearchService) -> str:
        started.append(fake)
        return str(fake_upstream(fake.app()).url)

    yield start
    for fake in started:
        fake.release()


def build(kind: str, base: str, *, timeout_s: float = 2.0) -> SearchBackend:
    """The adapter for ``kind`` on the fake at ``base``, from its config."""
    key = Secret(KEY)
    if kind == "searxng":
        searxng = SearxngBackendConfig(type="searxng", url=base, api_key=key, timeout_s=timeout_s)
        return SearxngBackend.from_config(searxng, environ={})
    if kind == "brave":
        brave = BraveBackendConfig(
            type="brave", url=base + BRAVE_PATH, api_key=key, timeout_s=timeout_s
        )
        return BraveBackend.from_config(brave, environ={})
    google = GoogleBackendConfig(
        type="google", url=base + GOOGLE_PATH, api_key=key, cx="cx-1", timeout_s=timeout_s
    )
    return GoogleBackend.from_config(google, environ={})


@pytest.fixture
async def backends() -> AsyncIterator[Callable[..., SearchBackend]]:
    """``build``, closing whatever it built at teardown."""
    built: list[SearchBackend] = []

    def make(kind: str, base: str, **kwargs: float) -> SearchBackend:
        backend = build(kind, base, **kwargs)
        built.append(backend)
        return backend

    yield make
    for backend in built:
        await backend.close()


def messages(exc: BaseException) -> str:
    """Everything an error says: its text, repr and the chain of its causes."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        parts += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- every adapter ----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_results_are_plain_text_in_rank_order(
    kind: str, serve: Serve, backends: Callable[..., SearchBackend]
) -> None:
    backend = backends(kind, serve(FakeSearchService(kind=kind, docs=DOCS[:3])))

    results = await backend.search("fast search", 5, safe_search=False)

    assert [(r.rank, r.url) for r in results] == [
        (i, f"https://example.org/{i}") for i in (1, 2, 3)
    ]
    assert results[0].title == "Result 1"
    assert results[0].snippet == "Fast & safe 1"
    assert {r.source for r in results} == {kind}


@pytest.mark.parametrize("kind", KINDS)
async def test_at_most_num_results(
    kind: str, serve: Serve, backends: Callable[..., SearchBackend]
) -> None:
    backend = backends(kind, serve(FakeSearchService(kind=kind, docs=DOCS)))

    results = await backend.search("q", 3, safe_search=False)

    assert [r.rank for r in results] == [1, 2, 3]


@pytest.mark.parametrize("kind", KINDS)
async def test_nothing_found_is_an_empty_list(
    kind: str, serve: Serve, backends: Callable[..., SearchBackend]
) -> None:
    backend = backends(kind, serve(FakeSearchService(kind=kind, docs=[])))

    assert await backend.search("nothing", 5, safe_search=False) == []


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("mode", "retryable"),
    [("500", True), ("429", True), ("401", False), ("garbage", False), ("wrong_shape", False)],
)
async def test_errors_are_classified(
    kind: str, mode: str, retryable: bool, serve: Serve, backends: Callable[..., SearchBackend]
) -> None:
    fake = FakeSearchService(kind=kind, docs=DOCS, mode=mode)
    backend = backends(kind, serve(fake))

    with pytest.raises(BackendError) as caught:
        await backend.search("q", 5, safe_search=False)

    assert caught.value.backend == kind
    assert caught.value.retryable is retryable
    assert KEY not in messages(caught.value)
    assert KEY[4:20] not in messages(caught.value)  # nor a fragment of it


@pytest.mark.parametrize("kind", KINDS)
async def test_a_slow_service_times_out_within_timeout_s(
    kind: str, serve: Serve, backends: Callable[..., SearchBackend]
) -> None:
    backend = backends(kind, serve(FakeSearchService(kind=kind, mode="slow")), timeout_s=0.2)

    started = time.monotonic()
    with pytest.raises(BackendError) as caught:
        await backend.search("q", 5, safe_search=False)

    assert time.monotonic() - started < 1.5
    assert caught.value.retryable
    assert "timed out" in str(caught.value)
    assert KEY not in messages(caught.value)


@pytest.mark.parametrize("kind", KINDS)
async def test_an_unreachable_service_is_retryable(
    kind: str, backends: Callable[..., SearchBackend]
) -> None:
    backend = backends(kind, f"http://127.0.0.1:{closed_port()}", timeout_s=1.0)

    with pytest.raises(BackendError) as caught:
        await backend.search("q", 5, safe_search=False)

    assert caught.value.retryable
    assert KEY not in messages(caught.value)


# --- each adapter's request -------------------------------------------------


@pytest.mark.parametrize(("safe", "level"), [(True, "2"), (False, "0")])
async def test_searxng_request(
    safe: bool, level: str, serve: Serve, backends: Callable[..., SearchBackend]
) -> None:
    fake = FakeSearchService(kind="searxng", docs=DOCS)
    backend = backends("searxng", serve(fake) + "/")  # a trailing slash is fine

    results = await backend.search("what is bm25", 4, safe_search=safe)

    (seen,) = fake.requests
    assert seen.path == "/search"
    assert seen.query == {"q": "what is bm25", "format": "json", "safesearch": level, "pageno": "1"}
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert len(results) == 4  # SearXNG sends a whole page; the first four are kept


async def test_searxng_without_a_key_sends_no_authorization(serve: Serve) -> None:
    fake = FakeSearchService(kind="searxng", docs=DOCS[:1])
    config = SearxngBackendConfig(type="searxng", url=serve(fake))
    backend = SearxngBackend.from_config(config, environ={})
    try:
        await backend.search("q", 1, safe_search=False)
    finally:
        await backend.close()

    assert "authorization" not in fake.requests[0].headers


@pytest.mark.parametrize(("safe", "level"), [(True, "strict"), (False, "off")])
async def test_brave_request(
    safe: bool, level: str, serve: Serve, backends: Callable[..., SearchBackend]
) -> None:
    fake = FakeSearchService(kind="brave", docs=DOCS)
    backend = backends("brave", serve(fake))

    await backend.search("rust async", 7, safe_search=safe)

    (seen,) = fake.requests
    assert seen.path == BRAVE_PATH
    assert seen.query == {"q": "rust async", "count": "7", "safesearch": level}
    assert seen.headers["x-subscription-token"] == KEY
    assert seen.headers["accept"] == "application/json"


async def test_brave_count_is_capped_at_20(
    serve: Serve, backends: Callable[..., SearchBackend]
) -> None:
    fake = FakeSearchService(kind="brave", docs=DOCS)
    backend = backends("brave", serve(fake))

    await backend.search("q", 50, safe_search=False)

    assert fake.requests[0].query["count"] == "20"


@pytest.mark.parametrize(("safe", "level"), [(True, "active"), (False, "off")])
async def test_google_request(
    safe: bool, level: str, serve: Serve, backends: Callable[..., SearchBackend]
) -> None:
    fake = FakeSearchService(kind="google", docs=DOCS)
    backend = backends("google", serve(fake))

    await backend.search("sqlite fts5", 5, safe_search=safe)

    (seen,) = fake.requests
    assert seen.path == GOOGLE_PATH
    assert seen.query == {"key": KEY, "cx": "cx-1", "q": "sqlite fts5", "num": "5", "safe": level}


async def test_google_asks_for_at_most_10_in_one_call(
    serve: Serve, backends: Callable[..., SearchBackend]
) -> None:
    fake = FakeSearchService(kind="google", docs=DOCS)
    backend = backends("google", serve(fake))

    results = await backend.search("q", 25, safe_search=False)

    assert [seen.query["num"] for seen in fake.requests] == ["10"]
    assert len(results) == 10


# --- the pieces -------------------------------------------------------------


def test_plain_text_strips_tags_and_unescapes_entities() -> None:
    text = plain_text("<strong>BM25</strong>&nbsp;ranks &lt;b&gt; &amp;\n  <em>more</em> ")
    assert text == "BM25 ranks <b> & more"


async def test_build_backends_makes_each_web_backend_in_order() -> None:
    config = SearchConfig(
        backends=[
            SearxngBackendConfig(type="searxng", url="http://127.0.0.1:1", name="mine"),
            BraveBackendConfig(type="brave", api_key=Secret(KEY)),
            GoogleBackendConfig(type="google", api_key=Secret(KEY), cx="cx-1"),
        ]
    )
    built = build_backends(config, environ={})
    try:
        assert [type(b) for b in built] == [SearxngBackend, BraveBackend, GoogleBackend]
        assert [b.name for b in built] == ["mine", "brave", "google"]
    finally:
        for backend in built:
            await backend.close()
