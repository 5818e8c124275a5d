"""The redaction policy with plain data: which secrets, which fragments, which shapes."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from interlock.config import parse_config
from interlock.redaction import REDACTED, Redactor

KEY = "corp-Q7vXk2LmP9sTz4WnB8yHc3RjF6dGa1Ne"  # random-looking, no well-known shape
OPENAI_KEY = "sk-proj-Ab3dEf7hIjKlMn0pQrStUvWxYz12aB34cD56eF78gH90iJ"


def test_a_configured_secret_is_scrubbed_wherever_it_is() -> None:
    redactor = Redactor([KEY])
    assert redactor.scrub(f"Incorrect API key provided: {KEY}.") == (
        f"Incorrect API key provided: {REDACTED}."
    )
    assert redactor.scrub(f"x{KEY}y{KEY}") == f"x{REDACTED}y{REDACTED}"
    assert redactor.scrub(f"key={KEY}&other=1") == f"key={REDACTED}&other=1"


def test_a_run_of_8_characters_of_a_secret_is_scrubbed() -> None:
    redactor = Redactor([KEY])
    # An upstream that masks the middle but shows too much around it.
    echoed = f"Incorrect API key provided: {KEY[:14]}**********{KEY[-4:]}"
    assert redactor.scrub(echoed) == f"Incorrect API key provided: {REDACTED}**********{KEY[-4:]}"
    assert redactor.scrub(f"saw {KEY[9:17]} here") == f"saw {REDACTED} here"
    assert redactor.scrub(f"saw {KEY[9:16]} here") == f"saw {KEY[9:16]} here"  # 7: kept


def test_the_masking_an_upstream_chose_is_kept() -> None:
    redactor = Redactor([OPENAI_KEY])
    # OpenAI's own echo: a public prefix, stars, the last four characters.
    echoed = f"Incorrect API key provided: sk-proj-{'*' * 40}{OPENAI_KEY[-4:]}."
    assert redactor.scrub(echoed) == echoed


def test_word_like_runs_of_a_test_secret_do_not_shred_ordinary_text() -> None:
    redactor = Redactor(["sk-test-interlock", "sk-upstream-key"])
    line = '{"logger": "interlock.access", "msg": "upstream failure"}'
    assert redactor.scrub(line) == line
    assert redactor.scrub("Bearer sk-test-interlock") == f"Bearer {REDACTED}"


def test_short_secrets_are_found_whole_and_tiny_ones_ignored() -> None:
    redactor = Redactor(["p4ss9", "ab"])
    assert redactor.scrub("user:p4ss9@host") == f"user:{REDACTED}@host"
    assert redactor.scrub("abc") == "abc"


@pytest.mark.parametrize(
    "token",
    [
        "sk-il-" + "A1b2C3d4E5f6G7h8I9j0KkLlMmNnOoPpQqRr",  # the gateway's own issued keys
        "sk-proj-" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0",
        "AIzaSyA1b2C3d4E5f6G7h8I9j0KkLlMmNnOoPpQ",
    ],
)
def test_key_shaped_strings_are_scrubbed_even_when_not_configured(token: str) -> None:
    assert Redactor().scrub(f"the client sent {token} as its model") == (
        f"the client sent {REDACTED} as its model"
    )


@pytest.mark.parametrize(
    "text",
    [
        "upstream failed (500): The server had an error while processing your request.",
        "This model's maximum context length is 8192 tokens; you asked for 9000.",
        "sk-this-is-just-a-long-hyphenated-phrase",
        "request req_0123456789abcdef01234567 took 12.5 ms",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor([KEY, OPENAI_KEY, "sk-test-interlock"]).scrub(text) == text


def test_scrub_value_walks_log_fields() -> None:
    redactor = Redactor([KEY])

    class Opaque:
        def __str__(self) -> str:
            return f"<conn {KEY}>"

    fields: Any = {"error": KEY, "nested": {"list": [KEY, 1, None]}, "obj": Opaque(), "n": 3}
    assert redactor.scrub_value(fields) == {
        "error": REDACTED,
        "nested": {"list": [REDACTED, 1, None]},
        "obj": f"<conn {REDACTED}>",
        "n": 3,
    }


def _config(**extra: Any) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": "m",
                "deployments": [
                    {
                        "id": "openai-1",
                        "provider": "openai",
                        "model": "x",
                        "base_url": "http://127.0.0.1:9/v1",
                        "api_key": "os.environ/UPSTREAM_KEY",
                        "proxy": "http://squid:Pr0xyPassw0rd@127.0.0.1:3128",
                    },
                    {
                        "id": "gemini-1",
                        "provider": "gemini",
                        "model": "g",
                        "base_url": "https://user:Ur1Passw0rd@gemini.test/x?key=QueryKey12345&alt=sse",
                    },
                ],
            }
        ],
        "keys": [{"name": "k", "key": "os.environ/GATEWAY_KEY"}],
        "server": {"admin_key": "adm-Ky7Tq2Zp9Lw4"},
        "store": {"url": "postgresql://ledger:Db5Passw0rd@db.test/interlock"},
        **extra,
    }


def test_from_config_knows_every_secret_in_it() -> None:
    env = {"UPSTREAM_KEY": KEY, "GATEWAY_KEY": "gw-Lx8Rv3Nc6Bt1"}
    redactor = Redactor.from_config(parse_config(_config(), env=env))
    basic = base64.b64encode(b"squid:Pr0xyPassw0rd").decode()
    for secret in (
        KEY,  # a deployment's api_key
        "gw-Lx8Rv3Nc6Bt1",  # a key's key
        "adm-Ky7Tq2Zp9Lw4",  # server.admin_key
        "Pr0xyPassw0rd",  # a proxy's password ...
        basic,  # ... and the Proxy-Authorization value it makes
        "Ur1Passw0rd",  # a URL's password
        "QueryKey12345",  # a URL's ?key=
        "Db5Passw0rd",  # the store's URL
    ):
        assert redactor.scrub(f"<{secret}>") == f"<{REDACTED}>", secret
    assert redactor.scrub("squid sse ledger gemini.test") == "squid sse ledger gemini.test"


def test_from_config_knows_the_environment_proxy_passwords() -> None:
    env = {"UPSTREAM_KEY": KEY, "GATEWAY_KEY": "gw-Lx8Rv3Nc6Bt1"}
    config = parse_config(_config(), env=env)
    proxies = {"HTTPS_PROXY": "proxyuser:Env9Zq4Wm7x@proxy.test:3128", "no_proxy": "x"}
    redactor = Redactor.from_config(config, proxies)
    assert redactor.scrub("Env9Zq4Wm7x") == REDACTED
    assert redactor.scrub("proxyuser") == "proxyuser"  # a user name is no secret


def test_for_deployment_knows_what_that_deployment_sends() -> None:
    env = {"UPSTREAM_KEY": KEY, "GATEWAY_KEY": "gw-Lx8Rv3Nc6Bt1"}
    deployment = parse_config(_config(), env=env).models[0].deployments[0]
    redactor = Redactor.for_deployment(deployment, {"HTTPS_PROXY": "u:Env9Zq4Wm7x@p:1"})
    assert redactor.scrub(f"{KEY} Pr0xyPassw0rd") == f"{REDACTED} {REDACTED}"
    # The deployment's own proxy wins over the environment's, which it never uses.
    assert redactor.scrub("Env9Zq4Wm7x") == "Env9Zq4Wm7x"
