"""Chaos drills against a live in-process gateway: injected faults are
survived by failover, counted in /metrics and named in the access log; the
admin endpoint validates; ``interlock chaos`` runs a drill and restores the
previous settings however it ends."""

from __future__ import annotations

import io
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from interlock import cli
from interlock.app import create_app
from interlock.cli import chaos as chaos_cli
from interlock.config import parse_config
from interlock.config.chaos import SCENARIOS
from tests.conftest import TEST_KEY
from tests.support.servers import InProcessGateway

# One in-process gateway for the module's tests (conftest checks its SQLite connections).
pytestmark = pytest.mark.shared_gateway

ADMIN_KEY = "sk-admin-chaos"
AUTH = {"authorization": f"Bearer {TEST_KEY}"}
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
OFF: dict[str, Any] = {"enabled": False, "rules": []}


def _config(chaos: dict[str, Any] | None) -> dict[str, Any]:
    """sim-a is always tried first; sim-b takes over when it fails."""
    raw: dict[str, Any] = {
        "models": [
            {
                "name": "chat",
                "deployments": [
                    {"id": "sim-a", "provider": "simulator", "priority": 0},
                    {"id": "sim-b", "provider": "simulator", "priority": 1},
                ],
                "routing": {"strategy": "priority", "backoff_base_s": 0},
            }
        ],
        "keys": [{"name": "k", "key": TEST_KEY}],
        "server": {"admin_key": ADMIN_KEY},
        # Shared by the module's tests: no batch worker opening pool connections mid-test.
        "batch": {"enabled": False},
        "registry": {"enabled": False},
    }
    if chaos is not None:
        raw["chaos"] = chaos
    return raw


class Gateway:
    def __init__(self, raw: dict[str, Any]):
        self.log = io.BytesIO()
        app = create_app(parse_config(raw, env={}), log_stream=self.log, rng=random.Random(7))
        self.server = InProcessGateway(app)
        self.url = self.server.base_url
        self.http = httpx.Client(base_url=self.url, timeout=5)

    def chat(self, **extra: Any) -> httpx.Response:
        return self.http.post("/v1/chat/completions", json={**CHAT, **extra}, headers=AUTH)

    def chaos(self) -> dict[str, Any]:
        response = self.http.get("/admin/chaos", headers=ADMIN)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def put_chaos(self, settings: Any, headers: dict[str, str] = ADMIN) -> httpx.Response:
        return self.http.put("/admin/chaos", content=orjson.dumps(settings), headers=headers)

    def injections(self, deployment: str, fault: str) -> float:
        text = self.http.get("/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "interlock_chaos_injections_total" and sample.labels == {
                    "deployment": deployment,
                    "fault": fault,
                }:
                    return sample.value
        return 0.0

    def access_lines(self, count: int) -> list[dict[str, Any]]:
        """The chat requests' access-log lines, once ``count`` are written."""
        deadline = time.monotonic() + 2
        while True:
            lines = [orjson.loads(line) for line in self.log.getvalue().splitlines()]
            chats = [line for line in lines if line.get("path") == "/v1/chat/completions"]
            if len(chats) >= count or time.monotonic() > deadline:
                return chats

    def close(self) -> None:
        self.http.close()
        self.server.close()


@pytest.fixture
def gateway() -> Iterator[Callable[[dict[str, Any] | None], Gateway]]:
    started: list[Gateway] = []

    def start(chaos: dict[str, Any] | None) -> Gateway:
        started.append(Gateway(_config(chaos)))
        return started[-1]

    yield start
    for gw in started:
        gw.close()


@pytest.fixture(scope="module")
def _module_gateway() -> Iterator[Gateway]:
    gw = Gateway(_config(None))
    yield gw
    gw.close()


@pytest.fixture
def shared(_module_gateway: Gateway) -> Gateway:
    """One gateway for the tests that only read and write chaos settings
    (starting a gateway costs a few tenths of a second)."""
    assert _module_gateway.put_chaos(OFF).status_code == 200
    return _module_gateway


def _run_cli(*argv: str) -> int:
    return cli.main(["chaos", *argv])


def _served_by(response: httpx.Response) -> tuple[str, str]:
    assert response.status_code == 200, response.text
    return response.headers["x-interlock-deployment"], response.headers["x-interlock-attempts"]


# -- injection through the gateway ----------------------------------------


def test_disabled_chaos_injects_nothing(gateway: Callable[..., Gateway]) -> None:
    gw = gateway({"enabled": False, "rules": [{"deployment": "sim-a", "error_rate": 1.0}]})
    for _ in range(3):
        assert _served_by(gw.chat()) == ("sim-a", "1")
    assert gw.injections("sim-a", "error") == 0
    assert all("chaos_injected" not in line for line in gw.access_lines(3))


