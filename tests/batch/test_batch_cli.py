"""``interlock batch ...`` in this process (Ctrl-C: in a child process)
against a live gateway on loopback (embedded SQLite records store, SQL
queue, the gateway's own worker): submit and wait, results matched by
custom_id, list, cancel, and the exit statuses of refusals and of a
gateway that is not there."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from interlock.app import create_app
from interlock.cli import main
from interlock.config import parse_config
from tests.conftest import TEST_KEY, simulator_config
from tests.support.servers import InProcessGateway


def _line(n: int, model: str = "sim") -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": f"hello {n}"}]}
    return {
        "custom_id": f"request-{n}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": body,
    }


def _write(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in items))
    return path


# `interlock` with SIGINT as a terminal leaves it: a test run started in the
# background ignores SIGINT, and its children would inherit that.
_CLI_WITH_SIGINT = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from interlock.cli import main; sys.exit(main(sys.argv[1:]))"
)


class Shell:
    """``interlock batch ...`` against one gateway: (status, stdout, stderr)."""

    def __init__(self, url: str, capsys: pytest.CaptureFixture[str]):
        self.url = url
        self._capsys = capsys

    def __call__(self, *argv: str, key: str | None = TEST_KEY) -> tuple[int, str, str]:
        options = ["--url", self.url] + (["--api-key", key] if key is not None else [])
        status = main(["batch", *argv, *options])
        out, err = self._capsys.readouterr()
        return status, out, err

    def finished(self, batch_id: str) -> dict[str, Any]:
        status, out, err = self("status", batch_id, "--wait", "--poll", "0.05", "--json")
        assert status in (0, 1), err
        batch: dict[str, Any] = json.loads(out)
        return batch


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[InProcessGateway]:
    # One per test: its worker's pool connections close with it.
    raw: dict[str, Any] = {
        **simulator_config(ttft_ms=1, tokens_per_s=100_000),
        "files": {"dir": str(tmp_path / "blobs")},
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"},
        "batch": {"chunk_size": 4, "worker": {"sweep_s": 0.1}},
        "server": {"access_log": False},
    }
    slow = {"id": "slow-1", "provider": "simulator", "params": {"ttft_ms": 3000}}
    raw["models"].append({"name": "slow", "deployments": [slow]})
    gateway = InProcessGateway(create_app(parse_config(raw, env={"TEST_KEY": TEST_KEY})))
    yield gateway
    gateway.close()


@pytest.fixture
def shell(
    gateway: InProcessGateway, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Shell:
    for name in ("INTERLOCK_URL", "INTERLOCK_API_KEY", "INTERLOCK_DEV_KEY"):
        monkeypatch.delenv(name, raising=False)
    return Shell(gateway.base_url, capsys)


def test_submit_wait_then_results_by_custom_id(shell: Shell, tmp_path: Path) -> None:
    lines = [_line(n) for n in range(6)] + [_line(6, model="no-such-model")]
    source = _write(tmp_path / "in.jsonl", lines)
    status, out, err = shell(
        "submit", str(source), "--wait", "--poll", "0.05", "--metadata", "job=nightly"
    )
    assert status == 0, err
    batch_id, summary, hint = out.splitlines()
    assert batch_id.startswith("batch_")
    assert summary == f"{batch_id} completed: 6 completed, 1 failed, 7 total"
    assert hint.startswith(f"Results: interlock batch results {batch_id}")
    assert "7/7" in err and "completed" in err  # the progress bar's last state

    output, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    status, out, err = shell("results", batch_id, "--output", str(output), "--errors", str(errors))
    assert status == 0 and out == "", err
    assert "output lines: 6" in err and "error lines: 1" in err
    answers = [json.loads(x) for x in output.read_text().splitlines()]
    assert sorted(a["custom_id"] for a in answers) == [f"request-{n}" for n in range(6)]
    for answer in answers:
        n = answer["custom_id"].removeprefix("request-")
        assert answer["response"]["status_code"] == 200
        assert answer["response"]["body"]["object"] == "chat.completion", n
    [failed] = [json.loads(x) for x in errors.read_text().splitlines()]
    assert failed["custom_id"] == "request-6"
    assert failed["response"]["body"]["error"]["code"] == "model_not_found"

    # Without --output the output lines are stdout, the error lines stderr.
    status, out, err = shell("results", batch_id)
    assert status == 0
    assert out.splitlines() == output.read_text().splitlines()
    assert '"custom_id":"request-6"' in err

    status, out, _ = shell("status", batch_id)
    assert status == 0
    rows = {line.split(None, 1)[0]: line.split(None, 1)[1].strip() for line in out.splitlines()}
    assert rows["status"] == "completed" and rows["metadata"] == "job=nightly"


def test_json_output_parses(shell: Shell, tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", [_line(n) for n in range(3)])
    status, out, _ = shell("submit", str(source), "--json")
    assert status == 0
    created = json.loads(out)
    assert created["object"] == "batch" and created["endpoint"] == "/v1/chat/completions"
    done = shell.finished(created["id"])
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    status, out, _ = shell("list", "--json")
    assert status == 0 and [b["id"] for b in json.loads(out)["data"]] == [created["id"]]


def test_list_shows_the_batches(shell: Shell, tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", [_line(n) for n in range(2)])
    ids = [shell("submit", str(source))[1].strip() for _ in range(2)]
    for batch_id in ids:
        shell.finished(batch_id)
    status, out, _ = shell("list")
    assert status == 0
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "STATUS", "ENDPOINT", "DONE/FAILED/TOTAL", "CREATED"]
    assert [row.split()[:4] for row in rows] == [
        [batch_id, "completed", "/v1/chat/completions", "2/0/2"] for batch_id in reversed(ids)
    ]
    status, out, err = shell("list", "--limit", "1")
    assert status == 0 and len(out.splitlines()) == 2 and "--limit" in err


def test_cancel_on_a_finished_batch_prints_the_gateways_error(shell: Shell, tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", [_line(0)])
    batch_id = shell("submit", str(source))[1].strip()
    shell.finished(batch_id)
    status, out, err = shell("cancel", batch_id)
    assert status == 1 and out == ""
    assert err == (
        "error: The batch is completed; only a validating or in-progress batch can be "
        "cancelled. (HTTP 400)\n"
    )


def test_a_batch_that_fails_exits_1_naming_the_line(shell: Shell, tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", [_line(0), _line(1)])
    argv = ["submit", str(source), "--endpoint", "/v1/embeddings", "--wait", "--poll", "0.05"]
    status, out, _ = shell(*argv)
    assert status == 1
    assert " failed: " in out and "line 1: mismatched_url" in out


def test_a_bad_line_is_refused_at_upload_naming_it(shell: Shell, tmp_path: Path) -> None:
    bad = {**_line(1), "method": "GET"}
    source = _write(tmp_path / "in.jsonl", [_line(0), bad])
    status, out, err = shell("submit", str(source))
    assert status == 1 and out == ""
    assert err.startswith("error: Line 2: ") and "POST" in err and "(HTTP 400)" in err


def test_ctrl_c_stops_waiting_but_not_the_batch(shell: Shell, tmp_path: Path) -> None:
    # A real process and a real SIGINT, as from a terminal. The slow model
    # answers after 3 s; the signal goes as soon as the CLI says it waits.
    source = _write(tmp_path / "in.jsonl", [_line(n, model="slow") for n in range(4)])
    argv = ["batch", "submit", str(source), "--wait", "--poll", "0.05", "--url", shell.url]
    child = subprocess.Popen(
        [sys.executable, "-c", _CLI_WITH_SIGINT, *argv, "--api-key", TEST_KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stderr is not None
        seen = ""
        while "Waiting for" not in seen:
            line = child.stderr.readline()
            assert line, f"the CLI ended before waiting: {seen}"
            seen += line
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    batch_id = out.strip()
    assert child.returncode == 130, seen + err
    assert batch_id.startswith("batch_")
    assert f"interlock batch status {batch_id} --wait" in err

    status, _, err = shell("results", batch_id)
    assert status == 1 and "its results come when it finishes" in err
    status, out, _ = shell("cancel", batch_id)
    assert status == 0 and out == f"{batch_id}: cancelling\n"


def test_a_wrong_key_exits_1_with_the_gateways_message(shell: Shell) -> None:
    status, out, err = shell("list", key="sk-wrong")
    assert (status, out) == (1, "")
    assert err == "error: Incorrect API key provided. (HTTP 401)\n"


def test_no_key_exits_2(shell: Shell) -> None:
    status, _, err = shell("list", key=None)
    assert status == 2 and "no API key" in err and "INTERLOCK_API_KEY" in err


def test_a_closed_port_exits_2_naming_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    status = main(["batch", "list", "--url", url, "--api-key", TEST_KEY, "--timeout", "10"])
    _, err = capsys.readouterr()
    assert status == 2
    assert f"cannot reach the gateway at {url}: connection refused" in err
