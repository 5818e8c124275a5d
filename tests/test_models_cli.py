"""``interlock models ...`` against a real gateway's registry admin API."""

from __future__ import annotations

import importlib.util
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from interlock.app import create_app
from interlock.cli import main
from interlock.config import parse_config
from tests.conftest import TEST_KEY, simulator_config
from tests.support.servers import InProcessGateway

ADMIN_KEY = "sk-admin-test"
SIM = ("--kind", "chat", "--provider", "simulator")


class Shell:
    def __init__(self, capsys: pytest.CaptureFixture[str]):
        self._capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        status = main(["models", *argv])
        out, err = self._capsys.readouterr()
        return status, out, err

    def json(self, *argv: str) -> Any:
        status, out, err = self(*argv, "--json")
        assert status == 0, err
        return json.loads(out)


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Shell:
    """The CLI in this process, as user alice with the admin key."""
    monkeypatch.setenv("INTERLOCK_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("USER", "alice")
    monkeypatch.delenv("INTERLOCK_URL", raising=False)
    return Shell(capsys)


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcessGateway]:
    """A gateway with the admin API on, its registry in this test's own SQLite."""
    monkeypatch.setenv("INTERLOCK_DATA_DIR", str(tmp_path / "data"))
    raw: dict[str, Any] = {
        **simulator_config(),
        "server": {"admin_key": "os.environ/ADMIN_KEY", "access_log": False},
        "batch": {"enabled": False},
    }
    env = {"TEST_KEY": TEST_KEY, "ADMIN_KEY": ADMIN_KEY}
    gateway = InProcessGateway(create_app(parse_config(raw, env=env)))
    monkeypatch.setenv("INTERLOCK_URL", gateway.base_url)
    yield gateway
    gateway.close()


def _chat(gateway: InProcessGateway, model: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {TEST_KEY}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )


def test_register_live_lists_shows_and_serves(shell: Shell, gateway: InProcessGateway) -> None:
    status, out, err = shell(
        "register", "acme", "v1", *SIM, "--param", "seed=7", "--param", "error_kind=timeout",
        "--tag", "blue", "--description", "first cut", "--live",
    )  # fmt: skip
    assert (status, out) == (0, "Registered acme@v1: live\n"), err
    assert _chat(gateway, "acme").status_code == 200

    status, out, _ = shell("list")
    assert status == 0
    row = out.splitlines()[1].split()
    assert row[:8] == ["acme", "v1", "chat", "simulator", "live", "100%", "-", "alice"]
    assert row[9:] == ["s", "ago"]  # updated: seconds ago

    status, out, _ = shell("show", "acme", "v1")
    assert status == 0 and 'params          {"seed": 7, "error_kind": "timeout"}' in out
    assert "first cut" in out and '["blue"]' in out and "sticky          no" in out
    assert [v["version"] for v in shell.json("show", "acme")["data"]] == ["v1"]
    assert shell.json("list", "--name", "nobody")["data"] == []


def test_register_from_yaml_and_from_show_json(
    shell: Shell, gateway: InProcessGateway, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: acme\nversion: v1\nkind: chat\nprovider: simulator\n"
        "params: {seed: 1}\ntimeouts: {read_s: 12}\ntags: [green]\n"
    )
    status, out, _ = shell("register", "--file", str(spec), "--param", "error_kind=timeout")
    assert (status, out) == (0, "Registered acme@v1: staging\n")

    shown = tmp_path / "v1.json"
    shown.write_text(json.dumps(shell.json("show", "acme", "v1")))
    again = shell.json("register", "acme", "v2", "--file", str(shown), "--live")
    assert (again["version"], again["status"], again["updated_by"]) == ("v2", "live", "alice")
    assert again["params"] == {"seed": 1, "error_kind": "timeout"}
    assert (again["timeouts"], again["tags"]) == ({"read_s": 12.0}, ["green"])

    status, _, err = shell("register", "acme", "v3", "--kind", "chat")
    assert status == 2 and "missing: provider" in err


