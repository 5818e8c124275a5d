"""The guide's configuration examples load: each YAML block of the guide
that configures models is read by the config loader, so an example cannot
name a setting the gateway refuses (secrets given as placeholders)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from interlock.config import parse_config

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide"
_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.DOTALL | re.MULTILINE)
_SECRET = re.compile(r"os\.environ/([A-Z0-9_]+)")


def _examples() -> list[tuple[str, str]]:
    found = []
    for page in sorted(GUIDE.glob("*.md")):
        for index, block in enumerate(_BLOCK.findall(page.read_text())):
            if block.startswith("models:"):
                found.append((f"{page.name}#{index}", block))
    return found


EXAMPLES = _examples()


def test_the_guide_has_model_examples() -> None:
    assert any(name.startswith("providers.md") for name, _ in EXAMPLES)


@pytest.mark.parametrize(("where", "block"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_a_model_example_loads(where: str, block: str) -> None:
    raw = yaml.safe_load(block)
    raw.setdefault("keys", [{"name": "k", "key": "x"}])
    env = {name: "placeholder" for name in _SECRET.findall(block)}
    assert parse_config(raw, where, env=env).models
