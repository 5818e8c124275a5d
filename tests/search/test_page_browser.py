"""The search page (``/search``) in a real browser: headless Chromium driven
by Selenium, against a fake of the search API on loopback whose stream sends
each event only when the test releases it, and against a live gateway.

Chromium and its driver come from ``make tools`` (Debian packages chromium,
chromium-driver); without them these tests skip, except on CI (``CI=true``)
where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import importlib.util
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from interlock.search.page import page_files
from tests.conftest import TEST_KEY, simulator_config
from tests.support.browser import TIMEOUT_S, open_chromium
from tests.support.servers import FakeUpstream, GatewayProcess

# The fake stream's heartbeat while it holds an event: how it notices a closed stream.
PING_S = 0.1

XSS_TITLE = 'Markup <img src=x onerror="window.__xss=1"> in a title'
RESULTS = [
    {
        "title": "Speed of light",
        "url": "https://en.example.org/wiki/Speed_of_light",
        "snippet": "The speed of light in vacuum is exactly 299,792,458 metres per second.",
        "source": "local",
        "rank": 1,
    },
    {
        "title": XSS_TITLE,
        "url": "https://example.com/markup?a=1&b=2",
        "snippet": "Snippets may hold <script>window.__xss=2</script> as well.",
        "source": "local",
        "rank": 2,
    },
    {
        "title": "A link that is not one",
        "url": "javascript:window.__xss=3",
        "snippet": "Only http and https URLs become links.",
        "source": "web",
        "rank": 3,
    },
]
# As the server sends them: HTML-escaped, citing [1], [2] and an invented [7].
DELTAS = [
    "Light travels",
    " at 299,792,458 m/s [1].",
    " Markup such as &lt;img src=x onerror=window.__xss=4&gt;",
    " stays text [2][7].",
]
FINAL = "".join(DELTAS).replace("[7]", "")
FOLLOWUPS = ["Tell me more about Speed of light", "What is a light-year?", "Why is c a limit?"]
SCRIPT: list[tuple[str, dict[str, Any]]] = [
    ("results", {"results": RESULTS, "backend": "local", "took_ms": 3.1}),
    *(("summary", {"text": delta}) for delta in DELTAS),
    (
        "citations",
        {
            "citations": [
                {"n": n, "rank": n, "title": RESULTS[n - 1]["title"], "url": RESULTS[n - 1]["url"]}
                for n in (1, 2)
            ]
        },
    ),
    ("followups", {"followups": FOLLOWUPS}),
    ("complete", {"status": "completed", "summary": FINAL, "timings": {"total_ms": 42}}),
]


# The live gateway's index: every one matches the query.
LIVE_DOCUMENTS = [
    {
        "title": "Speed of light",
        "url": "https://en.example.org/wiki/Speed_of_light",
        "body": "Light travels through a vacuum at 299,792,458 metres per second.",
    },
    {
        "title": "Light-year",
        "url": "https://en.example.org/wiki/Light-year",
        "body": "A light-year is how far light travels in one year, about 9.46 trillion km.",
    },
    {
        "title": XSS_TITLE,
        "url": "https://example.com/markup",
        "body": "How fast light travels, with <script>window.__xss=2</script> in the body.",
    },
]


def error_body(message: str, type_: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class FakeSearchApi:
    """The page's files and the search API's contract, on loopback. Stream
    event ``n`` of ``script`` is held until ``release`` has been called ``n``
    times (across all tasks: a later task replays what was released at once)."""

    def __init__(
        self,
        script: list[tuple[str, dict[str, Any]]],
        refuse: tuple[int, dict[str, str]] | None = None,
        stream_status: int = 200,
    ):
        self.script = script
        self.refuse = refuse
        self.stream_status = stream_status
        self.gates = [asyncio.Event() for _ in script]
        self.released = 0
        self.posts: list[tuple[dict[str, Any], str | None]] = []  # (body, Authorization)
        self.stream_closed = threading.Event()
        self.app = web.Application()
        for path in page_files():
            self.app.router.add_get(path, self.page)
        self.app.router.add_post("/api/v1/search", self.start)
        self.app.router.add_get("/api/v1/search/stream/{task_id}", self.stream)
        self.app.router.add_get("/api/v1/search/status/{task_id}", self.status)
        self.upstream: FakeUpstream | None = None

    @property
    def url(self) -> str:
        assert self.upstream is not None
        return self.upstream.url

    def release(self, count: int = 1) -> None:
        assert self.upstream is not None
        for gate in self.gates[self.released : self.released + count]:
            self.upstream.loop.call_soon_threadsafe(gate.set)
        self.released += count

    def release_all(self) -> None:
        self.release(len(self.gates) - self.released)

    async def page(self, request: web.Request) -> web.Response:
        body, content_type = page_files()[request.path]
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def start(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posts.append((body, request.headers.get("Authorization")))
        if self.refuse is not None:
            status, headers = self.refuse
            kind = "rate_limit_error" if status == 429 else "authentication_error"
            error = error_body(f"Refused with {status}.", kind, str(status))
            return web.json_response(error, status=status, headers=headers)
        task = {"task_id": f"task-{len(self.posts)}", "query": body["query"], "status": "pending"}
        return web.json_response({**task, "streaming": True}, status=202)

    async def status(self, request: web.Request) -> web.Response:
        """The task as the script leaves it once every event is sent."""
        task: dict[str, Any] = {"task_id": request.match_info["task_id"], "status": "pending"}
        for _event, data in self.script:
            task.update(data)
        task.pop("text", None)  # a summary delta's; the complete event's summary stays
        return web.json_response(task)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        if self.stream_status != 200:
            error = error_body("Stream unavailable.", "api_error", "unavailable")
            return web.json_response(error, status=self.stream_status)
        after = int(request.headers.get("Last-Event-ID") or 0)
        if after >= len(self.script):
            return web.Response(status=204)  # done: EventSource stops reconnecting
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for n in range(after, len(self.script)):
                while not self.gates[n].is_set():
                    await response.write(b": ping\n\n")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.gates[n].wait(), PING_S)
                event, data = self.script[n]
                await response.write(
                    f"id: {n + 1}\nevent: {event}\ndata: {json.dumps(data)}\n\n".encode()
                )
        except ConnectionResetError:
            self.stream_closed.set()
        return response


@pytest.fixture
def search_api(
    fake_upstream: Callable[[web.Application], FakeUpstream],
) -> Iterator[Callable[..., FakeSearchApi]]:
    started: list[FakeSearchApi] = []

    def start(script: list[tuple[str, dict[str, Any]]] = SCRIPT, **kwargs: Any) -> FakeSearchApi:
        api = FakeSearchApi(script, **kwargs)
        api.upstream = fake_upstream(api.app)
        started.append(api)
        return api

    yield start
    for api in started:  # no stream handler may still wait when the server closes
        api.release_all()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    driver = open_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def until(browser: WebDriver, condition: Callable[[WebDriver], Any], message: str) -> Any:
    return WebDriverWait(browser, TIMEOUT_S, poll_frequency=0.05).until(condition, message)


def by_css(browser: WebDriver, selector: str) -> list[WebElement]:
    return browser.find_elements(By.CSS_SELECTOR, selector)


def text_of(browser: WebDriver, element_id: str) -> str:
    content: str = browser.find_element(By.ID, element_id).get_property("textContent")
    return content


def finished(browser: WebDriver) -> bool:
    summary = browser.find_element(By.ID, "summary")
    status = browser.find_element(By.ID, "status")
    return summary.get_attribute("aria-busy") == "false" and not status.is_displayed()


def failed(browser: WebDriver) -> bool:
    return browser.find_element(By.ID, "error").is_displayed()


def search_for(browser: WebDriver, url: str, query: str) -> None:
    browser.get(url + "/search")
    box = browser.find_element(By.ID, "q")
    box.send_keys(query, Keys.ENTER)


def screenshot(browser: WebDriver, path: Path, scheme: str) -> None:
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )
    browser.execute_script("document.activeElement.blur()")  # no focus ring in the picture
    try:
        browser.save_screenshot(str(path))
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    print(f"search page screenshot ({scheme}): {path}")


# -- against the fake API --------------------------------------------------------


def test_results_come_first_then_the_summary_grows_and_cites_them(
    browser: WebDriver, search_api: Callable[..., FakeSearchApi], tmp_path: Path
) -> None:
    api = search_api()
    search_for(browser, api.url, "how fast is light?")
    until(browser, lambda _: api.posts, "the page never POSTed the search")
    body, authorization = api.posts[0]
    assert body == {
        "query": "how fast is light?",
        "num_results": 5,
        "streaming": True,
        "safe_search": True,
    }
    assert authorization is None  # no key entered: no header

    api.release()  # results
    until(browser, lambda b: len(by_css(b, "#results > li")) == 3, "results not shown")
    assert text_of(browser, "summary") == ""  # not one token released yet

    api.release()
    until(browser, lambda b: text_of(b, "summary") == "Light travels", "first token not shown")
    api.release()
    until(browser, lambda b: "m/s [1]." in text_of(b, "summary"), "summary did not grow")
    assert by_css(browser, "#summary a") == []  # no citations yet: markers are text
    api.release(2)
    decoded = html.unescape("".join(DELTAS))
    until(browser, lambda b: text_of(b, "summary") == decoded, "summary incomplete")

    api.release()  # citations: [1] and [2] become links; the invented [7] stays text
    until(browser, lambda b: len(by_css(b, "#summary a.cite")) == 2, "citations not linked")
    cites = by_css(browser, "#summary a.cite")
    assert [a.get_dom_attribute("href") for a in cites] == ["#result-1", "#result-2"]
    assert [a.text for a in cites] == ["[1]", "[2]"]
    assert "[7]" in text_of(browser, "summary")
    first = browser.find_element(By.CSS_SELECTOR, "#result-1 a")
    assert first.get_dom_attribute("href") == RESULTS[0]["url"]
    assert first.text == "Speed of light"

    api.release()  # follow-ups
    until(browser, lambda b: len(by_css(b, "#followup-list button")) == 3, "no follow-ups")
    assert [c.text for c in by_css(browser, "#followup-list button")] == FOLLOWUPS

    api.release()  # complete: the final summary replaces the streamed one
    until(browser, finished, "search never finished")
    assert text_of(browser, "summary") == html.unescape(FINAL)
    assert len(by_css(browser, "#summary a.cite")) == 2

    # Markup from the server is text, and only http(s) URLs are links.
    assert by_css(browser, "main img, main script") == []
    assert browser.execute_script("return window.__xss") is None
    assert browser.find_element(By.CSS_SELECTOR, "#result-2 h3").text == XSS_TITLE
    assert "<script>window.__xss=2</script>" in text_of(browser, "result-2")
    assert "<img src=x onerror=window.__xss=4>" in text_of(browser, "summary")
    assert by_css(browser, "#result-3 a") == []
    assert by_css(browser, "#result-2 a")[0].get_dom_attribute("href") == RESULTS[1]["url"]

    screenshot(browser, tmp_path / "search-page-light.png", "light")
    screenshot(browser, tmp_path / "search-page-dark.png", "dark")

    by_css(browser, "#summary a.cite")[0].click()
    assert browser.execute_script("return location.hash") == "#result-1"

    # A follow-up chip runs its question (this stream replays, all released).
    by_css(browser, "#followup-list button")[1].click()
    until(browser, lambda _: len(api.posts) == 2, "the follow-up was not searched")
    assert api.posts[1][0]["query"] == FOLLOWUPS[1]
    assert browser.find_element(By.ID, "q").get_property("value") == FOLLOWUPS[1]
    until(browser, finished, "the follow-up search never finished")


def test_keyboard_alone_reaches_everything(
    browser: WebDriver, search_api: Callable[..., FakeSearchApi]
) -> None:
    api = search_api()
    api.release_all()
    browser.get(api.url + "/search")
    browser.find_element(By.TAG_NAME, "body").send_keys("/")  # "/" focuses the box
    assert browser.switch_to.active_element.get_attribute("id") == "q"
    browser.switch_to.active_element.send_keys("how fast is light?", Keys.ENTER)
    until(browser, lambda _: api.posts, "no search")
    until(browser, finished, "search never finished")

    reached: list[WebElement] = []
    for _ in range(40):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        reached.append(browser.switch_to.active_element)
    classes = {element.get_attribute("class") for element in reached}
    assert {"cite", "chip", "result-link"} <= classes
    chip = next(e for e in reached if e.get_attribute("class") == "chip")
    chip_outline = browser.execute_script(
        "arguments[0].focus(); return getComputedStyle(arguments[0]).outlineStyle", chip
    )
    assert chip_outline != "none"  # focus is visible


def test_an_api_key_is_sent_as_a_bearer_token_and_kept_for_the_tab(
    browser: WebDriver, search_api: Callable[..., FakeSearchApi]
) -> None:
    api = search_api()
    api.release_all()
    browser.get(api.url + "/search")
    assert not browser.find_element(By.ID, "key").is_displayed()  # behind the disclosure
    browser.find_element(By.CSS_SELECTOR, "#key-box summary").click()
    browser.find_element(By.ID, "key").send_keys("sk-from-the-page")
    browser.find_element(By.ID, "q").send_keys("light", Keys.ENTER)
    until(browser, lambda _: api.posts, "no search")
    assert api.posts[0][1] == "Bearer sk-from-the-page"
    browser.refresh()
    until(browser, lambda b: b.find_element(By.ID, "key").get_property("value"), "key lost")
    assert browser.find_element(By.ID, "key-summary").text == "API key (set)"


def test_a_rate_limited_search_says_when_to_retry(
    browser: WebDriver, search_api: Callable[..., FakeSearchApi]
) -> None:
    api = search_api(refuse=(429, {"Retry-After": "30"}))
    search_for(browser, api.url, "light")
    until(browser, failed, "no error shown")
    assert "Refused with 429. Try again in 30 s." in text_of(browser, "error-text")
    retry = browser.find_element(By.ID, "retry")
    assert not retry.is_enabled()
    assert retry.text.startswith("Retry in ")


def test_an_unauthorized_search_asks_for_a_key(
    browser: WebDriver, search_api: Callable[..., FakeSearchApi]
) -> None:
    api = search_api(refuse=(401, {}))
    search_for(browser, api.url, "light")
    until(browser, failed, "no error shown")
    assert "Enter an API key" in text_of(browser, "error-text")
    assert browser.switch_to.active_element.get_attribute("id") == "key"


def test_an_error_event_shows_its_message_and_retry_searches_again(
    browser: WebDriver, search_api: Callable[..., FakeSearchApi]
) -> None:
    failure = error_body("The summary model is unavailable.", "api_error", "upstream_error")
    api = search_api([SCRIPT[0], ("error", {**failure, "reason": "upstream"})])
    api.release_all()
    search_for(browser, api.url, "light")
    until(browser, failed, "no error shown")
    assert text_of(browser, "error-text") == "The summary model is unavailable."
    assert len(by_css(browser, "#results > li")) == 3  # what arrived stays
    browser.find_element(By.ID, "retry").click()
    until(browser, lambda _: len(api.posts) == 2, "retry did not search")
    assert api.posts[1][0]["query"] == "light"


def test_stop_closes_the_stream(
    browser: WebDriver, search_api: Callable[..., FakeSearchApi]
) -> None:
    api = search_api()
    search_for(browser, api.url, "light")
    api.release(2)
    until(browser, lambda b: text_of(b, "summary") == "Light travels", "no summary")
    browser.find_element(By.ID, "stop").click()
    until(browser, lambda _: api.stream_closed.is_set(), "the stream stayed open")
    assert text_of(browser, "status-text") == "Stopped."
    assert text_of(browser, "summary") == "Light travels"


def test_a_refused_stream_falls_back_to_the_task_status(
    browser: WebDriver, search_api: Callable[..., FakeSearchApi]
) -> None:
    api = search_api(stream_status=503)
    search_for(browser, api.url, "light")
    until(browser, lambda b: finished(b) or failed(b), "the search never finished")
    assert not failed(browser), text_of(browser, "error-text")
    assert len(by_css(browser, "#results > li")) == 3
    assert text_of(browser, "summary") == html.unescape(FINAL)
    assert len(by_css(browser, "#summary a.cite")) == 2
    assert len(by_css(browser, "#followup-list button")) == 3


# -- against a live gateway --------------------------------------------------------


@pytest.mark.skipif(
    importlib.util.find_spec("interlock.api.search") is None, reason="search API not present"
)
def test_the_page_against_a_live_gateway(
    browser: WebDriver, start_gateway: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    from interlock.search.index import IndexWriter
    from interlock.search.sources import Document

    index = tmp_path / "index.sqlite3"
    with IndexWriter(index) as writer:
        writer.add_all(Document(**doc) for doc in LIVE_DOCUMENTS)
    config = simulator_config()
    config["search"] = {"backends": [{"type": "local", "path": str(index)}], "model": "sim"}
    gateway = start_gateway(config)

    browser.get(gateway.base_url + "/search")
    browser.find_element(By.CSS_SELECTOR, "#key-box summary").click()
    browser.find_element(By.ID, "key").send_keys(TEST_KEY)
    browser.find_element(By.ID, "q").send_keys("How fast does light travel?", Keys.ENTER)
    until(browser, lambda b: finished(b) or failed(b), "the search never finished")
    assert not failed(browser), text_of(browser, "error-text")
    titles = [a.text for a in by_css(browser, "#results .result-title")]
    assert set(titles) == {doc["title"] for doc in LIVE_DOCUMENTS}
    assert text_of(browser, "summary").strip()
    for link in by_css(browser, "#summary a.cite"):
        target = link.get_dom_attribute("href")
        assert by_css(browser, f"{target} a.result-link")  # each citation has its result
    assert by_css(browser, "main img, main script") == []
    assert browser.execute_script("return window.__xss") is None
    screenshot(browser, tmp_path / "search-page-live.png", "light")
