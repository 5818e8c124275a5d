"""Issue 13's probe as a test: generated malformed requests on every route.

A seeded generator (the same requests on every run) takes a valid request
for each route and breaks it: fields removed, retyped, enlarged, nested;
unknown fields; JSON cut short or not JSON at all; wrong query parameters
and path segments. Whatever it sends, the gateway answers without a 5xx,
in OpenAI's error shape when it refuses, within a second, and stays live.
Against a gateway process with the bundled simulator models and the admin
API on, as a user runs it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from tests.support.servers import GatewayProcess

DEV_KEY = "sk-dev-malformed"
ADMIN_KEY = "sk-admin-malformed"
SEED = 13
PER_ROUTE = 60
# A healthy answer takes milliseconds; the probe's findings stalled for
# seconds. One second, as the issue asks, with CI's noise well inside it.
WITHIN_S = 1.0
ERROR_FIELDS = {"message", "type", "param", "code"}

CHAT = {
    "model": "chat-small",
    "messages": [{"role": "user", "content": "hello"}],
    "max_tokens": 8,
}
EMBED = {"model": "embed-small", "input": ["hello", "world"]}
NEW_KEY = {"name": "generated", "tier": "standard", "limits": {"rpm": 10}}
CHAOS = {"enabled": True, "rules": [{"deployment": "sim-chat-small", "error_rate": 0.0}]}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    body: dict[str, Any] | None  # the valid request to break; None: no body
    admin: bool = False


ROUTES = [
    Route("POST", "/v1/chat/completions", CHAT),
    Route("POST", "/v1/embeddings", EMBED),
    Route("GET", "/v1/models", None),
    Route("GET", "/v1/models/chat-small", None),
    Route("POST", "/admin/keys", NEW_KEY, admin=True),
    Route("GET", "/admin/keys", None, admin=True),
    Route("PUT", "/admin/chaos", CHAOS, admin=True),
    Route("GET", "/admin/usage", None, admin=True),
    Route("DELETE", "/admin/cache", None, admin=True),
    Route("GET", "/admin/requests/slow", None, admin=True),
    Route("POST", "/admin/keys/key_0000/revoke", None, admin=True),
]


def _odd_value(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value a field might wrongly get."""
    choices: list[Callable[[], Any]] = [
        lambda: None,
        lambda: rng.choice([True, False]),
        lambda: rng.choice([0, -1, 1, 2**31, 2**63 - 1, -(2**63)]),
        lambda: rng.choice([0.5, -1e308, 1e308, 3.14]),
        lambda: rng.choice(["", "x", "1", "null", "-1", "\u0000", "\ud7ff" * 3, "é" * 1000]),
        lambda: "x" * rng.choice([10_000, 100_000]),
    ]
    if depth < 3:
        choices += [
            lambda: [_odd_value(rng, depth + 1) for _ in range(rng.randint(0, 4))],
            lambda: {"k": _odd_value(rng, depth + 1), "role": "user", "content": 5},
        ]
    return rng.choice(choices)()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON value (dict keys and list indexes)."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from _paths(child, (*prefix, index))


def _broken_body(rng: random.Random, body: dict[str, Any]) -> bytes:
    """``body`` broken in one of several ways, as the bytes sent."""
    way = rng.randrange(9)
    if way == 0:
        raw = orjson.dumps(body)
        return raw[: rng.randrange(len(raw))]  # cut short
    if way == 1:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    if way == 2:
        return rng.choice([b"", b"null", b"[]", b"42", b'"text"', b"{", b"{}", b'{"a":}'])
    if way == 3:  # a valid request with a deeply nested unknown field
        depth = rng.choice([100, 300, 1000])
        return orjson.dumps(body)[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
    mutated = orjson.loads(orjson.dumps(body))
    places = list(_paths(mutated))
    place = rng.choice(places) if places else ("model",)
    parent: Any = mutated
    for step in place[:-1]:
        parent = parent[step]
    last = place[-1]
    if way in (4, 5, 6):
        parent[last] = _odd_value(rng)
    elif way == 7 and isinstance(parent, dict):
        del parent[last]
    else:
        mutated[f"unknown_{rng.randrange(1000)}"] = _odd_value(rng)
    return orjson.dumps(mutated)


def _broken_query(rng: random.Random) -> dict[str, str]:
    names = ["limit", "since", "until", "group_by", "namespace", "model", "include_revoked"]
    values = ["", "-1", "0", "99999999999", "x", "2026-13-45", "key", "\u00e9", "1" * 500]
    return {rng.choice(names): rng.choice(values) for _ in range(rng.randint(0, 3))}


def _requests() -> Iterator[tuple[Route, bytes | None, dict[str, str], str]]:
    rng = random.Random(SEED)
    for route in ROUTES:
        for _ in range(PER_ROUTE):
            body = None if route.body is None else _broken_body(rng, route.body)
            path = route.path
            if rng.random() < 0.15:
                path += rng.choice(["x", "/../..", "%00", "/" + "a" * 300, "?" + "b" * 100])
            yield route, body, _broken_query(rng), path


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = {
        "models": [
            {
                "name": "chat-small",
                "deployments": [
                    {"id": "sim-chat-small", "provider": "simulator", "params": {"max_tokens": 8}}
                ],
            },
            {
                "name": "embed-small",
                "deployments": [
                    {"id": "sim-embed", "provider": "simulator", "params": {"dimensions": 16}}
                ],
            },
        ],
        "keys": [{"name": "dev", "key": DEV_KEY}],
        "server": {"admin_key": ADMIN_KEY},
        "cache": {"enabled": True},
    }
    gateway = GatewayProcess(config, tmp_path_factory.mktemp("malformed"))
    yield gateway
    gateway.close()


def test_generated_malformed_requests_get_clean_answers(gateway: GatewayProcess) -> None:
    failures: list[str] = []
    slowest = 0.0
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        for route, body, query, path in _requests():
            key = ADMIN_KEY if route.admin else DEV_KEY
            headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
            began = time.perf_counter()
            response = client.request(
                route.method, path, content=body, params=query, headers=headers
            )
            elapsed = time.perf_counter() - began
            slowest = max(slowest, elapsed)
            what = f"{route.method} {path} {query} {body[:80] if body else b''!r}"
            if response.status_code >= 500:
                failures.append(f"{response.status_code} for {what}: {response.text[:200]}")
            elif response.status_code >= 400:
                error = response.json().get("error")
                if not isinstance(error, dict) or set(error) != {
                    "message",
                    "type",
                    "param",
                    "code",
                }:
                    failures.append(f"not OpenAI's error shape for {what}: {response.text[:200]}")
            if elapsed > WITHIN_S:
                failures.append(f"{elapsed:.2f} s for {what}")
        assert client.get("/health/live").status_code == 200
    assert not failures, "\n".join(failures[:20])
    assert slowest < WITHIN_S
