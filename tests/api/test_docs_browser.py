"""``/docs`` in headless Chromium: Swagger UI, served by the gateway under
its content security policy, renders every operation of ``/openapi.json``
with nothing refused and nothing fetched from elsewhere.

Chromium and its driver come from ``make tools``; without them this skips,
except on CI, where it fails (as the search page's browser tests do).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from interlock.api.openapi import table_routes
from tests.conftest import simulator_config
from tests.support.browser import TIMEOUT_S, open_chromium
from tests.support.servers import GatewayProcess


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    driver = open_chromium(tmp_path / "chromium-profile", console_log=True)
    yield driver
    driver.quit()


def test_swagger_ui_renders_every_operation(
    browser: WebDriver, start_gateway: Callable[..., GatewayProcess]
) -> None:
    gateway = start_gateway(simulator_config())
    browser.get(gateway.base_url + "/docs")
    operations = len(table_routes())
    WebDriverWait(browser, TIMEOUT_S, poll_frequency=0.05).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, ".opblock")) == operations,
        "Swagger UI did not render every operation",
    )
    assert browser.find_element(By.CSS_SELECTOR, ".info .title").text.startswith("Interlock")
    # Opened, an operation shows its request body's example, from the schema.
    browser.find_element(By.ID, "operations-inference-post_v1_completions").click()
    WebDriverWait(browser, TIMEOUT_S, poll_frequency=0.05).until(
        lambda b: '"prompt"' in b.find_element(By.CSS_SELECTOR, ".opblock.is-open").text,
        "the request body's example did not show",
    )
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert resources and all(url.startswith(gateway.base_url + "/") for url in resources)
    # A script or style the policy refused, or a failed fetch, is logged as an error.
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
