"""Per-deployment TLS settings against real TLS servers on loopback, with a CA
made for the test. Each scenario runs on asyncio's loop and on uvloop."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from interlock.config import DeploymentConfig, TimeoutConfig, TlsConfig
from interlock.errors import UpstreamConnectionError
from interlock.providers.http import UpstreamClient
from interlock.providers.openai_compat import OpenAICompatibleProvider
from tests.providers.conftest import Pki
from tests.support.raw_upstream import RawUpstream

Run = Callable[..., Any]


async def call(tls: TlsConfig, url: str) -> Any:
    client = UpstreamClient("d", TimeoutConfig(connect_s=10), 2, tls=tls)
    await client.start()
    try:
        return await client.request_json("POST", url, {})
    finally:
        await client.aclose()


def test_a_private_ca_from_ca_file_instead_of_the_system_store(on_each_loop: Run, pki: Pki) -> None:
    async def scenario() -> None:
        async with RawUpstream(ssl_context=pki.server_context("localhost")) as upstream:
            url = upstream.url("localhost")
            assert await call(TlsConfig(ca_file=pki.ca_file), url) == {"ok": True}
            with pytest.raises(UpstreamConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                await call(TlsConfig(), url)  # the system's CAs do not know the test's CA

    on_each_loop(scenario())


def test_the_host_name_is_checked_against_the_certificate(on_each_loop: Run, pki: Pki) -> None:
    async def scenario() -> None:
        async with RawUpstream(ssl_context=pki.server_context("other.test")) as upstream:
            with pytest.raises(UpstreamConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                await call(TlsConfig(ca_file=pki.ca_file), upstream.url("localhost"))

    on_each_loop(scenario())


def test_verify_false_accepts_any_certificate(on_each_loop: Run, pki: Pki) -> None:
    async def scenario() -> None:
        # Unknown CA and a name that does not match: both go unchecked.
        async with RawUpstream(ssl_context=pki.server_context("other.test")) as upstream:
            assert await call(TlsConfig(verify=False), upstream.url("localhost")) == {"ok": True}

    on_each_loop(scenario())


def test_a_client_certificate_for_an_upstream_that_requires_one(
    on_each_loop: Run, pki: Pki
) -> None:
    async def scenario() -> None:
        server = pki.server_context("localhost", client_certs=True)
        async with RawUpstream(ssl_context=server) as upstream:
            url = upstream.url("localhost")
            mutual = TlsConfig(
                ca_file=pki.ca_file, client_cert=pki.client_cert, client_key=pki.client_key
            )
            assert await call(mutual, url) == {"ok": True}
            names = dict(upstream.client_certs[0]["subjectAltName"])
            assert names == {"email": "gateway@interlock.test"}
            # Without one, TLS 1.3 finishes the client's handshake first; the
            # server's alert then breaks the connection before any reply.
            with pytest.raises(UpstreamConnectionError, match="upstream"):
                await call(TlsConfig(ca_file=pki.ca_file), url)
            assert len(upstream.heads) == 1

    on_each_loop(scenario())


def test_verify_false_is_logged_once_when_the_adapter_is_built(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    deployment = DeploymentConfig(
        id="insecure-1",
        provider="openai",
        model="m",
        base_url="https://127.0.0.1:9/v1",
        tls=TlsConfig(verify=False),
    )
    with caplog.at_level(logging.WARNING, logger="interlock.upstream"):
        OpenAICompatibleProvider(deployment)
    warnings = [r.getMessage() for r in caplog.records if r.name == "interlock.upstream"]
    assert len(warnings) == 1 and "insecure-1: tls.verify is false" in warnings[0]
