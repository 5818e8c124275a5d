"""The gateway's own web searches (ADR 0029) in the telemetry: each search is
a span under the request's, beside the model's rounds, with its outcome."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from interlock.app import create_app
from interlock.config import parse_config
from tests.conftest import TEST_KEY
from tests.search.fakes import Doc, FakeSearchService
from tests.support.fake_azure import azure_app
from tests.support.servers import FakeUpstream, InProcessGateway

SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search"}


def _spans(exporter: InMemorySpanExporter, count: int) -> list[ReadableSpan]:
    deadline = time.monotonic() + 10  # the request span ends after its last byte
    while len(exporter.get_finished_spans()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(exporter.get_finished_spans())


def test_each_search_is_a_span_beside_the_models_rounds(
    fake_upstream: Callable[[web.Application], FakeUpstream],
) -> None:
    searxng = FakeSearchService(kind="searxng", docs=[Doc("A", "https://a.example/", "a")])
    search_url = fake_upstream(searxng.app()).url
    azure_url = fake_upstream(azure_app([])).url
    deployment = {"provider": "azure", "model": "gpt-4o", "api_key": "k", "base_url": azure_url}
    raw: dict[str, Any] = {
        "models": [{"name": "gpt", "deployments": [{"id": "gpt-1", **deployment}]}],
        "keys": [{"name": "alice", "key": TEST_KEY}],
        "search": {"backends": [{"type": "searxng", "url": search_url, "retries": 0}]},
        "batch": {"enabled": False},
        "registry": {"enabled": False},
    }
    exporter = InMemorySpanExporter()
    gateway = InProcessGateway(create_app(parse_config(raw, env={}), span_exporter=exporter))
    try:
        body = {
            "model": "gpt",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "Search for a"}],
            "tools": [SEARCH_TOOL],
        }
        headers = {"x-api-key": TEST_KEY, "anthropic-version": "2023-06-01"}
        answer = httpx.post(
            gateway.base_url + "/v1/messages", json=body, headers=headers, timeout=30
        )
        assert answer.status_code == 200, answer.text
        spans = _spans(exporter, 4)
    finally:
        gateway.close()

    [root] = [s for s in spans if s.kind.name == "SERVER"]
    children = [s for s in spans if s.parent and s.parent.span_id == root.context.span_id]
    assert sorted(s.name for s in children) == ["upstream gpt-1", "upstream gpt-1", "web_search"]
    [search] = [s for s in children if s.name == "web_search"]
    assert search.attributes is not None
    assert search.attributes["interlock.web_search.outcome"] == "ok"
    assert search.status.status_code.name != "ERROR"