def test_error_rule_fails_over_and_is_counted_and_logged(gateway: Callable[..., Gateway]) -> None:
    rule = {"deployment": "sim-a", "error_rate": 1.0, "error_status": 503}
    gw = gateway({"enabled": True, "rules": [rule]})
    for _ in range(3):
        assert _served_by(gw.chat()) == ("sim-b", "2")  # failed over after the injected 503
    assert gw.injections("sim-a", "error") == 3
    assert gw.injections("sim-b", "error") == 0
    lines = gw.access_lines(3)
    assert [line["status"] for line in lines] == [200, 200, 200]
    assert [line["chaos_injected"] for line in lines] == [["sim-a:server_error"]] * 3


def test_latency_rule_adds_latency(gateway: Callable[..., Gateway]) -> None:
    gw = gateway({"enabled": True, "rules": []})

    def elapsed() -> float:
        began = time.perf_counter()
        assert _served_by(gw.chat()) == ("sim-a", "1")
        return time.perf_counter() - began

    baseline = min(elapsed() for _ in range(3))
    assert gw.put_chaos({"enabled": True, "rules": [{"deployment": "sim-a", "latency_ms": 50}]})
    slowed = elapsed()
    assert baseline < 0.05 <= slowed
    assert gw.injections("sim-a", "latency") == 1


def test_cut_after_chunks_ends_the_stream_with_an_error_event(
    gateway: Callable[..., Gateway],
) -> None:
    gw = gateway({"enabled": True, "rules": [{"deployment": "sim-a", "cut_after_chunks": 3}]})
    response = gw.chat(stream=True)
    assert response.status_code == 200
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    *chunks, error = [orjson.loads(event) for event in events[:-1]]
    assert len(chunks) == 3 and all("choices" in chunk for chunk in chunks)
    assert "chaos: injected mid-stream cut" in error["error"]["message"]
    assert gw.injections("sim-a", "cut") == 1


def test_a_mid_stream_cut_is_labelled_in_the_access_log(gateway: Callable[..., Gateway]) -> None:
    gw = gateway({"enabled": True, "rules": [{"deployment": "sim-a", "cut_after_chunks": 3}]})
    response = gw.chat(stream=True)
    assert response.status_code == 200
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    error = orjson.loads(events[-2])["error"]
    line = gw.access_lines(1)[0]
    assert line.get("chaos_injected") == ["sim-a:connection"]
    # The code of the error event the client got, though its status was a 200.
    assert line["error_code"] == (error["code"] or error["type"]) and line["status"] == 200


# -- PUT /admin/chaos -------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "headers", "status"),
    [
        ({"enabled": True, "rules": []}, {}, 401),
        ({"enabled": True, "rules": []}, {"authorization": f"Bearer {TEST_KEY}"}, 401),
        ({"enabled": True, "rules": [{"deployment": "nope", "error_rate": 1}]}, ADMIN, 400),
        ({"enabled": True, "rules": [{"deployment": "sim-a", "error_rate": 1.5}]}, ADMIN, 400),
        ({"enabled": True, "rules": [{"deployment": "sim-a", "error_status": 200}]}, ADMIN, 400),
        ({"enabled": True, "rules": [{"deployment": "sim-a", "latency_ms": -1}]}, ADMIN, 400),
        ({"enabled": True, "surprise": 1}, ADMIN, 400),
        (["not", "an", "object"], ADMIN, 400),
    ],
)
def test_put_admin_chaos_is_validated(
    shared: Gateway, settings: Any, headers: dict[str, str], status: int
) -> None:
    gw = shared
    response = gw.put_chaos(settings, headers)
    assert response.status_code == status, response.text
    assert gw.http.get("/admin/chaos", headers=headers).status_code in (200, 401)
    assert gw.chaos() == OFF  # nothing changed


def test_admin_chaos_is_off_without_an_admin_key() -> None:
    raw = _config(None)
    del raw["server"]
    gw = Gateway(raw)
    try:
        assert gw.http.get("/admin/chaos", headers=ADMIN).status_code == 403
        assert gw.put_chaos(OFF).status_code == 403
    finally:
        gw.close()


def test_chaos_enabled_at_run_time_without_chaos_in_the_config(
    gateway: Callable[..., Gateway],
) -> None:
    gw = gateway(None)
    response = gw.put_chaos({"enabled": True, "rules": [{"deployment": "sim-a", "error_rate": 1}]})
    assert response.status_code == 200
    assert _served_by(gw.chat()) == ("sim-b", "2")


# -- interlock chaos ---------------------------------------------------------


def test_phases_switch_only_for_flapping() -> None:
    assert list(chaos_cli.phases("provider-outage", 60, 10)) == [(True, 60)]
    assert list(chaos_cli.phases("flapping", 25, 10)) == [(True, 10), (False, 10), (True, 5)]
    assert list(chaos_cli.phases("flapping", 0, 10)) == [(True, 0)]


def test_list_describes_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run_cli("list") == 0
    out = capsys.readouterr().out
    assert set(chaos_cli.DESCRIPTIONS) == set(SCENARIOS)
    for name, description in chaos_cli.DESCRIPTIONS.items():
        assert f"{name}  " in out and description in out


