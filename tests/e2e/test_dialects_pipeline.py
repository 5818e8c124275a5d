"""Every dialect passes the same stages: one test suite over the three.

OpenAI Chat Completions, Anthropic Messages and OpenAI Responses are edges
over the one pipeline (ADR 0009), so rate limits, budgets, the response
cache (its keys include the dialect), PII redaction (text in blocks and in
items), the usage ledger and the metrics (labelled by route) behave alike.
Each test runs once per dialect against one gateway process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.fake_azure import azure_app
from tests.support.servers import FakeUpstream, GatewayProcess
from tests.support.waiting import wait_for

ADMIN = "sk-admin-dialects-test"
KEYS = {
    "open": "sk-dialects-open-0123456789",
    "tight": "sk-dialects-tight-0123456789",
    "broke": "sk-dialects-broke-0123456789",
    # One per dialect, so the ledger's rows for each are its own.
    **{
        f"count-{name}": f"sk-dialects-count-{name}-0123456789"
        for name in ("openai", "anthropic", "responses")
    },
}


@dataclass(frozen=True)
class Dialect:
    name: str
    path: str

    def body(self, model: str, text: str) -> dict[str, Any]:
        if self.name == "anthropic":
            content = [{"type": "text", "text": text}]
            messages = [{"role": "user", "content": content}]
            return {"model": model, "max_tokens": 32, "temperature": 0, "messages": messages}
        if self.name == "responses":
            item = {"type": "input_text", "text": text}
            items = [{"role": "user", "content": [item]}]
            return {"model": model, "input": items, "store": False, "temperature": 0}
        return {"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0}

    def text(self, answer: dict[str, Any]) -> str:
        if self.name == "anthropic":
            return "".join(b.get("text", "") for b in answer["content"] if b["type"] == "text")
        if self.name == "responses":
            return "".join(
                part["text"]
                for item in answer["output"]
                if item["type"] == "message"
                for part in item["content"]
                if part["type"] == "output_text"
            )
        return str(answer["choices"][0]["message"]["content"])

    def error_type(self, answer: dict[str, Any]) -> str:
        return str(answer["error"]["type"])

    def streamed_body(self, model: str, text: str) -> dict[str, Any]:
        body = {**self.body(model, text), "stream": True}
        if self.name == "openai":
            body["stream_options"] = {"include_usage": True}
        return body

    def streamed_output_tokens(self, events: str) -> int:
        """The output tokens a stream's closing event (or usage chunk) reports."""
        found = None
        for line in events.splitlines():
            if not line.startswith("data: {"):
                continue
            data = json.loads(line.removeprefix("data: "))
            if self.name == "anthropic" and data["type"] == "message_delta":
                found = data["usage"]["output_tokens"]
            elif self.name == "responses" and data["type"] == "response.completed":
                found = data["response"]["usage"]["output_tokens"]
            elif self.name == "openai" and data.get("usage"):
                found = data["usage"]["completion_tokens"]
        assert isinstance(found, int), events
        return found


DIALECTS = [
    Dialect("openai", "/v1/chat/completions"),
    Dialect("anthropic", "/v1/messages"),
    Dialect("responses", "/v1/responses"),
]


