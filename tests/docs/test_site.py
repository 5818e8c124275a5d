"""The documentation site (mkdocs.yml, docs/): it builds with ``--strict``
(a broken link or anchor fails), its generated reference names every config
field and every route, and the README stays a front door whose links work."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel, Field

from interlock.api.openapi import table_routes
from interlock.config import GatewayConfig

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
pytestmark = pytest.mark.timeout(120)


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "docs_reference_hook", DOCS / "hooks/reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    # As MkDocs loads a hook: its directory on sys.path, for its siblings.
    sys.path.insert(0, str(DOCS / "hooks"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(DOCS / "hooks"))
    return module


reference = _hook()


def _mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        env=env,
        timeout=100,
        check=False,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = _mkdocs_build(REPO / "mkdocs.yml", out)
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    return out


# -- What every model and route is, found apart from the hook ---------------


def _models(annotation: Any) -> Iterator[tuple[str, type[BaseModel]]]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield "", annotation
    elif origin is dict:
        for suffix, model in _models(args[1]):
            yield ".<name>" + suffix, model
    elif origin in (list, tuple, set, frozenset):
        for arg in args:
            for suffix, model in _models(arg):
                yield "[]" + suffix, model
    else:
        for arg in args:
            yield from _models(arg)


def expected_paths(
    model: type[BaseModel] = GatewayConfig, prefix: str = "", seen: tuple[type, ...] = ()
) -> Iterator[tuple[type[BaseModel], str, str]]:
    """(model, field name, YAML path) of every field of every nested model."""
    for name, field in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        yield model, name, path
        for suffix, nested in _models(field.annotation):
            if nested not in seen:
                yield from expected_paths(nested, path + suffix, (*seen, model))


def test_the_site_builds_strict_and_offline(site: Path) -> None:
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    for page in (DOCS).rglob("*.md"):
        rel = page.relative_to(DOCS).with_suffix(".html").as_posix()
        if "hooks" not in rel:
            assert rel in pages, f"{rel} is not in the site"
    for generated in ("reference/configuration.html", "reference/api.html", "cli.html"):
        assert generated in pages
    for page in site.rglob("*.html"):  # no CDN, no web fonts: it works offline
        html = page.read_text(encoding="utf-8")
        assert "fonts.googleapis.com" not in html and "fonts.gstatic.com" not in html, page
        for src in re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', html):
            raise AssertionError(f"{page.name} loads {src}")


def test_every_config_field_is_in_the_reference(site: Path) -> None:
    page = reference.configuration_page()
    html = (site / "reference/configuration.html").read_text(encoding="utf-8")
    paths = list(expected_paths())
    assert len(paths) > 200  # the walk reached the nested sections
    for model, name, path in paths:
        assert f"**`{path}`**" in page, f"{model.__name__}.{name} ({path}) is missing"
        assert f"<code>{path.replace('<', '&lt;').replace('>', '&gt;')}</code>" in html, path
        assert model.__name__ in page


def test_the_reference_says_what_the_code_says() -> None:
    sections = {(s.path, s.model.__name__): s for s in reference.config_sections()}
    timeouts = sections["models[].deployments[].timeouts", "TimeoutConfig"]
    fields = {f.name: f for f in timeouts.fields}
    # The comment above the field in src/interlock/config/deployments.py.
    read_s = fields["read_s"]
    assert read_s.description == "Socket-level: time allowed for any single read from the upstream."
    assert (read_s.type, read_s.default, read_s.constraints) == ("float", "120.0", "> 0")
    assert timeouts.doc == "Per-deployment upstream timeouts, in seconds."
    top = {f.name: f for f in sections["", "GatewayConfig"].fields}
    assert top["models"].default == "required" and "at least 1" in top["models"].constraints
    assert top["guardrails"].description.startswith("Checked by interlock.guardrails")


class _Held(BaseModel):
    """The held section's docstring."""


class _Commented(BaseModel):
    # Above first.
    first: int = 0
    second: int = 0
    third: int = 0  # On third's line.
    # Above fourth,
    # on two lines.
    fourth: int = Field(
        default=0,  # and on its own lines.
    )
    held: _Held = Field(default_factory=_Held)
    # Above held_too: beats the docstring.
    held_too: _Held = Field(default_factory=_Held)


