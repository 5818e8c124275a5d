"""Which proxy an origin goes through: the policy alone, with plain data."""

from __future__ import annotations

import pytest

from interlock.config import ConfigError, DeploymentConfig, ProxyURL
from interlock.providers.h1 import split_url
from interlock.providers.openai_compat import OpenAICompatibleProvider
from interlock.providers.proxy_rules import NoProxy, ProxyRules


def chosen(rules: ProxyRules, url: str) -> str | None:
    proxy = rules.choose(split_url(url)[0])
    return None if proxy is None else str(proxy)


def test_the_scheme_picks_the_variable_and_lower_case_wins() -> None:
    env = {"HTTPS_PROXY": "big:3128", "https_proxy": "small:3128", "HTTP_PROXY": "plain:8080"}
    rules = ProxyRules(env=env)
    assert chosen(rules, "https://api.example.com/v1") == "http://small:3128"
    assert chosen(rules, "http://api.example.com/v1") == "http://plain:8080"
    # An empty lower-case variable switches off the inherited upper-case one.
    assert chosen(ProxyRules(env={**env, "http_proxy": ""}), "http://api.example.com") is None
    assert chosen(ProxyRules(env={}), "https://api.example.com") is None


def test_the_deployments_own_proxy_wins_and_trust_env_false_reads_nothing() -> None:
    env = {"HTTPS_PROXY": "http://from-env:3128", "NO_PROXY": "*"}
    mine = ProxyURL.parse("http://mine:3128")
    assert chosen(ProxyRules(mine, env), "https://api.example.com") == "http://mine:3128"
    deployment = DeploymentConfig(
        id="d", provider="openai", model="m", base_url="https://x/v1", trust_env=False
    )
    assert chosen(ProxyRules.for_deployment(deployment, env), "https://api.example.com") is None


@pytest.mark.parametrize(
    ("no_proxy", "url", "direct"),
    [
        ("*", "https://anything.example:8443", True),
        ("example.com", "https://example.com", True),
        ("example.com", "https://api.EXAMPLE.com", True),
        ("example.com", "https://notexample.com", False),
        ("example.com", "https://example.com.evil.test", False),
        (".example.com", "https://example.com", True),  # curl: a leading dot is ignored
        (".example.com", "https://a.b.example.com", True),
        ("*.example.com", "https://a.example.com", True),
        (" other.test , example.com ", "https://example.com", True),
        ("example.com:8443", "https://example.com:8443", True),
        ("example.com:8443", "https://example.com", False),
        ("10.1.2.3", "http://10.1.2.3:8000", True),
        ("10.1.2.3:8000", "http://10.1.2.3:9000", False),
        ("10.0.0.0/8", "http://10.200.0.7:8000", True),
        ("10.0.0.0/8", "http://11.0.0.1", False),
        ("::1", "http://[::1]:8000", True),
        ("[::1]:8000", "http://[::1]:8000", True),
        ("fd00::/8", "https://[fd12::5]", True),
        ("10.0.0.0/8", "https://ten.example", False),  # names are not resolved
        ("example.com", "https://93.184.215.14", False),
        ("localhost", "http://127.0.0.1", False),  # nor are loopback names implied
        ("", "https://example.com", False),
    ],
)
def test_no_proxy_forms(no_proxy: str, url: str, direct: bool) -> None:
    origin = split_url(url)[0]
    assert NoProxy(no_proxy).matches(origin.host, origin.port) is direct
    env = {"https_proxy": "proxy:3128", "http_proxy": "proxy:3128", "no_proxy": no_proxy}
    assert (chosen(ProxyRules(env=env), url) is None) is direct


def test_an_unusable_proxy_variable_names_the_variable_not_the_password() -> None:
    with pytest.raises(ValueError, match="HTTPS_PROXY: only http:// proxies") as info:
        ProxyRules(env={"HTTPS_PROXY": "socks5://ann:hunter2@proxy:1080"})
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown", "credentials"),
    [
        ("proxy.corp:3128", "http://proxy.corp:3128", ("", "")),
        ("http://proxy.corp", "http://proxy.corp:80", ("", "")),
        ("HTTP://ann:p%40ss%3A1@Proxy.Corp:3128/", "http://proxy.corp:3128", ("ann", "p@ss:1")),
        ("http://[fd00::1]:3128", "http://[fd00::1]:3128", ("", "")),
    ],
)
def test_proxy_urls(url: str, shown: str, credentials: tuple[str, str]) -> None:
    proxy = ProxyURL.parse(url)
    assert (str(proxy), (proxy.username, proxy.password)) == (shown, credentials)
    assert "p@ss" not in repr(proxy)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("", "empty"),
        ("https://ann:hunter2@proxy:443", "https:// proxies"),
        ("socks5h://proxy:1080", "only http://"),
        ("http://:3128", "no host"),
        ("http://proxy:3128/path", "no path"),
        ("http://ann:hunter2@proxy:99999", "port"),
        ("http://proxy:0", "port"),
    ],
)
def test_bad_proxy_urls(url: str, error: str) -> None:
    with pytest.raises(ValueError, match=error) as info:
        ProxyURL.parse(url)
    assert "hunter2" not in str(info.value)


def test_an_unusable_proxy_variable_stops_the_adapter_being_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5://proxy:1080")
    deployment = DeploymentConfig(id="d-1", provider="openai", model="m", base_url="https://x/v1")
    with pytest.raises(ConfigError, match="deployment d-1: environment variable HTTPS_PROXY"):
        OpenAICompatibleProvider(deployment)
    OpenAICompatibleProvider(deployment.model_copy(update={"trust_env": False}))  # not read
