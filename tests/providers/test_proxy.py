"""The upstream client through a real HTTP proxy on loopback (tests/support/proxy.py).

The upstream's name, ``upstream.test``, is one only the proxy resolves, and
its certificate is for that name alone: a request that arrives proves the
client let the proxy resolve it and checked TLS against the upstream's name,
not the proxy's. Each scenario runs on asyncio's loop and on uvloop.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import pytest

from interlock.config import DeploymentConfig, ProxyURL, TimeoutConfig, TlsConfig
from interlock.errors import UpstreamConnectionError, UpstreamTimeout
from interlock.providers.base import CallContext
from interlock.providers.http import UpstreamClient
from interlock.providers.openai_compat import OpenAICompatibleProvider
from interlock.providers.proxy_rules import ProxyRules
from tests.providers.conftest import Pki
from tests.support.proxy import ConnectProxy
from tests.support.raw_upstream import RawUpstream

Run = Callable[..., Any]
NAME = "upstream.test"
HOSTS = {NAME: "127.0.0.1"}


def client_for(proxies: ProxyRules, pki: Pki | None = None) -> UpstreamClient:
    tls = TlsConfig(ca_file=pki.ca_file) if pki is not None else None
    return UpstreamClient("d", TimeoutConfig(connect_s=10), 4, tls=tls, proxies=proxies)


async def call_twice(client: UpstreamClient, url: str) -> list[Any]:
    await client.start()
    try:
        return [await client.request_json("POST", url, {"n": n}) for n in range(2)]
    finally:
        await client.aclose()


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_https_upstream_through_a_connect_tunnel(on_each_loop: Run, pki: Pki) -> None:
    async def scenario() -> None:
        async with (
            RawUpstream(ssl_context=pki.server_context(NAME)) as upstream,
            ConnectProxy(hosts=HOSTS) as proxy,
        ):
            client = client_for(ProxyRules(ProxyURL.parse(proxy.url)), pki)
            assert await call_twice(client, upstream.url(NAME)) == [{"ok": True}] * 2
            assert proxy.connects == [f"{NAME}:{upstream.port}"]
            assert upstream.heads[0].startswith(b"POST /v1/x HTTP/1.1\r\n")
            assert f"host: {NAME}:{upstream.port}".encode() in upstream.heads[0]
            assert b"proxy-authorization" not in upstream.heads[0].lower()

    on_each_loop(scenario())


def test_pooled_connections_through_a_tunnel_are_reused(on_each_loop: Run, pki: Pki) -> None:
    async def scenario() -> None:
        async with (
            RawUpstream(ssl_context=pki.server_context(NAME)) as upstream,
            ConnectProxy(hosts=HOSTS) as proxy,
        ):
            await call_twice(
                client_for(ProxyRules(ProxyURL.parse(proxy.url)), pki), upstream.url(NAME)
            )
            assert (proxy.tunnels, upstream.connections, len(upstream.heads)) == (1, 1, 2)

    on_each_loop(scenario())


def test_http_upstream_through_the_proxy_in_absolute_form(on_each_loop: Run) -> None:
    async def scenario() -> None:
        async with RawUpstream() as upstream, ConnectProxy(hosts=HOSTS) as proxy:
            url = upstream.url(NAME)
            client = client_for(ProxyRules(ProxyURL.parse(proxy.url_with("u", "p"))))
            assert await call_twice(client, url) == [{"ok": True}] * 2
            assert proxy.forwarded == [url, url] and proxy.connects == []
            assert proxy.authorizations == ["Basic dTpw"] * 2  # base64("u:p"), on every request
            assert upstream.connections == 1  # kept alive through the proxy
            assert upstream.heads[1].startswith(b"POST /v1/x HTTP/1.1\r\n")
            assert b"proxy-authorization" not in upstream.heads[1].lower()

    on_each_loop(scenario())


def test_proxy_credentials_from_the_url(on_each_loop: Run, pki: Pki) -> None:
    """Percent-encoded userinfo becomes Basic credentials; a 407 is a connect
    error naming the proxy, never its credentials."""

    async def scenario() -> None:
        async with (
            RawUpstream(ssl_context=pki.server_context(NAME)) as upstream,
            ConnectProxy(credentials=("ann", "p@ss:word"), hosts=HOSTS) as proxy,
        ):
            right = proxy.url_with("ann", "p%40ss%3Aword")
            result = await call_twice(
                client_for(ProxyRules(ProxyURL.parse(right)), pki), upstream.url(NAME)
            )
            assert result == [{"ok": True}] * 2
            for url, hint in [
                (proxy.url, "it wants credentials"),
                (proxy.url_with("ann", "wrong-secret"), "did not accept the credentials"),
            ]:
                client = client_for(ProxyRules(ProxyURL.parse(url)), pki)
                with pytest.raises(UpstreamConnectionError) as info:
                    await call_twice(client, upstream.url(NAME))
                message = str(info.value)
                assert f"proxy {proxy.url} refused CONNECT {NAME}:{upstream.port}: 407" in message
                assert hint in message and "wrong-secret" not in message
            assert proxy.tunnels == 1

    on_each_loop(scenario())


def test_http_through_a_proxy_that_wants_credentials(on_each_loop: Run) -> None:
    """Forwarded (absolute-form) requests get the proxy's 407 as a response:
    a connection error, not the upstream's status to pass on."""

    async def scenario() -> None:
        async with (
            RawUpstream() as upstream,
            ConnectProxy(credentials=("ann", "pw"), hosts=HOSTS) as proxy,
        ):
            with pytest.raises(UpstreamConnectionError, match=f"proxy {proxy.url} refused .* 407"):
                await call_twice(
                    client_for(ProxyRules(ProxyURL.parse(proxy.url))), upstream.url(NAME)
                )
            assert upstream.heads == []

    on_each_loop(scenario())


