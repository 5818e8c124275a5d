"""Batches survive their processes: real gateway and worker processes,
Redis Streams as the queue, PostgreSQL (or SQLite) as the records store.

* Two workers in two processes share one batch: both write results, and
  every custom_id is in the output exactly once.
* ``kill -9`` a worker mid-batch and start another: nothing lost, nothing
  written twice (its chunks come back when their leases lapse).
* ``kill -9`` the gateway that accepted a batch and ran it (the embedded
  default: SQLite, the queue in SQLite, the worker in the gateway), start
  it again: the batch completes, every custom_id once.
* The queue engine (a Redis of the test's own, appendonly) killed and
  restarted mid-batch: the batch completes after it returns; a batch
  accepted while it is down runs once it is back.
* ``kill -9`` the gateway right after it accepted a batch that dedicated
  workers run: another gateway serves its results, every custom_id once.
* SIGTERM a worker with no drain time: it exits promptly, its work goes
  back to the queue, and another worker finishes the batch.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
import yaml

from interlock.store import create_engine
from tests.conftest import TEST_KEY, simulator_config
from tests.support.pg_scratch import scratch_database
from tests.support.redis_scratch import scratch_prefix
from tests.support.servers import ChildProcess, GatewayProcess, WorkerProcess
from tests.support.waiting import wait_for

REDIS_URL = "redis://127.0.0.1:6379/0"
AUTH = {"authorization": f"Bearer {TEST_KEY}"}
ITEMS = 240

# A hang guard: each test starts a gateway and up to three workers, and took
# 9-15 s on a quiet 2-core machine, 33-55 s beside two CPU hogs, and past 60 s
# with another test file running beside it too.
pytestmark = pytest.mark.timeout(240)


def _on_ci_or_skip(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: it must be available)")
    pytest.skip(message)


@pytest.fixture
def pg_url() -> Iterator[str]:
    with scratch_database("interlock_batch") as url:
        yield url


def _config(tmp_path: Path, **batch: Any) -> dict[str, Any]:
    # Slow enough answers that a batch of ITEMS takes seconds: room to kill.
    return {
        **simulator_config(ttft_ms=60, tokens_per_s=5_000, max_tokens=8),
        "files": {"dir": str(tmp_path / "blobs")},
        "batch": {
            "chunk_size": 10,
            "queue": {"lease_s": 2},
            "worker": {"concurrency": 4, "sweep_s": 0.2, "stale_s": 60},
            **batch,
        },
        "server": {"access_log": False},
    }


def _write(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "interlock.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _submit(base_url: str, items: int = ITEMS) -> tuple[str, set[str]]:
    ids = [f"item-{n}" for n in range(items)]
    lines = [
        {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "sim", "messages": [{"role": "user", "content": custom_id}]},
        }
        for custom_id in ids
    ]
    data = b"\n".join(orjson.dumps(line) for line in lines)
    uploaded = httpx.post(
        base_url + "/v1/files",
        headers=AUTH,
        files={"file": ("in.jsonl", io.BytesIO(data))},
        data={"purpose": "batch"},
        timeout=30,
    )
    assert uploaded.status_code == 200, uploaded.text
    batch = httpx.post(
        base_url + "/v1/batches",
        headers=AUTH,
        json={
            "input_file_id": uploaded.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
        timeout=30,
    )
    assert batch.status_code == 200, batch.text
    return batch.json()["id"], set(ids)


def _batch(base_url: str, batch_id: str) -> dict[str, Any]:
    response = httpx.get(f"{base_url}/v1/batches/{batch_id}", headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def _progressed(base_url: str, batch_id: str, done: int) -> Callable[[], bool]:
    def check() -> bool:
        counts = _batch(base_url, batch_id)["request_counts"]
        return bool(counts["completed"] + counts["failed"] >= done)

    return check


def _finished(base_url: str, batch_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        batch = _batch(base_url, batch_id)
        return batch if batch["status"] in ("completed", "failed", "expired") else None

    found: dict[str, Any] = wait_for(check, what=f"batch {batch_id} finished")
    return found


def _custom_ids(base_url: str, batch: dict[str, Any]) -> Counter[str]:
    """Every custom_id in the output and error files, counted."""
    seen: Counter[str] = Counter()
    for field in ("output_file_id", "error_file_id"):
        if batch[field] is None:
            continue
        content = httpx.get(f"{base_url}/v1/files/{batch[field]}/content", headers=AUTH, timeout=30)
        assert content.status_code == 200
        for line in content.text.splitlines():
            seen[orjson.loads(line)["custom_id"]] += 1
    return seen


def _assert_exactly_once(base_url: str, batch: dict[str, Any], expected: set[str]) -> None:
    assert batch["status"] == "completed", batch
    seen = _custom_ids(base_url, batch)
    assert set(seen) == expected
    assert max(seen.values()) == 1, [k for k, n in seen.items() if n > 1][:5]
    assert batch["request_counts"]["completed"] == len(expected)


def _writers(store_url: str, batch_id: str) -> dict[str, int]:
    async def query() -> dict[str, int]:
        engine = create_engine(store_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    sa.text(
                        "SELECT worker, count(*) FROM batch_items WHERE batch_id = :b "
                        "GROUP BY worker"
                    ),
                    {"b": batch_id},
                )
                return {str(w): int(n) for w, n in rows.all()}
        finally:
            await engine.dispose()

    return asyncio.run(query())


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    with scratch_prefix(REDIS_URL, "batch-proc") as prefix:
        yield prefix


def _distributed(tmp_path: Path, pg_url: str, redis_prefix: str) -> dict[str, Any]:
    config = _config(tmp_path, worker={"in_process": False, "concurrency": 4, "sweep_s": 0.2})
    config["state"] = {"backend": "redis", "url": REDIS_URL, "prefix": redis_prefix}
    config["store"] = {"url": pg_url}
    return config


def test_two_worker_processes_share_one_batch_without_duplicates(
    tmp_path: Path, pg_url: str, redis_prefix: str
) -> None:
    path = _write(tmp_path, _distributed(tmp_path, pg_url, redis_prefix))
    gateway = GatewayProcess(yaml.safe_load(path.read_text()), tmp_path, env={"TEST_KEY": TEST_KEY})
    workers = [WorkerProcess(path, env={"TEST_KEY": TEST_KEY}) for _ in range(2)]
    try:
        batch_id, expected = _submit(gateway.base_url)
        batch = _finished(gateway.base_url, batch_id)
        _assert_exactly_once(gateway.base_url, batch, expected)
        writers = _writers(pg_url, batch_id)
        assert set(writers) == {w.name for w in workers}, writers
        assert sum(writers.values()) == ITEMS
    finally:
        for worker in workers:
            worker.close()
        gateway.close()


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(
    tmp_path: Path, pg_url: str, redis_prefix: str
) -> None:
    path = _write(tmp_path, _distributed(tmp_path, pg_url, redis_prefix))
    gateway = GatewayProcess(yaml.safe_load(path.read_text()), tmp_path, env={"TEST_KEY": TEST_KEY})
    env = {"TEST_KEY": TEST_KEY}
    doomed = WorkerProcess(path, env=env)
    started: list[WorkerProcess] = [doomed]
    try:
        batch_id, expected = _submit(gateway.base_url)
        wait_for(_progressed(gateway.base_url, batch_id, 30), what="first results")
        doomed.kill()
        survivor = WorkerProcess(path, env=env)
        started.append(survivor)
        batch = _finished(gateway.base_url, batch_id)
        _assert_exactly_once(gateway.base_url, batch, expected)
        writers = _writers(pg_url, batch_id)
        assert writers.get(doomed.name, 0) > 0 and writers.get(survivor.name, 0) > 0, writers
    finally:
        for worker in started:
            worker.close()
        gateway.close()


def test_the_gateway_that_accepted_and_ran_a_batch_is_killed_and_started_again(
    tmp_path: Path,
) -> None:
    # The embedded default: SQLite, the queue in it, the worker in the gateway.
    config = _config(tmp_path)
    config["store"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"}
    env = {"TEST_KEY": TEST_KEY}
    first = GatewayProcess(config, tmp_path, env=env)
    try:
        batch_id, expected = _submit(first.base_url)
        wait_for(_progressed(first.base_url, batch_id, 30), what="first results")
    finally:
        first.proc.kill()
        first.proc.wait(10)
        first.close()
    second = GatewayProcess(config, tmp_path, env=env)
    try:
        batch = _finished(second.base_url, batch_id)
        _assert_exactly_once(second.base_url, batch, expected)
    finally:
        second.close()


class OwnRedis:
    """A redis-server of the test's own (appendonly, fsync always), to kill."""

    def __init__(self, directory: Path):
        binary = shutil.which("redis-server")
        if binary is None:
            _on_ci_or_skip("redis-server is not installed")
        assert binary is not None
        self.binary, self.directory = binary, directory
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        args += ["--dir", str(self.directory)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    return conn.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_for(answers, 30, "redis-server answering")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


def test_the_queue_engine_restarted_mid_batch_then_the_batch_completes(tmp_path: Path) -> None:
    redis = OwnRedis(tmp_path)
    redis.start()
    config = _config(tmp_path, worker={"in_process": False, "concurrency": 4, "sweep_s": 0.2})
    config["batch"]["queue"] = {"backend": "redis", "url": redis.url, "lease_s": 2}
    config["store"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"}
    path = _write(tmp_path, config)
    env = {"TEST_KEY": TEST_KEY}
    gateway = GatewayProcess(config, tmp_path, env=env)
    worker = WorkerProcess(path, env=env)
    try:
        batch_id, expected = _submit(gateway.base_url)
        wait_for(_progressed(gateway.base_url, batch_id, 30), what="first results")
        redis.kill()
        time.sleep(1.0)  # the outage itself: workers see errors, nothing is lost
        redis.start()
        batch = _finished(gateway.base_url, batch_id)
        _assert_exactly_once(gateway.base_url, batch, expected)
    finally:
        worker.close()
        gateway.close()
        redis.kill()


def test_a_worker_stopped_with_sigterm_gives_back_its_work_and_exits_promptly(
    tmp_path: Path, pg_url: str, redis_prefix: str
) -> None:
    # No drain grace: what the worker holds when SIGTERM comes goes back to
    # the queue at once (released, not left to its lease), and another
    # worker finishes the batch.
    config = _distributed(tmp_path, pg_url, redis_prefix)
    config["batch"]["worker"]["drain_s"] = 0
    config["batch"]["queue"]["lease_s"] = 600  # only a release can hand the work on in time
    path = _write(tmp_path, config)
    env = {"TEST_KEY": TEST_KEY}
    gateway = GatewayProcess(config, tmp_path, env=env)
    stopping = WorkerProcess(path, env=env)
    started = [stopping]
    try:
        batch_id, expected = _submit(gateway.base_url)
        wait_for(_progressed(gateway.base_url, batch_id, 30), what="first results")
        began = time.monotonic()
        code = stopping.terminate(timeout_s=30)
        took = time.monotonic() - began
        print(f"figure: SIGTERM to exit {took:.1f} s")
        stacks = [line for line in stopping.stderr_lines.queue if '"msg":"request"' not in line]
        assert (code, took < 30) == (0, True), "\n".join(stacks[-80:])
        started.append(WorkerProcess(path, env=env))
        batch = _finished(gateway.base_url, batch_id)
        _assert_exactly_once(gateway.base_url, batch, expected)
        assert _writers(pg_url, batch_id).get(stopping.name, 0) > 0
    finally:
        for worker in started:
            worker.close()
        gateway.close()


def test_a_batch_accepted_while_the_queue_is_down_runs_once_it_is_back(tmp_path: Path) -> None:
    # The POST stores the batch and cannot enqueue it: the client still gets
    # its batch (a retry would make a second one), and the sweeper enqueues
    # it once it has waited stale_s and the queue answers again. That sweeper
    # was idle (no batch open, an hour between sweeps): the POST woke it.
    redis = OwnRedis(tmp_path)
    redis.start()
    config = _config(tmp_path, worker={"sweep_s": 0.2, "stale_s": 1, "idle_sweep_s": 3600})
    config["batch"]["queue"] = {"backend": "redis", "url": redis.url, "lease_s": 2}
    config["store"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"}
    gateway = GatewayProcess(config, tmp_path, env={"TEST_KEY": TEST_KEY})
    try:
        redis.kill()
        batch_id, expected = _submit(gateway.base_url, items=20)
        assert _batch(gateway.base_url, batch_id)["status"] == "validating"
        redis.start()
        batch = _finished(gateway.base_url, batch_id)
        _assert_exactly_once(gateway.base_url, batch, expected)
    finally:
        gateway.close()
        redis.kill()


def test_killing_the_gateway_that_accepted_a_batch_loses_nothing_when_workers_run_it(
    tmp_path: Path, pg_url: str, redis_prefix: str
) -> None:
    path = _write(tmp_path, _distributed(tmp_path, pg_url, redis_prefix))
    env = {"TEST_KEY": TEST_KEY}
    config = yaml.safe_load(path.read_text())
    accepting = GatewayProcess(config, tmp_path, env=env)
    worker = WorkerProcess(path, env=env)
    started: list[ChildProcess] = [worker]
    try:
        batch_id, expected = _submit(accepting.base_url)
        accepting.kill()
        accepting.close()
        other = GatewayProcess(config, tmp_path, env=env)
        started.append(other)
        batch = _finished(other.base_url, batch_id)
        _assert_exactly_once(other.base_url, batch, expected)
    finally:
        for process in started:
            process.close()
