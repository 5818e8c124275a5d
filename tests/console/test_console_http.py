"""The console over HTTP, against a running gateway: the login and its
cookie, no admin data without a session, CSRF on every change, each page,
changes in the audit log, confirmations before chaos and revocation, the
secret shown once, escaping, the CSV export and the static files."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from interlock.app import create_app
from interlock.config import parse_config
from tests.conftest import TEST_KEY, simulator_config
from tests.support.redis_scratch import scratch_prefix
from tests.support.servers import InProcessGateway
from tests.support.waiting import wait_for

ADMIN_KEY = "sk-admin-console"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
REDIS_URL = "redis://127.0.0.1:6379/13"
PAGES = ("", "/keys", "/usage", "/deployments", "/requests", "/models", "/batches")


def _start(
    tmp_path: Path, admin: bool = True, state: dict[str, Any] | None = None
) -> InProcessGateway:
    tmp_path.mkdir(parents=True, exist_ok=True)
    raw: dict[str, Any] = {
        **simulator_config(),
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"},
        "server": {"access_log": False},
        "batch": {"enabled": False},
    }
    if state is not None:
        raw["state"] = state
    if admin:
        raw["server"]["admin_key"] = "os.environ/ADMIN_KEY"
    env = {"TEST_KEY": TEST_KEY, "ADMIN_KEY": ADMIN_KEY}
    return InProcessGateway(create_app(parse_config(raw, env=env)))


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[InProcessGateway]:
    gateway = _start(tmp_path)
    yield gateway
    gateway.close()


@pytest.fixture
def browser(gateway: InProcessGateway) -> Iterator[httpx.Client]:
    """A client that keeps cookies, as a browser does, not logged in."""
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        yield client


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} field in the page"
    return found.group(1)


def _login(client: httpx.Client, key: str = ADMIN_KEY, name: str = "alice") -> httpx.Response:
    form = client.get("/console/login")
    assert form.status_code == 200
    return client.post(
        "/console/login",
        data={"admin_key": key, "name": name, "login_token": _field(form.text, "login_token"),
              "next": "/console/keys"},
    )  # fmt: skip


def _csrf(client: httpx.Client, path: str = "/console/keys") -> str:
    return _field(client.get(path).text, "csrf")


def test_every_page_needs_a_session(browser: httpx.Client) -> None:
    for page in PAGES:
        answer = browser.get(f"/console{page}")
        assert answer.status_code == 303, page
        assert answer.headers["location"].startswith("/console/login?next=")
    assert browser.get("/console/api/overview").status_code == 401
    assert browser.get("/console/usage.csv").status_code == 303
    refused = browser.post("/console/keys", data={"name": "x"})
    assert refused.status_code == 403
    # The admin key as a header is the admin API's way, not the console's.
    assert browser.get("/console/keys", headers=ADMIN).status_code == 303


def test_login_sets_a_strict_httponly_session_cookie(browser: httpx.Client) -> None:
    answer = _login(browser)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/keys"
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith("interlock_console=")
    )
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/console"} <= attributes
    page = browser.get("/console/keys")
    assert page.status_code == 200 and "API keys" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "alice" in page.text


def test_a_wrong_admin_key_or_a_stale_login_form_is_refused(browser: httpx.Client) -> None:
    wrong = _login(browser, key="sk-not-it")
    assert wrong.status_code == 401 and "not the admin key" in wrong.text
    assert "interlock_console=" not in wrong.headers.get("set-cookie", "")
    stale = browser.post("/console/login", data={"admin_key": ADMIN_KEY, "login_token": "forged"})
    assert stale.status_code == 403
    assert browser.get("/console/keys").status_code == 303


def test_login_never_redirects_to_another_site(browser: httpx.Client) -> None:
    form = browser.get("/console/login")
    answer = browser.post(
        "/console/login",
        data={"admin_key": ADMIN_KEY, "login_token": _field(form.text, "login_token"),
              "next": "//evil.example/console"},
    )  # fmt: skip
    assert answer.headers["location"] == "/console"


def test_each_page_renders_for_a_session(browser: httpx.Client) -> None:
    _login(browser)
    for page in PAGES:
        answer = browser.get(f"/console{page}")
        assert answer.status_code == 200, (page, answer.text[:500])
        assert answer.headers["content-type"].startswith("text/html")
    live = browser.get("/console/api/overview").json()
    assert {"requests_per_s", "error_rate", "added_latency", "time_to_first_token"} <= set(live)


def test_a_change_without_its_csrf_token_changes_nothing(browser: httpx.Client) -> None:
    _login(browser)
    for token in (None, "forged"):
        data = {"name": "sneaky"} if token is None else {"name": "sneaky", "csrf": token}
        answer = browser.post("/console/keys", data=data)
        assert answer.status_code == 403
    admin = httpx.get(f"{browser.base_url}/admin/keys", headers=ADMIN).json()["data"]
    assert not [k for k in admin if k["name"] == "sneaky"]


def test_create_use_edit_and_revoke_a_key(browser: httpx.Client) -> None:
    _login(browser)
    created = browser.post(
        "/console/keys",
        data={"csrf": _csrf(browser), "name": "team <b>blue</b>", "tier": "standard",
              "rpm": "100", "budget_usd_day": "5"},
    )  # fmt: skip
    assert created.status_code == 201, created.text[:500]
    secret = re.search(r'id="new-key"[^>]*>([^<]+)<', created.text)
    assert secret, "the new key is on the page"
    plain = secret.group(1).strip()
    assert "team &lt;b&gt;blue&lt;/b&gt;" in created.text  # escaped, never markup
    assert created.headers["cache-control"] == "no-store"
    # Shown once: the list does not show it again.
    assert plain not in browser.get("/console/keys").text

    chat = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}
    auth = {"authorization": f"Bearer {plain}"}
    assert httpx.post(f"{browser.base_url}/v1/chat/completions", json=chat, headers=auth).is_success

    keys = httpx.get(f"{browser.base_url}/admin/keys", headers=ADMIN).json()["data"]
    key = next(k for k in keys if k["name"] == "team <b>blue</b>")
    edit = browser.get(f"/console/keys/{key['id']}")
    assert edit.status_code == 200
    saved = browser.post(
        f"/console/keys/{key['id']}",
        data={"csrf": _field(edit.text, "csrf"), "tier": "standard", "rpm": "7",
              "allowed_models": "sim"},
    )  # fmt: skip
    assert saved.status_code == 303 and "notice=updated" in saved.headers["location"]
    after = httpx.get(f"{browser.base_url}/admin/keys", headers=ADMIN).json()["data"]
    changed = next(k for k in after if k["id"] == key["id"])
    assert changed["limits"]["rpm"] == 7 and changed["allowed_models"] == ["sim"]
    assert changed["budget_usd_day"] is None  # the form's empty field: no budget

    # Revoking asks first; the confirmation posts it.
    ask = browser.post(f"/console/keys/{key['id']}/revoke", data={"csrf": _csrf(browser)})
    assert ask.status_code == 200 and "Revoke the key" in ask.text
    assert httpx.post(f"{browser.base_url}/v1/chat/completions", json=chat, headers=auth).is_success
    done = browser.post(
        f"/console/keys/{key['id']}/revoke", data={"csrf": _csrf(browser), "confirm": "yes"}
    )
    assert done.status_code == 303
    refused = httpx.post(f"{browser.base_url}/v1/chat/completions", json=chat, headers=auth)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "key_revoked"

    audit = httpx.get(f"{browser.base_url}/admin/audit?area=keys", headers=ADMIN).json()["data"]
    actions = [(e["action"], e["actor"]) for e in audit if e["target"] == f"key:{key['id']}"]
    assert ("create", "console:alice") in actions
    assert ("update", "console:alice") in actions
    assert ("revoke", "console:alice") in actions


def _in_flight_cell(page: str, key_name: str) -> str:
    row = re.search(rf'<tr data-key="{key_name}">(.*?)</tr>', page, re.S)
    assert row, f"no row for {key_name}"
    cell = re.search(r'<td class="in-flight">(.*?)</td>', row.group(1), re.S)
    assert cell, "no in-flight cell"
    return re.sub(r"<[^>]+>", "", cell.group(1)).strip()


def test_the_keys_page_shows_requests_in_flight_against_the_concurrency_limit(
    tmp_path: Path,
) -> None:
    config = simulator_config()
    slow = {"id": "slow-1", "provider": "simulator", "params": {"tokens_per_s": 4}}
    config["models"].append({"name": "slow", "deployments": [slow]})
    raw: dict[str, Any] = {
        **config,
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"},
        "server": {"access_log": False, "admin_key": "os.environ/ADMIN_KEY"},
        "batch": {"enabled": False},
    }
    gateway = InProcessGateway(
        create_app(parse_config(raw, env={"TEST_KEY": TEST_KEY, "ADMIN_KEY": ADMIN_KEY}))
    )
    try:
        base = gateway.base_url
        capped = {"name": "capped", "tier": "standard", "limits": {"max_concurrent": 2}}
        made = httpx.post(f"{base}/admin/keys", json=capped, headers=ADMIN)
        assert made.status_code == 201, made.text
        secret = made.json()["key"]
        free = {"name": "free", "tier": "unlimited"}
        assert httpx.post(f"{base}/admin/keys", json=free, headers=ADMIN).status_code == 201
        with httpx.Client(base_url=base, timeout=30) as browser:
            _login(browser)
            idle = browser.get("/console/keys").text
            assert _in_flight_cell(idle, "capped") == "0 of 2"
            assert _in_flight_cell(idle, "free") == "no limit"
            body = {"model": "slow", "stream": True, "max_tokens": 200,
                    "messages": [{"role": "user", "content": "a long story"}]}  # fmt: skip
            auth = {"authorization": f"Bearer {secret}"}
            with httpx.stream(
                "POST", f"{base}/v1/chat/completions", json=body, headers=auth, timeout=30
            ) as stream:
                assert stream.status_code == 200
                lines = stream.iter_lines()  # kept: a dropped iterator closes the stream
                assert next(lines).startswith("data: ")  # admitted, and streaming
                assert _in_flight_cell(browser.get("/console/keys").text, "capped") == "1 of 2"
            # The client left: the gateway ends the stream and frees its slot.

            def freed() -> bool:
                return _in_flight_cell(browser.get("/console/keys").text, "capped") == "0 of 2"

            wait_for(freed, timeout_s=15, what="the stream's concurrency slot to be freed")
    finally:
        gateway.close()


def test_a_bad_form_is_a_clear_error_not_a_change(browser: httpx.Client) -> None:
    _login(browser)
    answer = browser.post(
        "/console/keys", data={"csrf": _csrf(browser), "name": "x", "rpm": "many"}
    )
    assert answer.status_code == 400 and "rpm must be a whole number" in answer.text
    unknown_tier = browser.post(
        "/console/keys", data={"csrf": _csrf(browser), "name": "x", "tier": "gold"}
    )
    assert unknown_tier.status_code == 400 and "Unknown tier" in unknown_tier.text


def test_chaos_starts_only_after_a_confirmation(browser: httpx.Client) -> None:
    _login(browser)
    page = browser.get("/console/deployments")
    deployment = re.search(r'<option value="([^"]+)">\1</option>', page.text)
    assert deployment, "a deployment to choose"
    form = {"csrf": _field(page.text, "csrf"), "action": "start",
            "scenario": "provider-outage", "deployment": deployment.group(1)}  # fmt: skip
    ask = browser.post("/console/chaos", data=form)
    assert ask.status_code == 200 and "provider-outage" in ask.text
    assert httpx.get(f"{browser.base_url}/admin/chaos", headers=ADMIN).json()["enabled"] is False
    browser.post("/console/chaos", data={**form, "confirm": "yes"})
    chaos = httpx.get(f"{browser.base_url}/admin/chaos", headers=ADMIN).json()
    assert chaos["enabled"] is True and chaos["rules"][0]["error_rate"] == 1.0
    stop = {"csrf": _csrf(browser, "/console/deployments"), "action": "stop", "confirm": "yes"}
    browser.post("/console/chaos", data=stop)
    assert httpx.get(f"{browser.base_url}/admin/chaos", headers=ADMIN).json()["enabled"] is False
    audit = httpx.get(f"{browser.base_url}/admin/audit?area=chaos", headers=ADMIN).json()["data"]
    assert [e["actor"] for e in audit] == ["console:alice", "console:alice"]


def test_usage_page_and_csv_show_the_ledger(browser: httpx.Client) -> None:
    _login(browser)
    chat = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}
    caller = {"authorization": f"Bearer {TEST_KEY}"}
    for _ in range(3):
        assert httpx.post(f"{browser.base_url}/v1/chat/completions", json=chat, headers=caller)

    def ledger_rows() -> list[dict[str, str]]:
        text = browser.get("/console/usage.csv").text
        return list(csv.DictReader(io.StringIO(text)))

    wait_for(lambda: sum(int(r["requests"]) for r in ledger_rows()) == 3, timeout_s=20)
    rows = ledger_rows()
    assert rows[0]["model"] == "sim" and int(rows[0]["prompt_tokens"]) > 0
    page = browser.get("/console/usage?model=sim")
    assert page.status_code == 200 and 'id="chart-data"' in page.text
    assert browser.get("/console/usage?since=yesterday").status_code == 400


def test_static_files_are_served_compressed_and_cached(browser: httpx.Client) -> None:
    page = browser.get("/console/login").text
    script = re.search(r'src="(/console/assets/console\.js\?v=[^"]+)"', page)
    assert script
    answer = browser.get(script.group(1))
    assert answer.status_code == 200 and "immutable" in answer.headers["cache-control"]
    raw = httpx.get(
        f"{browser.base_url}/console/assets/plotly.min.js", headers={"accept-encoding": "gzip"}
    )
    assert raw.headers["content-encoding"] == "gzip"
    assert len(raw.content) > 1_000_000  # httpx decoded it: the whole library
    assert browser.get("/console/assets/index.html").status_code == 404


def test_no_admin_key_no_console(tmp_path: Path) -> None:
    gateway = _start(tmp_path, admin=False)
    try:
        answer = httpx.get(f"{gateway.base_url}/console")
        assert answer.status_code == 403 and "server.admin_key" in answer.text
    finally:
        gateway.close()


def test_logout_ends_the_session_in_this_browser(browser: httpx.Client) -> None:
    _login(browser)
    assert browser.get("/console/keys").status_code == 200
    browser.post("/console/logout", data={"csrf": _csrf(browser)})
    assert browser.get("/console/keys").status_code == 303


def test_logout_ends_the_session_for_every_copy_of_its_cookie(browser: httpx.Client) -> None:
    _login(browser)
    copied = dict(browser.cookies)  # a stolen cookie, or another tab's
    browser.post("/console/logout", data={"csrf": _csrf(browser)})
    with httpx.Client(base_url=str(browser.base_url), cookies=copied, timeout=30) as other:
        assert other.get("/console/keys").status_code == 303


def test_logout_on_one_instance_ends_the_session_on_the_others(tmp_path: Path) -> None:
    # Both share the admin key and Redis, as instances behind a load balancer do.
    with scratch_prefix(REDIS_URL, "console") as prefix:
        state = {"backend": "redis", "url": REDIS_URL, "prefix": prefix, "timeout_s": 10.0}
        first, second = _start(tmp_path, state=state), _start(tmp_path / "b", state=state)
        try:
            with (
                httpx.Client(base_url=first.base_url, timeout=30) as one,
                httpx.Client(base_url=second.base_url, timeout=30) as two,
            ):
                _login(one)
                two.cookies.update(one.cookies)
                assert two.get("/console/keys").status_code == 200  # the same session
                one.post("/console/logout", data={"csrf": _csrf(one)})
                assert two.get("/console/keys").status_code == 303
        finally:
            first.close()
            second.close()


def test_make_run_prints_a_development_admin_key_for_the_console(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from interlock.cli.serve import _load_for_serve

    monkeypatch.delenv("INTERLOCK_ADMIN_KEY", raising=False)
    config, banner = _load_for_serve(None)
    assert config.server.admin_key is not None
    key = config.server.admin_key.reveal()
    assert key.startswith("sk-admin-dev-")
    assert f"Console: /console, log in with the admin key {key}" in banner
    monkeypatch.setenv("INTERLOCK_ADMIN_KEY", "sk-admin-mine")
    config, banner = _load_for_serve(None)
    assert config.server.admin_key is not None
    assert config.server.admin_key.reveal() == "sk-admin-mine"
    assert not any("Generated a development admin key" in line for line in banner)