def test_a_field_has_only_its_own_comment() -> None:
    # The # lines directly above a field, then comments on its own lines;
    # never the comment of the field before it; else the held model's docstring.
    sections = reference.config_sections(_Commented)
    described = {f.name: f.description for f in sections[0].fields}
    assert described == {
        "first": "Above first.",
        "second": "",
        "third": "On third's line.",
        "fourth": "Above fourth, on two lines. and on its own lines.",
        "held": "The held section's docstring.",
        "held_too": "Above held_too: beats the docstring.",
    }


def test_every_config_field_says_what_it_is() -> None:
    # A field's description: Field(description=...), its own comment in
    # src/interlock/config/, or the docstring of the section model it holds.
    sections = reference.config_sections()
    fields = [f for s in sections for f in s.fields]
    assert len(fields) > 200  # the walk reached the nested sections
    undescribed = sorted({f.path for f in fields if not f.description.strip()})
    assert not undescribed, "config fields without a description:\n" + "\n".join(undescribed)
    # A comment about a group of fields describes none of them alone.
    for section in sections:
        said: dict[str, str] = {}
        for field in section.fields:
            earlier = said.setdefault(field.description, field.path)
            assert earlier == field.path, f"{field.path} says what {earlier} says"


def test_every_route_is_in_the_api_reference(site: Path) -> None:
    document = json.loads((site / "openapi.json").read_text(encoding="utf-8"))
    assert document == reference.openapi_document()
    html = (site / "reference/api.html").read_text(encoding="utf-8")
    page = reference.api_page(document)
    routes = table_routes()
    assert len(routes) > 40
    for path, method in routes:
        operation = document["paths"][path][method.lower()]
        assert f"<code>{method} {path}</code>" in html, (method, path)
        assert f"### `{method} {path}`\n\n{operation['summary']}\n" in page, (method, path)
        body = operation.get("requestBody")
        if body:
            name = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
            assert f"schema <code>{name}</code>" in html, (method, path, name)


def test_links_outside_docs_reach_the_sites_copies(site: Path) -> None:
    html = (site / "benchmarks.html").read_text(encoding="utf-8")
    assert 'href="repo/bench/results/latest.html"' in html
    assert (site / "repo/bench/results/latest.html").is_file()
    assert (site / "repo/bench/results/latest.png").is_file()  # linked from latest.md
    # The sources keep links relative to the repository, so they work on GitHub.
    assert "](../bench/results/latest.md)" in (DOCS / "benchmarks.md").read_text()
    markdown = "[a](../../deploy/README.md#x) [b](../providers.md) `[c](../../src/x)`"
    rewritten = reference.rewrite_links(markdown, "guide/page.md")
    assert rewritten.startswith("[a](../repo/deploy/README.md#x) [b](../providers.md)")


def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    for outside in ("bench", "deploy", "src"):
        (tmp_path / outside).symlink_to(REPO / outside)
    page = tmp_path / "docs/guide/cache.md"
    page.write_text(
        page.read_text()
        + "\n[gone](no-such-page.md) [gone too](../../bench/nothing.md)"
        + " [no anchor](routing.md#no-such-section)\n"
    )
    done = _mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    for broken in ("no-such-page.md", "bench/nothing.md", "no-such-section"):
        assert broken in done.stderr, broken


def test_every_decision_is_in_the_index() -> None:
    index = (DOCS / "decisions/index.md").read_text(encoding="utf-8")
    for record in sorted((DOCS / "decisions").glob("0*.md")):
        assert f"]({record.name})" in index, record.name


# -- The README: a front door ------------------------------------------------

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_the_readme_is_a_front_door() -> None:
    assert len(README.splitlines()) <= 250
    assert "make run    # installs into .venv and starts the gateway" in README
    assert "make test   # installs dev tools, runs ruff, mypy and the whole pytest suite" in README
    assert "make docs" in README
    # One example per dialect: OpenAI chat (curl and the SDK), Anthropic Messages, Responses.
    for example in (
        "curl http://127.0.0.1:8080/v1/chat/completions",
        "client.chat.completions.create(",
        "claude.messages.create(",
        "client.responses.create(",
    ):
        assert example in README, example


def test_the_readmes_links_work_on_github() -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", README)
    local = [link for link in links if not re.match(r"^[a-z]+:", link)]
    assert len(local) > 20
    for link in local:
        path = link.partition("#")[0]
        assert path, f"{link}: the README has no sections to link to; link into docs/"
        assert (REPO / path).exists(), link