class Scene:
    def __init__(self, gateway: GatewayProcess, upstream: list[dict[str, Any]]):
        self.gateway = gateway
        self.upstream = upstream

    def ask(
        self,
        dialect: Dialect,
        model: str,
        text: str,
        key: str = "open",
        stream: bool = False,
        **headers: str,
    ) -> httpx.Response:
        return httpx.post(
            self.gateway.base_url + dialect.path,
            json=dialect.streamed_body(model, text) if stream else dialect.body(model, text),
            headers={"authorization": f"Bearer {KEYS[key]}", **headers},
            timeout=30,
        )

    def admin(self, path: str) -> Any:
        answer = httpx.get(
            self.gateway.base_url + path, headers={"authorization": f"Bearer {ADMIN}"}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        return answer.json() if "json" in answer.headers["content-type"] else answer.text


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    recorded: list[dict[str, Any]] = []
    fake = FakeUpstream(azure_app(recorded))
    config = {
        "models": [
            {"name": "sim", "deployments": [{"id": "sim-1", "provider": "simulator"}]},
            {
                # The same simulator, dear enough that one answer spends a budget.
                "name": "dear",
                "deployments": [
                    {
                        "id": "dear-1",
                        "provider": "simulator",
                        "price": {"input_per_million": 1e6, "output_per_million": 1e6},
                    }
                ],
            },
            {
                "name": "recorded",
                "deployments": [
                    {
                        "id": "azure-1",
                        "provider": "azure",
                        "model": "gpt-4o",
                        "base_url": fake.url,
                        "api_key": "test",
                    }
                ],
            },
        ],
        "keys": [
            {"name": "open", "key": KEYS["open"]},
            {"name": "tight", "key": KEYS["tight"], "limits": {"rpm": 2}},
            {"name": "broke", "key": KEYS["broke"], "budget_usd_day": 0.01},
            *({"name": name, "key": KEYS[name]} for name in KEYS if name.startswith("count-")),
        ],
        "server": {"admin_key": ADMIN},
        "cache": {"enabled": True},
        "guardrails": {"pii": {"action": "redact"}},
        "batch": {"enabled": False},
        "registry": {"enabled": False},
    }
    gateway = GatewayProcess(config, tmp_path_factory.mktemp("gw"))
    yield Scene(gateway, recorded)
    gateway.close()
    fake.close()


@pytest.fixture(params=DIALECTS, ids=[d.name for d in DIALECTS])
def dialect(request: pytest.FixtureRequest) -> Dialect:
    return request.param  # type: ignore[no-any-return]


def test_each_dialect_is_answered_through_the_pipeline(scene: Scene, dialect: Dialect) -> None:
    answer = scene.ask(dialect, "sim", f"hello from {dialect.name}")
    assert answer.status_code == 200, answer.text
    assert dialect.text(answer.json())
    assert answer.headers["x-interlock-deployment"] == "sim-1"


def test_rate_limits_hold_for_every_dialect(scene: Scene, dialect: Dialect) -> None:
    # The tight key's 2 requests a minute are shared by all dialects: each
    # test spends them all, then is refused in its own dialect's shape.
    refused = None
    for i in range(4):
        answer = scene.ask(dialect, "sim", f"limit {dialect.name} {i}", key="tight")
        if answer.status_code == 429:
            refused = answer
            break
    assert refused is not None
    expected = "rate_limit_error"
    assert dialect.error_type(refused.json()) == expected
    assert "retry-after" in refused.headers


def test_budgets_hold_for_every_dialect(scene: Scene, dialect: Dialect) -> None:
    def spent() -> bool:
        answer = scene.ask(dialect, "dear", f"budget {dialect.name}", key="broke")
        return answer.status_code == 429

    # The ledger is written every 0.5 s and spend cached 2 s: refused soon after.
    wait_for(spent, timeout_s=30, what="the budget to refuse")
    answer = scene.ask(dialect, "dear", "one more", key="broke")
    assert answer.status_code == 429
    if dialect.name != "anthropic":
        assert answer.json()["error"]["code"] == "insufficient_quota"


def test_the_cache_serves_each_dialect_from_its_own_keys(scene: Scene, dialect: Dialect) -> None:
    text = f"cache me in {dialect.name}"
    first = scene.ask(dialect, "sim", text)
    second = scene.ask(dialect, "sim", text)
    assert first.headers["x-interlock-cache"] == "miss"
    assert second.headers["x-interlock-cache"] == "hit"
    assert dialect.text(second.json()) == dialect.text(first.json())
    # The same question in another dialect is a miss: each edge replays its own.
    other = next(d for d in DIALECTS if d is not dialect)
    assert scene.ask(other, "sim", text).headers["x-interlock-cache"] == "miss"


def test_a_stream_reports_its_usage_on_a_miss_and_on_a_hit(scene: Scene, dialect: Dialect) -> None:
    # The Anthropic and Responses edges ask for no usage chunk: they take the
    # usage from the request's record, which a cache hit fills as well.
    text = f"stream and count me in {dialect.name}"
    first = scene.ask(dialect, "sim", text, stream=True)
    second = scene.ask(dialect, "sim", text, stream=True)
    assert first.status_code == second.status_code == 200, first.text
    assert first.headers["x-interlock-cache"] == "miss"
    assert second.headers["x-interlock-cache"] == "hit"
    tokens = dialect.streamed_output_tokens(first.text)
    assert tokens > 0
    assert dialect.streamed_output_tokens(second.text) == tokens


def test_pii_is_redacted_in_blocks_and_items(scene: Scene, dialect: Dialect) -> None:
    before = len(scene.upstream)
    answer = scene.ask(dialect, "recorded", f"mail jane.doe@example.com about {dialect.name}")
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-interlock-guardrails"].startswith("pii:email:redact")
    sent = scene.upstream[before:]
    assert len(sent) == 1
    upstream_text = str(sent[0]["body"]["messages"])
    assert "jane.doe@example.com" not in upstream_text and "[EMAIL]" in upstream_text


def test_the_ledger_and_metrics_count_every_dialect(scene: Scene, dialect: Dialect) -> None:
    key = f"count-{dialect.name}"
    answer = scene.ask(dialect, "sim", f"count me in {dialect.name}", key=key)
    assert answer.status_code == 200, answer.text

    def row() -> dict[str, Any] | None:
        rows = scene.admin(f"/admin/usage?key={key}")["data"]
        return rows[0] if rows and rows[0]["requests"] else None

    counted = wait_for(row, what="the ledger row")
    assert counted["requests"] == 1
    assert counted["prompt_tokens"] > 0 and counted["completion_tokens"] > 0
    metrics = scene.admin("/metrics")
    counted_by_route = [
        line
        for line in metrics.splitlines()
        if line.startswith("interlock_requests_total{")
        and f'route="{dialect.path}"' in line
        and 'model="sim"' in line
        and 'status="200"' in line
    ]
    assert counted_by_route, f"no interlock_requests_total for {dialect.path}"