def test_a_refusing_or_unreachable_proxy_is_a_connect_error(on_each_loop: Run, pki: Pki) -> None:
    async def scenario() -> None:
        async with ConnectProxy(refuse=403) as proxy:
            client = client_for(ProxyRules(ProxyURL.parse(proxy.url)), pki)
            with pytest.raises(UpstreamConnectionError) as info:
                await call_twice(client, f"https://{NAME}/v1/x")
            assert f"proxy {proxy.url} refused CONNECT {NAME}:443: 403 Refused by policy" in str(
                info.value
            )
        down = f"http://zelda:secret@127.0.0.1:{closed_port()}"
        for url in (f"https://{NAME}/v1/x", f"http://{NAME}/v1/x"):
            client = client_for(ProxyRules(ProxyURL.parse(down)), pki)
            with pytest.raises(UpstreamConnectionError) as info:
                await call_twice(client, url)
            message = str(info.value)
            assert "cannot connect to proxy http://127.0.0.1:" in message
            assert "secret" not in message and "zelda" not in message

    on_each_loop(scenario())


def test_connect_s_bounds_reaching_the_proxy_and_the_connect(on_each_loop: Run) -> None:
    async def scenario() -> None:
        async with ConnectProxy(stall=True) as proxy:
            client = UpstreamClient(
                "d",
                TimeoutConfig(connect_s=0.2),
                4,
                proxies=ProxyRules(ProxyURL.parse(proxy.url)),
            )
            with pytest.raises(UpstreamTimeout) as info:
                await call_twice(client, f"https://{NAME}/v1/x")
            assert f"could not connect to {NAME}:443 through proxy {proxy.url} in 0.2 s" in str(
                info.value
            )
            assert proxy.connects == [f"{NAME}:443"]

    on_each_loop(scenario())


def test_proxy_from_the_environment_and_no_proxy(
    on_each_loop: Run, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        async with (
            RawUpstream(ssl_context=pki.server_context("127.0.0.1")) as upstream,
            ConnectProxy() as proxy,
        ):
            monkeypatch.setenv("HTTPS_PROXY", proxy.url)
            monkeypatch.setenv("NO_PROXY", "internal.example, 10.0.0.0/8")
            await call_twice(client_for(ProxyRules(env=dict(os.environ)), pki), upstream.url())
            assert proxy.connects == [f"127.0.0.1:{upstream.port}"]
            monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")  # lower case wins
            await call_twice(client_for(ProxyRules(env=dict(os.environ)), pki), upstream.url())
            assert len(proxy.connects) == 1 and upstream.connections == 2

    on_each_loop(scenario())


def test_a_deployment_opts_out_of_the_environments_proxy(
    on_each_loop: Run, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        async with (
            RawUpstream(COMPLETION, ssl_context=pki.server_context("127.0.0.1")) as upstream,
            ConnectProxy() as proxy,
        ):
            monkeypatch.setenv("https_proxy", proxy.url)
            deployment = openai_deployment(upstream, pki, trust_env=False)
            provider = OpenAICompatibleProvider(deployment)
            await provider.start()
            try:
                await provider.chat(BODY, CTX)
            finally:
                await provider.aclose()
            assert proxy.connects == [] and upstream.connections == 1

    on_each_loop(scenario())


def test_openai_adapter_through_an_authenticating_proxy_to_a_private_ca(
    on_each_loop: Run, pki: Pki
) -> None:
    """Config to provider to client: the deployment's tls and proxy settings."""

    async def scenario() -> None:
        async with (
            RawUpstream(COMPLETION, ssl_context=pki.server_context(NAME)) as upstream,
            ConnectProxy(credentials=("gw", "s3cret"), hosts=HOSTS) as proxy,
        ):
            deployment = openai_deployment(
                upstream, pki, host=NAME, proxy=proxy.url_with("gw", "s3cret")
            )
            assert "s3cret" not in repr(deployment)
            provider = OpenAICompatibleProvider(deployment)
            await provider.start()
            try:
                for _ in range(2):
                    assert (await provider.chat(BODY, CTX))["choices"][0]["message"][
                        "content"
                    ] == "yo"
            finally:
                await provider.aclose()
            assert proxy.tunnels == 1 and len(upstream.heads) == 2
            assert upstream.heads[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")

    on_each_loop(scenario())


# -- helpers for the adapter tests --------------------------------------------------

CTX = CallContext(request_id="req_1", public_model="public")
BODY = {"model": "public", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = (
    b'{"id": "c", "object": "chat.completion", "created": 1, "model": "up", "choices": '
    b'[{"index": 0, "message": {"role": "assistant", "content": "yo"}, "finish_reason": "stop"}]}'
)


def openai_deployment(
    upstream: RawUpstream, pki: Pki, host: str = "127.0.0.1", **settings: Any
) -> DeploymentConfig:
    return DeploymentConfig.model_validate(
        {
            "id": "up-1",
            "provider": "openai",
            "model": "upstream-model",
            "base_url": upstream.url(host, "/v1"),
            "tls": {"ca_file": pki.ca_file},
            **settings,
        }
    )
