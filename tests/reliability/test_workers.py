"""``interlock serve --workers N``: one port, N processes, behaving as one.

Real ``interlock serve --workers 2`` processes over the real Redis: the
metrics any worker serves sum every worker's, the access log stays one JSON
line per request, a killed worker is replaced while the other serves, and
SIGTERM drains a stream in flight before the gateway exits 0. The embedded
default (memory state) refuses several workers and says to use Redis.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.support.redis_scratch import scratch_prefix
from tests.support.servers import GatewayProcess
from tests.support.waiting import wait_for

REDIS_URL = "redis://127.0.0.1:6379/0"
KEY = "sk-workers-test-1"
CHAT = "/v1/chat/completions"


def _config(tmp_path: Path, prefix: str) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": "fast",
                "deployments": [
                    {
                        "id": "sim-fast",
                        "provider": "simulator",
                        "params": {"ttft_ms": 1, "tokens_per_s": 5000, "max_tokens": 8},
                    }
                ],
            },
            {
                # A stream of about 2 s: long enough to be cut by a careless drain.
                "name": "slow",
                "deployments": [
                    {
                        "id": "sim-slow",
                        "provider": "simulator",
                        "params": {"ttft_ms": 50, "tokens_per_s": 20, "max_tokens": 40},
                    }
                ],
            },
        ],
        "keys": [{"name": "dev", "key": KEY}],
        "state": {"backend": "redis", "url": REDIS_URL, "prefix": prefix},
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"},
        "server": {"drain_timeout_s": 30},
        "cache": {"enabled": True},
        "batch": {"enabled": False},
        "registry": {"enabled": False},
    }


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    with scratch_prefix(REDIS_URL, "workers") as prefix:
        metrics_dir = tmp_path / "metrics"
        process = GatewayProcess(
            _config(tmp_path, prefix),
            tmp_path,
            env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
            extra_args=["--workers", "2"],
        )
        try:
            yield process
        finally:
            process.close()


def _chat(client: httpx.Client, text: str, model: str = "fast") -> httpx.Response:
    return client.post(
        CHAT,
        json={"model": model, "messages": [{"role": "user", "content": text}]},
        headers={"authorization": f"Bearer {KEY}"},
    )


def _worker_pids(gateway: GatewayProcess) -> list[int]:
    """The supervisor's children now (Linux's /proc)."""
    pid = gateway.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children if _is_worker(int(child))]


def _is_worker(pid: int) -> bool:
    try:
        return b"multiprocessing.spawn" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _chat_requests_by_pid(metrics_dir: Path) -> dict[int, float]:
    """Chat requests each worker counted, from its own metric file."""
    counts = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        total = 0.0
        for family in MultiProcessCollector.merge([str(path)]):  # type: ignore[no-untyped-call]
            for sample in family.samples:
                if sample.name == "interlock_requests_total" and sample.labels["route"] == CHAT:
                    total += sample.value
        counts[pid] = total
    return counts


def _scraped_chat_requests(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "interlock_requests_total" and sample.labels["route"] == CHAT
    )


def _send_concurrently(base_url: str, count: int, tag: str) -> list[int]:
    def one(i: int) -> int:
        # A connection per request: the kernel hands each to whichever worker accepts.
        with httpx.Client(base_url=base_url, timeout=30) as client:
            return _chat(client, f"{tag} {i}").status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def test_one_scrape_sums_every_workers_metrics(gateway: GatewayProcess, tmp_path: Path) -> None:
    wait_for(
        lambda: any(line.startswith("Workers: 2 ") for line in gateway.stdout_lines),
        timeout_s=10,
        what="the workers line",
    )
    metrics_dir = tmp_path / "metrics"
    sent = 0

    def both_served() -> bool:
        nonlocal sent
        statuses = _send_concurrently(gateway.base_url, 40, f"round {sent}")
        assert statuses == [200] * 40
        sent += 40
        served = _chat_requests_by_pid(metrics_dir)
        return len([n for n in served.values() if n > 0]) == 2

    # Which worker accepts a connection is the kernel's choice: send until both have served.
    wait_for(both_served, timeout_s=120, what="both workers to serve requests")
    per_worker = _chat_requests_by_pid(metrics_dir)
    assert sum(per_worker.values()) == sent
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        for _ in range(4):  # whichever worker answers the scrape, the sum is the same
            assert _scraped_chat_requests(client) == sent
    _assert_one_json_line_per_request(gateway, sent)


def test_cache_figures_reach_a_scrape_of_either_worker(gateway: GatewayProcess) -> None:
    body = {"model": "fast", "temperature": 0, "messages": [{"role": "user", "content": "same"}]}
    headers = {"authorization": f"Bearer {KEY}"}
    for expected in ("miss", "hit"):
        with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
            response = client.post(CHAT, json=body, headers=headers)
            assert response.headers["x-interlock-cache"] == expected
    saved = response.json()["usage"]["completion_tokens"]

    def scraped_saved_tokens() -> float:
        with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
            text = client.get("/metrics").text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "interlock_cache_saved_tokens_total"
            and sample.labels["type"] == "output"
        )

    # Each worker copies its cache's figures into the shared files at least once a second.
    assert wait_for(lambda: scraped_saved_tokens() == saved, timeout_s=30, what="saved tokens")


def _assert_one_json_line_per_request(gateway: GatewayProcess, sent: int) -> None:
    lines: list[dict[str, Any]] = []

    def logged() -> list[dict[str, Any]]:
        lines.extend(json.loads(line) for line in gateway.drain_stderr())
        access = [line for line in lines if line.get("logger") == "interlock.access"]
        chats = [line for line in access if line.get("path") == CHAT]
        return chats if len(chats) >= sent else []

    # Every stderr line parses as JSON (json.loads above): no line was torn
    # by the other worker's writes.
    chats = wait_for(logged, timeout_s=30, what=f"{sent} access lines")
    assert len(chats) == sent
    assert len({line["request_id"] for line in chats}) == sent


def test_a_killed_worker_is_replaced_while_the_other_serves(gateway: GatewayProcess) -> None:
    first = _worker_pids(gateway)
    assert len(first) == 2
    os.kill(first[0], signal.SIGKILL)
    # The survivor serves meanwhile: connections wait in the shared backlog.
    assert _send_concurrently(gateway.base_url, 16, "during") == [200] * 16
    replaced = wait_for(
        lambda: (pids := _worker_pids(gateway)) and len(pids) == 2 and first[0] not in pids,
        timeout_s=60,
        what="a replacement worker",
    )
    assert replaced
    assert _send_concurrently(gateway.base_url, 16, "after") == [200] * 16
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        # The dead worker's counts stay in the sums: counters never go down.
        assert _scraped_chat_requests(client) == 32
    seen: list[str] = []
    wait_for(
        lambda: seen.extend(gateway.drain_stderr()) or any("worker exited" in s for s in seen),
        timeout_s=10,
        what="the supervisor's log line",
    )


def test_sigterm_drains_a_stream_on_a_worker_then_exits_0(gateway: GatewayProcess) -> None:
    chunks: list[str] = []
    with httpx.Client(base_url=gateway.base_url, timeout=60) as client:
        with client.stream(
            "POST",
            CHAT,
            json={"model": "slow", "stream": True, "messages": [{"role": "user", "content": "x"}]},
            headers={"authorization": f"Bearer {KEY}"},
        ) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            chunks.append(next(lines))  # the stream is under way on a worker
            gateway.proc.send_signal(signal.SIGTERM)
            # New connections are refused at once (a load balancer moves
            # on), not queued where no worker will accept them.
            wait_for(lambda: _refused(gateway.base_url), timeout_s=20, what="refused")
            chunks.extend(lines)
    assert [c for c in chunks if c][-1] == "data: [DONE]"
    assert gateway.proc.wait(60) == 0  # 0: every worker drained and exited 0


def _refused(base_url: str) -> bool:
    try:
        httpx.get(base_url + "/health/live", timeout=5)
    except httpx.ConnectError:
        return True
    return False


def test_the_embedded_default_refuses_workers_and_names_redis(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "interlock", "serve", "--port", "0", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "state.backend is 'memory'" in result.stderr
    assert "state.backend: redis" in result.stderr
    assert "Interlock listening" not in result.stdout


def test_check_config_refuses_server_workers_on_memory_state(tmp_path: Path) -> None:
    config = tmp_path / "interlock.yaml"
    config.write_text(
        "models: [{name: m, deployments: [{id: d, provider: simulator}]}]\n"
        "keys: [{name: k, key: sk-1}]\n"
        "server: {workers: 2}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "interlock", "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "server.workers" in result.stderr and "state.backend: redis" in result.stderr
