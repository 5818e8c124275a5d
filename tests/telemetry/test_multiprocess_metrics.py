"""With PROMETHEUS_MULTIPROC_DIR set, every worker process's /metrics shows
the totals of all of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TEST_KEY, simulator_config
from tests.support.servers import GatewayProcess

AUTH = {"authorization": f"Bearer {TEST_KEY}"}
CHAT = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}


def _requests_total(url: str) -> float:
    text = httpx.get(url + "/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "interlock_requests_total"
        and sample.labels.get("route") == "/v1/chat/completions"
    )


def test_two_workers_share_their_counts(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(shared)}
    first = start_gateway(simulator_config(), env=env)
    second = start_gateway(simulator_config(), env=env)
    for url, count in ((first.base_url, 3), (second.base_url, 2)):
        for _ in range(count):
            assert httpx.post(url + "/v1/chat/completions", json=CHAT, headers=AUTH).is_success
    assert _requests_total(first.base_url) == 5
    assert _requests_total(second.base_url) == 5