def test_canary_promote_rollback_and_the_audit_log(shell: Shell, gateway: InProcessGateway) -> None:
    assert shell("register", "acme", "v1", *SIM, "--live")[0] == 0
    assert shell("register", "acme", "v2", *SIM)[0] == 0

    status, out, _ = shell("canary", "acme", "v2", "--share", "10%", "--sticky")
    assert (status, out) == (0, "Canary: acme@v2: canary (10%)\n")
    rows = [line.split()[:7] for line in shell("list", "--name", "acme")[1].splitlines()[1:]]
    assert rows[1] == ["acme", "v2", "chat", "simulator", "canary", "10%", "yes"]

    status, out, _ = shell("promote", "acme", "v2", "--actor", "bob")
    assert (status, out) == (0, "Promoted acme@v2: live\n")
    assert _chat(gateway, "acme").status_code == 200

    status, out, _ = shell("rollback", "acme", "--reason", "slow answers")
    assert (status, out) == (0, "acme: version v1 now serves (live)\n")

    status, out, _ = shell("audit", "--target", "acme")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "TIME", "ACTOR", "ACTION", "TARGET", "SUMMARY"]
    assert "alice" in lines[1] and "rollback" in lines[1] and "acme@v1" in lines[1]
    assert "retired -> live; retired v2; reason: slow answers" in lines[1]
    assert "bob" in lines[2] and "canary -> live; retired v1" in lines[2]
    assert "staging -> canary; share 10%; sticky" in lines[3]
    entries = shell.json("audit", "--target", "acme@v2", "--limit", "2")["data"]
    assert [(e["actor"], e["action"]) for e in entries] == [("bob", "promote"), ("alice", "canary")]


def test_update_changes_only_what_is_given(shell: Shell, gateway: InProcessGateway) -> None:
    shell(
        "register",
        "acme",
        "v1",
        *SIM,
        "--param",
        "seed=1",
        "--param",
        "error_kind=timeout",
        "--tag",
        "a",
    )
    status, out, _ = shell(
        "update", "acme", "v1", "--param", "seed=2", "--param", "error_kind=null",
        "--timeout-s", "read=30", "--description", "tuned",
    )  # fmt: skip
    assert (status, out) == (0, "Updated acme@v1: staging\n")
    version = shell.json("show", "acme", "v1")
    assert version["params"] == {"seed": 2} and version["timeouts"] == {"read_s": 30.0}
    assert (version["description"], version["tags"]) == ("tuned", ["a"])
    assert "changed params, timeouts, description" in shell("audit", "--limit", "1")[1]

    status, _, err = shell("update", "acme", "v1")
    assert status == 2 and "nothing to change" in err


def test_delete_and_the_gateways_refusals(shell: Shell, gateway: InProcessGateway) -> None:
    shell("register", "acme", "v1", *SIM, "--live")
    shell("register", "acme", "v2", *SIM)
    status, out, _ = shell("delete", "acme", "v2")
    assert (status, out) == (0, "Deleted acme@v2: staging\n")
    assert [v["version"] for v in shell.json("list")["data"]] == ["v1"]

    status, out, err = shell("delete", "acme", "v1")
    assert (status, out) == (1, "")
    assert err == (
        "error: Version `v1` of `acme` is live: promote another version or roll back first. "
        "(HTTP 409)\n"
    )
    status, _, err = shell("register", "sim", "v1", *SIM)
    assert status == 1 and "is a model of the config file" in err
    status, _, err = shell("show", "acme", "v9")
    assert status == 1 and "has no version `v9`" in err and "(HTTP 404)" in err
    status, _, err = shell("list", "--admin-key", "sk-wrong")
    assert status == 1 and "(HTTP 401)" in err


def test_no_admin_key_or_no_gateway_exits_2(
    shell: Shell, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    status, _, err = shell("list", "--url", closed)
    assert status == 2 and f"cannot reach the gateway at {closed}" in err

    status, _, err = shell("register", "--file", str(tmp_path / "missing.yaml"), "--url", closed)
    assert status == 1 and "missing.yaml" in err

    monkeypatch.delenv("INTERLOCK_ADMIN_KEY")
    status, out, err = shell("promote", "acme", "v1", "--url", closed)
    assert (status, out) == (2, "") and "no admin key" in err

    with pytest.raises(SystemExit) as exited:
        shell("canary", "acme", "v1", "--share", "10")
    assert exited.value.code == 2


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is not None, reason="exports for real with the extra"
)
def test_export_minilm_without_the_extra_says_what_to_install(shell: Shell, tmp_path: Path) -> None:
    status, out, err = shell("export-minilm", "--out", str(tmp_path / "minilm"))
    assert status == 1 and "Register it" not in out
    assert "injection-model" in err
