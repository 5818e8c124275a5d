"""docs/providers.md names the test that shows each feature: every name it
gives must be a test that exists, so the page cannot drift from the suite."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_test_the_providers_page_names_exists() -> None:
    page = (REPO / "docs" / "providers.md").read_text()
    named = set(re.findall(r"`(?:[a-z_]+\.py::)?(test_[a-z0-9_]+)`", page))
    assert len(named) > 50
    defined = {
        match
        for path in (REPO / "tests").rglob("test_*.py")
        for match in re.findall(r"^(?:async )?def (test_[a-z0-9_]+)", path.read_text(), re.M)
    }
    assert sorted(named - defined) == []
