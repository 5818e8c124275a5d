"""The console end to end in headless Chromium, against a real ``interlock
serve``: log in with the keyboard alone, create a key and use it with the
``openai`` SDK, see its request in usage and spend, revoke it and see the
next request refused; every page renders with no console error (nothing
refused by the content security policy, nothing fetched from elsewhere) and
the overview's figures and charts update live.

Screenshots of each page are saved for review: in ``$INTERLOCK_SCREENSHOTS``
when set (``make screenshots`` writes the README's), else in the test's
temporary directory. Chromium and its driver come from ``make tools``;
without them this skips, except on CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import TEST_KEY, simulator_config
from tests.support.browser import TIMEOUT_S, open_chromium
from tests.support.servers import GatewayProcess

ADMIN_KEY = "sk-admin-console-e2e"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
KEY_NAME = "mobile-app"
PRICE = {"input_per_million": 3.0, "output_per_million": 15.0}


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    driver = open_chromium(tmp_path / "chromium-profile", console_log=True)
    yield driver
    driver.quit()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("INTERLOCK_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def until(browser: WebDriver, condition: Callable[[WebDriver], Any], message: str) -> Any:
    return WebDriverWait(browser, TIMEOUT_S, poll_frequency=0.05).until(condition, message)


def console_errors(browser: WebDriver) -> list[str]:
    """Errors the page logged: script errors, CSP refusals, failed loads."""
    return [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and "favicon" not in entry["message"]
    ]


def keyboard(browser: WebDriver, *keys: str) -> None:
    """Keys to whatever has the focus, as a person without a mouse types them."""
    active = browser.switch_to.active_element
    active.send_keys(*keys)


def test_an_operator_runs_the_console_with_the_keyboard(
    browser: WebDriver, start_gateway: Callable[..., GatewayProcess], shots: Path
) -> None:
    config: dict[str, Any] = {
        **simulator_config(),
        "server": {"admin_key": "os.environ/ADMIN_KEY"},
        "cache": {"enabled": True},
    }
    # Priced as a paid model would be, so spend and what the cache saved show.
    config["models"][0]["deployments"][0]["price"] = PRICE
    gateway = start_gateway(config, env={"ADMIN_KEY": ADMIN_KEY})
    base = gateway.base_url
    _some_history(base)
    browser.set_window_size(1280, 1000)

    # -- log in: the key field has the focus; Tab, type, Enter ------------
    browser.get(f"{base}/console")
    until(browser, lambda b: "/console/login" in b.current_url, "no redirect to the login form")
    until(browser, lambda b: b.switch_to.active_element.get_attribute("id") == "admin_key",
          "the admin key field does not have the focus")  # fmt: skip
    browser.save_screenshot(str(shots / "login.png"))
    keyboard(browser, ADMIN_KEY, Keys.TAB, "Ada", Keys.ENTER)
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, ".tiles"), "no overview")
    assert "Ada" in browser.find_element(By.CSS_SELECTOR, ".who").text

    # -- the overview updates itself and draws its chart -------------------
    until(browser, lambda b: b.find_element(By.CSS_SELECTOR, "[data-live-url]")
          .get_attribute("data-updated"), "the overview never polled")  # fmt: skip
    for n in range(6):  # three questions, each asked twice: misses, then cache hits
        _chat(base, TEST_KEY, f"question {n % 3}")
    _stream(base)
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#rate-chart svg .scatterlayer"),
          "the live chart was not drawn")  # fmt: skip
    # A few polls: the window and the chart have something to compare.
    until(browser, lambda b: int(b.find_element(By.CSS_SELECTOR, "[data-live-url]")
          .get_attribute("data-polls") or 0) >= 3, "the overview stopped polling")  # fmt: skip
    for figure in ("cache_hit_rate", "added_latency.p50_ms", "time_to_first_token.p99_ms"):
        shown = browser.find_element(By.CSS_SELECTOR, f'[data-live="{figure}"]').text
        assert shown != "—", figure
    browser.save_screenshot(str(shots / "overview.png"))

    # -- create a key, keyboard only: focus the name, type, Enter ----------
    browser.get(f"{base}/console/keys")
    browser.find_element(By.ID, "name").send_keys(KEY_NAME, Keys.ENTER)  # Enter submits
    secret = until(browser, lambda b: b.find_elements(By.ID, "new-key"), "no key shown")[0].text
    assert secret.startswith("sk-")
    # The screenshot is for people: it shows where the key appears, not the key.
    browser.execute_script(
        "document.getElementById('new-key').textContent = arguments[0]", secret[:8] + "•" * 24
    )
    browser.save_screenshot(str(shots / "keys-created.png"))

    # -- the key works with the official SDK, and shows in usage and spend ---
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=secret, max_retries=0, timeout=30)
    answer = client.chat.completions.create(
        model="sim", messages=[{"role": "user", "content": "hello from the console test"}]
    )
    assert answer.choices[0].message.content

    def usage_row() -> list[str]:
        browser.get(f"{base}/console/usage?key={KEY_NAME}")
        cells = browser.find_elements(By.CSS_SELECTOR, "#usage-keys tbody tr")
        return [c.text for c in cells if c.text.startswith(KEY_NAME)]

    row = until(browser, lambda b: usage_row(), "the key's request never reached usage")
    _name, requests, prompt, completion, spend, *_ = row[0].split()
    assert requests == "1" and spend.startswith("$")
    expected = (
        int(prompt) * PRICE["input_per_million"] + int(completion) * PRICE["output_per_million"]
    ) / 1e6
    assert float(spend.removeprefix("$")) == pytest.approx(expected, abs=1e-4)
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#chart-requests svg"),
          "the usage charts were not drawn")  # fmt: skip
    browser.get(f"{base}/console/usage")
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#chart-spend svg"), "no charts")
    browser.save_screenshot(str(shots / "usage.png"))

    # -- revoke it: the button, then the confirmation, from the keyboard ---
    browser.get(f"{base}/console/keys")
    browser.find_element(By.CSS_SELECTOR, f'button[aria-label="Revoke {KEY_NAME}"]').send_keys(
        Keys.ENTER
    )
    confirm = until(browser, lambda b: b.find_elements(By.ID, "confirm"), "no confirmation")[0]
    assert "Revoke the key" in browser.page_source
    confirm.send_keys(Keys.ENTER)
    until(browser, lambda b: "revoked" in b.find_element(By.CSS_SELECTOR, ".notice").text,
          "no notice of the revocation")  # fmt: skip
    with pytest.raises(openai.PermissionDeniedError, match="revoked"):
        client.chat.completions.create(
            model="sim", messages=[{"role": "user", "content": "after the revocation"}]
        )
    browser.save_screenshot(str(shots / "keys.png"))

    # -- the other pages, with their data ---------------------------------
    browser.get(f"{base}/console/deployments")
    assert browser.find_elements(By.CSS_SELECTOR, ".state-closed")
    browser.save_screenshot(str(shots / "deployments.png"))
    browser.get(f"{base}/console/requests")
    shown = browser.find_element(By.TAG_NAME, "main").text
    assert "404" in shown and "/console" not in shown  # its own pages are not kept
    browser.save_screenshot(str(shots / "requests.png"))
    browser.get(f"{base}/console/models")
    assert "sim-next" in browser.find_element(By.TAG_NAME, "main").text
    browser.save_screenshot(str(shots / "registry.png"))
    browser.get(f"{base}/console/batches")
    assert "batch_" in browser.find_element(By.TAG_NAME, "main").text
    browser.save_screenshot(str(shots / "batches.png"))

    # -- dark theme, kept across pages -------------------------------------
    browser.get(f"{base}/console")
    browser.find_element(By.ID, "theme").send_keys(Keys.ENTER)
    browser.get(f"{base}/console/deployments")
    # Headless Chromium prefers light: the switch chose dark, and the next page kept it.
    assert browser.execute_script("return document.documentElement.dataset.theme") == "dark"
    browser.save_screenshot(str(shots / "deployments-theme.png"))

    assert console_errors(browser) == []
    audit = httpx.get(f"{base}/admin/audit?area=keys", headers=ADMIN, timeout=10).json()["data"]
    assert {(e["action"], e["actor"]) for e in audit} >= {
        ("create", "console:Ada"),
        ("revoke", "console:Ada"),
    }


def _chat(base: str, key: str, question: str = "hi") -> None:
    """A deterministic question: asked again, a cache hit."""
    body = {"model": "sim", "temperature": 0, "messages": [{"role": "user", "content": question}]}
    headers = {"authorization": f"Bearer {key}"}
    httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=30)


def _stream(base: str) -> None:
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=TEST_KEY, max_retries=0, timeout=30)
    stream = client.chat.completions.create(
        model="sim", messages=[{"role": "user", "content": "stream"}], stream=True
    )
    assert list(stream)


def _some_history(base: str) -> None:
    """Something on each page: requests (cache hits, one stream, one failure),
    a registry version, a batch, keys with limits."""
    for _ in range(3):
        _chat(base, TEST_KEY)
    _stream(base)
    for name, rpm, budget in (("web-frontend", 600, 50.0), ("batch-jobs", None, 200.0)):
        body = {"name": name, "limits": {"rpm": rpm}, "budget_usd_day": budget}
        assert httpx.post(f"{base}/admin/keys", json=body, headers=ADMIN, timeout=10).is_success
    unknown = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {TEST_KEY}"}
    assert httpx.post(f"{base}/v1/chat/completions", json=unknown, headers=headers).is_error
    version = {"name": "sim-next", "version": "v2", "kind": "chat", "provider": "simulator"}
    registered = httpx.post(f"{base}/admin/models", json=version, headers=ADMIN, timeout=10)
    assert registered.status_code == 201, registered.text
    chat = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}
    line = {"custom_id": "q1", "method": "POST", "url": "/v1/chat/completions", "body": chat}
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=TEST_KEY, max_retries=0, timeout=30)
    upload = client.files.create(
        file=("batch.jsonl", io.BytesIO(json.dumps(line).encode() + b"\n")), purpose="batch"
    )
    client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
