"""Headless Chromium for the browser tests (the search page, ``/docs``, the
console), driven by Selenium with the Debian packages' binaries.

``make tools`` installs chromium and chromium-driver; without them a browser
test skips, except on CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

__all__ = ["CHROMIUM_ARGS", "TIMEOUT_S", "browser_paths", "open_chromium"]

# Generous: CI runs these on two busy cores.
TIMEOUT_S = 20
# The machine has no network: nothing in Chromium may try to reach one.
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1500",
)


def browser_paths() -> tuple[str, str]:
    """Chromium and ChromeDriver, or a skip (a failure on CI)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        reason = "chromium or chromedriver not found; `make tools` installs them"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{reason}; on CI the browser tests must run")
        pytest.skip(reason)
    return chromium, driver


def open_chromium(profile: Path, console_log: bool = False) -> WebDriver:
    """A new headless Chromium with its own profile directory; ``console_log``:
    keep the page's console messages for ``get_log("browser")``."""
    chromium, driver_path = browser_paths()
    options = Options()
    options.binary_location = chromium
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={profile}")
    if console_log:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths given: Selenium Manager (which would go online) is never asked.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(TIMEOUT_S)
    return driver
