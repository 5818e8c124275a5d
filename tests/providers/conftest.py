"""Fixtures for the upstream client's TLS and proxy tests."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvloop


@dataclass
class Pki:
    """A private CA made for the test, with its PEM files on disk."""

    ca: trustme.CA
    ca_file: str
    client_cert: str  # a client certificate (mutual TLS) and, apart, its key
    client_key: str

    def server_context(self, *names: str, client_certs: bool = False) -> ssl.SSLContext:
        """A server's context with a certificate for ``names``; with
        ``client_certs`` it refuses clients without one from this CA."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*names).configure_cert(context)
        if client_certs:
            context.verify_mode = ssl.CERT_REQUIRED
            self.ca.configure_trust(context)
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client = ca.issue_cert("gateway@interlock.test")
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    return Pki(
        ca, str(tmp_path / "ca.pem"), str(tmp_path / "client.pem"), str(tmp_path / "client.key")
    )


@pytest.fixture(params=["asyncio", "uvloop"])
def on_each_loop(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """Runs a scenario on asyncio's loop and on uvloop (what ``interlock serve``
    uses): TLS over a tunnel goes through each loop's own ``start_tls``."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    async def then_let_transports_close(coro: Coroutine[Any, Any, Any]) -> Any:
        try:
            return await asyncio.wait_for(coro, 30)
        finally:
            for _ in range(5):  # aborted TLS transports close over a few loop turns
                await asyncio.sleep(0)

    def runner(coro: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(then_let_transports_close(coro))

    return runner
