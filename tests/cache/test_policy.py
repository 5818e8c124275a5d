"""CachePolicy: plain data in, a decision out."""

from __future__ import annotations

from typing import Any

import pytest

from interlock.cache import CacheDirective, CachePolicy, CacheSettings
from interlock.errors import InvalidRequest
from tests.cache.support import MODEL, chat_body

POLICY = CachePolicy(CacheSettings(ttl_s=300))


@pytest.mark.parametrize(
    ("body", "cacheable"),
    [
        (chat_body(), True),
        (chat_body(temperature=0.0), True),
        (chat_body(temperature=0.7), False),
        ({k: v for k, v in chat_body().items() if k != "temperature"}, False),  # OpenAI: 1
        (chat_body(temperature=None), False),
        (chat_body(n=1), True),
        (chat_body(n=3), False),
        (chat_body(logprobs=True), False),
        (chat_body(logprobs=False), True),
        (chat_body(modalities=["text", "audio"]), False),
    ],
)
def test_only_deterministic_replayable_requests_are_cacheable(
    body: dict[str, Any], cacheable: bool
) -> None:
    assert POLICY.cacheable(body) is cacheable


def test_nondeterministic_requests_cached_when_configured() -> None:
    policy = CachePolicy(CacheSettings(cache_nondeterministic=True))
    assert policy.cacheable(chat_body(temperature=1.2))
    assert not policy.cacheable(chat_body(temperature=1.2, n=2))


def test_plain_request_looks_up_and_fills_with_the_model_ttl() -> None:
    policy = CachePolicy(CacheSettings(ttl_s=300, model_ttl_s={MODEL: 60}))
    assert policy.directive(MODEL, chat_body(), {}) == CacheDirective(True, True, 60)
    assert policy.directive("other", chat_body(), {}) == CacheDirective(True, True, 300)


def test_model_ttl_zero_turns_the_cache_off_for_that_model() -> None:
    policy = CachePolicy(CacheSettings(model_ttl_s={MODEL: 0}))
    assert policy.directive(MODEL, chat_body(), {}) is None


def test_disabled_cache_and_uncacheable_bodies_get_no_directive() -> None:
    assert CachePolicy(CacheSettings(enabled=False)).directive(MODEL, chat_body(), {}) is None
    assert POLICY.directive(MODEL, chat_body(temperature=1), {}) is None


def test_embeddings_are_always_deterministic() -> None:
    body = {"model": MODEL, "input": "x"}
    assert POLICY.directive(MODEL, body, {}, embedding=True) == CacheDirective(True, True, 300)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Cache-Control": "no-cache"}, CacheDirective(False, True, 300)),
        ({"cache-control": "max-age=0, No-Cache"}, CacheDirective(False, True, 300)),
        ({"Cache-Control": "no-store"}, None),
        ({"cache-control": "no-cache, no-store"}, None),
        ({"x-interlock-cache-ttl": "30"}, CacheDirective(True, True, 30)),
        ({"X-Interlock-Cache-TTL": "1e9"}, CacheDirective(True, True, 86_400)),  # capped
        ({"x-interlock-cache-ttl": "0"}, CacheDirective(True, False, 300)),  # look, don't store
        ({"x-interlock-cache-ttl": "0", "cache-control": "no-cache"}, None),
    ],
)
def test_request_headers(headers: dict[str, str], expected: CacheDirective | None) -> None:
    assert POLICY.directive(MODEL, chat_body(), headers) == expected


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf", ""])
def test_malformed_ttl_header_is_a_client_error(value: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        POLICY.directive(MODEL, chat_body(), {"x-interlock-cache-ttl": value})
    assert caught.value.param == "x-interlock-cache-ttl"


def test_namespace_is_the_key_unless_configured_to_share() -> None:
    assert POLICY.namespace("alice") != POLICY.namespace("bob")
    grouped = CachePolicy(CacheSettings(namespaces={"alice": "team", "bob": "team"}))
    assert grouped.namespace("alice") == grouped.namespace("bob") != grouped.namespace("carol")
    shared = CachePolicy(CacheSettings(shared_namespace="everyone"))
    assert shared.namespace("alice") == shared.namespace("carol") == "everyone"


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="l1_max_bytes"):
        CacheSettings(l1_max_bytes=0)
    with pytest.raises(ValueError, match="remote_wait_s"):
        CacheSettings(remote_wait_s=-1)