def test_drill_routes_away_then_restores_previous_settings(
    gateway: Callable[..., Gateway], capsys: pytest.CaptureFixture[str]
) -> None:
    previous = {"enabled": False, "rules": [{"deployment": "sim-b", "latency_ms": 1.0}]}
    gw = gateway(previous)
    before = gw.chaos()
    argv = ["provider-outage", "--url", gw.url, "--admin-key", ADMIN_KEY, "--deployment", "sim-a"]
    codes: list[int] = []
    drill = threading.Thread(target=lambda: codes.append(_run_cli(*argv, "--duration", "0.5")))
    drill.start()
    deadline = time.monotonic() + 2
    while not gw.chaos()["enabled"] and time.monotonic() < deadline:
        time.sleep(0.01)
    during = [_served_by(gw.chat()) for _ in range(2)]
    drill.join(5)
    assert codes == [0]
    assert during == [("sim-b", "2")] * 2
    assert gw.injections("sim-a", "error") == 2
    assert gw.chaos() == before
    assert _served_by(gw.chat()) == ("sim-a", "1")
    out = capsys.readouterr().out
    assert "interlock_chaos_injections_total" in out and "chaos_injected" in out
    assert "Restored the previous chaos settings (disabled, 1 rule)" in out


def _args(gw: Gateway, scenario: str, **kwargs: Any) -> chaos_cli.ChaosArgs:
    return chaos_cli.ChaosArgs(scenario, gw.url, ADMIN_KEY, "sim-a", **kwargs)


def test_flapping_switches_the_rule_every_interval(shared: Gateway) -> None:
    gw = shared
    seen: list[tuple[float, bool]] = []
    args = _args(gw, "flapping", duration_s=25, interval_s=10)
    assert (
        chaos_cli.run(
            args, out=io.StringIO(), sleep=lambda s: seen.append((s, bool(gw.chaos()["rules"])))
        )
        == 0
    )
    assert seen == [(10, True), (10, False), (5, True)]
    assert gw.chaos() == OFF


def test_ctrl_c_ends_the_drill_and_restores(shared: Gateway) -> None:
    gw = shared

    def interrupt(seconds: float) -> None:
        assert gw.chaos()["rules"][0] == {
            "deployment": "sim-a",
            "error_rate": 1.0,
            "error_status": 503,
            "latency_ms": 0.0,
            "timeout_rate": 0.0,
            "reset_rate": 0.0,
            "cut_after_chunks": None,
        }
        raise KeyboardInterrupt

    out = io.StringIO()
    assert chaos_cli.run(_args(gw, "provider-outage"), out=out, sleep=interrupt) == 0
    assert "Ended early" in out.getvalue()
    assert gw.chaos() == OFF


def test_a_failed_restore_says_how_to_restore_by_hand(gateway: Callable[..., Gateway]) -> None:
    gw = gateway(None)
    err = io.StringIO()
    code = chaos_cli.run(
        _args(gw, "provider-outage", timeout_s=1),
        out=io.StringIO(),
        err=err,
        sleep=lambda s: gw.server.close(),  # the gateway goes away mid-drill
    )
    assert code == 1
    assert "could not restore the previous chaos settings" in err.getvalue()
    assert '-d \'{"enabled": false, "rules": []}\'' in err.getvalue()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--admin-key", "wrong", "--deployment", "sim-a"], 1, "refused the admin key (HTTP 401)"),
        (["--admin-key", ADMIN_KEY, "--deployment", "nope"], 1, "Unknown deployment(s): nope"),
        (["--admin-key", ADMIN_KEY], 2, "needs --deployment"),
        (["--admin-key", ADMIN_KEY, "--deployment", "sim-a", "--duration", "-1"], 2, "--duration"),
    ],
)
def test_drill_errors_are_clear_and_change_nothing(
    shared: Gateway,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    message: str,
) -> None:
    gw = shared
    assert _run_cli("provider-outage", "--url", gw.url, *argv) == code
    assert message in capsys.readouterr().err
    assert gw.chaos() == OFF


def test_unreachable_gateway_and_unknown_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    common = ["--url", url, "--admin-key", ADMIN_KEY, "--deployment", "sim-a"]
    assert _run_cli("provider-outage", *common) == 1
    assert f"cannot reach the gateway at {url}" in capsys.readouterr().err
    assert _run_cli("meteor-strike", *common) == 2
    assert "unknown scenario 'meteor-strike'" in capsys.readouterr().err


def test_off_clears_every_rule(shared: Gateway) -> None:
    rule = {"deployment": "sim-a", "error_rate": 1.0}
    assert shared.put_chaos({"enabled": True, "rules": [rule]}).status_code == 200
    assert _run_cli("off", "--url", shared.url, "--admin-key", ADMIN_KEY) == 0
    assert shared.chaos() == OFF
