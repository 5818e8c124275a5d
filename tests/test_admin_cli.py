"""``interlock keys`` and ``interlock usage`` against the records store a
running gateway shares."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from interlock.app import create_app
from interlock.cli import main
from interlock.config import parse_config
from tests.support.servers import InProcessGateway

CHAT = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}


class Shell:
    def __init__(self, capsys: pytest.CaptureFixture[str]):
        self._capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        status = main(list(argv))
        out, err = self._capsys.readouterr()
        return status, out, err


@pytest.fixture
def shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Shell:
    """The CLI in this process, on a data directory of its own."""
    monkeypatch.setenv("INTERLOCK_DATA_DIR", str(tmp_path / "data"))
    return Shell(capsys)


def gateway_config() -> dict[str, Any]:
    """No store.url: the gateway opens the data directory's SQLite, as the CLI does."""
    return {
        "models": [{"name": "sim", "deployments": [{"id": "sim-1", "provider": "simulator"}]}],
        "keys": [{"name": "ops", "key": "sk-ops"}],
        "server": {"access_log": False},
    }


def test_create_list_use_revoke_and_usage(shell: Shell) -> None:
    status, out, err = shell("keys", "create", "--name", "svc", "--models", "sim", "--rpm", "100")
    key = out.strip()
    assert status == 0 and key.startswith("sk-il-") and out == key + "\n"
    assert "shown only now" in err

    status, out, _ = shell("keys", "list")
    assert status == 0 and key not in out
    assert ["svc", key[:8], "standard", "rpm=100", "sim", "-", "active"] == out.splitlines()[
        1
    ].split()[1:]
    _, out, _ = shell("keys", "list", "--json")
    (listed,) = json.loads(out)
    assert listed["name"] == "svc" and "key" not in listed

    gateway = InProcessGateway(create_app(parse_config(gateway_config(), env={})))
    try:
        with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
            auth = {"authorization": f"Bearer {key}"}
            first = client.post("/v1/chat/completions", json=CHAT, headers=auth)
            assert first.status_code == 200
            assert first.headers["x-ratelimit-limit-requests"] == "100"

            assert shell("keys", "revoke", listed["id"])[0] == 0
            # Gateways poll the store every 0.5 s: until then the key still works.
            answers, deadline = [first], time.monotonic() + 1.0
            while answers[-1].status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.02)
                answers.append(client.post("/v1/chat/completions", json=CHAT, headers=auth))
            assert answers[-1].status_code == 403
            assert answers[-1].json()["error"]["code"] == "key_revoked"
    finally:
        gateway.close()  # flushes the usage ledger

    served = [answer.json()["usage"] for answer in answers[:-1]]
    status, out, _ = shell("usage", "--key", "svc", "--json")
    (totals,) = json.loads(out)
    assert status == 0 and totals["requests"] == len(served)  # the refused one is not usage
    for field in ("prompt_tokens", "completion_tokens"):
        assert totals[field] == sum(usage[field] for usage in served)
    _, out, _ = shell("usage", "--group-by", "model")
    assert out.splitlines()[0].split() == [
        "MODEL", "REQUESTS", "PROMPT_TOKENS", "COMPLETION_TOKENS", "COST_USD", "CACHE_HITS",
        "UNITS",
    ]  # fmt: skip
    assert out.splitlines()[1].split()[:2] == ["sim", str(len(served))]
    _, out, _ = shell("keys", "list")
    assert len(out.splitlines()) == 1  # revoked keys only with --all
    _, out, _ = shell("keys", "list", "--all")
    assert out.splitlines()[1].split()[-1] == "revoked"


def test_rotate_replaces_the_key(shell: Shell) -> None:
    _, old_key, _ = shell("keys", "create", "--name", "svc", "--tier", "premium", "--tpm", "5000")
    _, out, _ = shell("keys", "list", "--json")
    (old,) = json.loads(out)
    status, new_key, err = shell("keys", "rotate", old["id"])
    assert "old key revoked" in err
    assert status == 0 and new_key.startswith("sk-il-") and new_key != old_key
    _, out, _ = shell("keys", "list", "--all", "--json")
    revoked, new = json.loads(out)
    assert revoked["id"] == old["id"] and revoked["revoked_at"] is not None
    assert new["rotated_from"] == old["id"] and new["tier"] == "premium"
    assert new["limits"]["tpm"] == 5000
    assert shell("keys", "rotate", old["id"]) == (1, "", f"error: no active key {old['id']!r}\n")


def test_store_url_and_tiers_come_from_the_config(tmp_path: Path, shell: Shell) -> None:
    config = tmp_path / "gateway.yaml"
    raw = {
        **gateway_config(),
        "keys": [{"name": "ops", "key": "os.environ/NOT_SET_HERE"}],  # not read
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"},
        "tiers": {"gold": {"limits": {"rpm": 10}}},
    }
    config.write_text(yaml.safe_dump(raw))
    assert shell("keys", "create", "--name", "a", "--tier", "gold", "--config", str(config))[0] == 0
    status, _, err = shell("keys", "create", "--name", "b", "--config", str(config))
    assert status == 1 and "unknown tier 'standard' (known: gold)" in err
    assert len(shell("keys", "list", "--config", str(config))[1].splitlines()) == 2
    assert len(shell("keys", "list")[1].splitlines()) == 1  # the data directory's store: empty
    assert (tmp_path / "other.db").exists()


def test_bad_arguments(shell: Shell) -> None:
    with pytest.raises(SystemExit) as usage_error:
        shell("usage", "--since", "yesterday")
    assert usage_error.value.code == 2
    status, _, err = shell("keys", "create", "--name", "x", "--expires", "2001-01-01")
    assert status == 1 and "in the past" in err
    assert shell("keys", "revoke", "key_nope") == (1, "", "error: no active key 'key_nope'\n")


def test_a_key_with_its_own_guardrails(shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    override = '{"limits": {"max_messages": 1}}'
    status, key, _ = shell("keys", "create", "--name", "strict", "--guardrails", override)
    assert status == 0
    _, out, _ = shell("keys", "list", "--json")
    assert json.loads(out)[0]["guardrails"] == {"limits": {"max_messages": 1}}

    two_messages = {**CHAT, "messages": CHAT["messages"] * 2}
    gateway = InProcessGateway(create_app(parse_config(gateway_config(), env={})))
    try:
        with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
            auth = {"authorization": f"Bearer {key.strip()}"}
            refused = client.post("/v1/chat/completions", json=two_messages, headers=auth)
            assert refused.status_code == 400
            assert refused.json()["error"]["code"] == "too_many_messages"
            ops = {"authorization": "Bearer sk-ops"}
            assert client.post("/v1/chat/completions", json=two_messages, headers=ops).is_success
    finally:
        gateway.close()

    for bad, says in [
        ("{not json", "not JSON"),
        ("[1]", "must be a JSON object"),
        ('{"pii": {"action": "shred"}}', "guardrails.pii.action"),
    ]:
        with pytest.raises(SystemExit):
            shell("keys", "create", "--name", "x", "--guardrails", bad)
        assert says in capsys.readouterr().err
