"""Webhooks: the URL guard, the signature, and delivery to real receivers on loopback.

Receivers are aiohttp apps (``tests.support.servers.FakeUpstream``) or, where
the wire itself matters (TLS, a receiver that never answers), hand-written
``LoopbackServer``s. Backoff sleeps go to a recorder: no test waits on them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import random
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import trustme
from aiohttp import web

from interlock.batch.webhooks import WebhookSender, check_webhook_url, sign, verify
from interlock.errors import InvalidRequest
from tests.support.loopback import LoopbackServer
from tests.support.servers import FakeUpstream

SECRET = b"whsec-test-5f2c8e0a9b7d4163"
NOW = 1_700_000_000
EVENT = {"type": "batch.completed", "data": {"id": "batch_123", "status": "completed"}}


# -- fakes -------------------------------------------------------------------------


class _Top(random.Random):
    """Jitter at its ceiling, so the backoff's growth and cap are exact."""

    def random(self) -> float:
        return 1.0


class _Bottom(random.Random):
    """No jitter at all: what is left of a delay is the receiver's Retry-After."""

    def random(self) -> float:
        return 0.0


@dataclass
class Sleeps:
    """Stands in for ``asyncio.sleep``: records the delay, returns at once."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@dataclass(frozen=True)
class Seen:
    method: str
    path_qs: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    client_port: int


class Receiver:
    """Answers each POST with the next scripted ``(status, headers)`` (then 200)
    and records what it was sent."""

    def __init__(self, *answers: int | tuple[int, dict[str, str]], body: bytes = b"thanks"):
        self._answers = [a if isinstance(a, tuple) else (a, {}) for a in answers]
        self._body = body
        self.requests: list[Seen] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(
            Seen(
                request.method,
                request.path_qs,
                {k.lower(): v for k, v in request.headers.items()},
                await request.read(),
                peer[1] if peer else 0,
            )
        )
        status, headers = self._answers.pop(0) if self._answers else (200, {})
        return web.Response(status=status, headers=headers, body=self._body)


class SilentReceiver(LoopbackServer):
    """Accepts, reads, never answers; notes when each connection arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.arrivals.append(time.monotonic())
        while await reader.read(65536):
            pass
        writer.close()


class TlsReceiver(LoopbackServer):
    """Answers each request 204 over TLS, keeping the request heads."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(context)
        self.heads: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.heads.append(head)
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


# -- fixtures ----------------------------------------------------------------------


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def make_sender(sleeps: Sleeps) -> AsyncIterator[Callable[..., WebhookSender]]:
    """Senders with a fixed clock, jitter at its ceiling and recorded sleeps;
    each closed at teardown."""
    made: list[WebhookSender] = []

    def make(**kwargs: Any) -> WebhookSender:
        options: dict[str, Any] = {"sleep": sleeps, "clock": lambda: NOW, "rng": _Top()}
        sender = WebhookSender(SECRET, **{**options, **kwargs})
        made.append(sender)
        return sender

    yield make
    for sender in made:
        await sender.aclose()


@pytest.fixture
def serve(fake_upstream: Callable[[web.Application], FakeUpstream]) -> Callable[[Receiver], str]:
    """Serve a receiver on loopback; its base URL."""

    def start(receiver: Receiver) -> str:
        return fake_upstream(receiver.app()).url

    return start


def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- delivery ----------------------------------------------------------------------


async def test_delivers_on_the_first_try_signed_so_verify_accepts_it(
    make_sender: Callable[..., WebhookSender], serve: Callable[[Receiver], str], sleeps: Sleeps
) -> None:
    receiver = Receiver()
    url = serve(receiver) + "/hooks/batch?tenant=7"

    assert await make_sender().deliver(url, EVENT, event_id="evt_1") is True

    [seen] = receiver.requests
    assert (seen.method, seen.path_qs) == ("POST", "/hooks/batch?tenant=7")
    assert seen.body == orjson.dumps(EVENT)
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["user-agent"] == "interlock-webhooks"
    assert seen.headers["interlock-webhook-id"] == "evt_1"
    assert verify(SECRET, seen.headers["interlock-signature"], seen.body, now=NOW + 10)
    assert sleeps.delays == []


async def test_500_then_503_then_200_is_delivered_on_the_third_attempt(
    make_sender: Callable[..., WebhookSender], serve: Callable[[Receiver], str], sleeps: Sleeps
) -> None:
    receiver = Receiver(500, 503)
    sender = make_sender(backoff_base_s=2.0, backoff_max_s=3.0)

    assert await sender.deliver(serve(receiver) + "/hook", EVENT, event_id="evt_2") is True

    assert len(receiver.requests) == 3
    assert {seen.headers["interlock-webhook-id"] for seen in receiver.requests} == {"evt_2"}
    for seen in receiver.requests:
        assert seen.body == orjson.dumps(EVENT)
        assert verify(SECRET, seen.headers["interlock-signature"], seen.body, now=NOW)
    assert sleeps.delays == [2.0, 3.0]  # grew from 2 s, then held at the 3 s cap


async def test_retry_after_is_honoured_up_to_the_cap(
    make_sender: Callable[..., WebhookSender], serve: Callable[[Receiver], str], sleeps: Sleeps
) -> None:
    receiver = Receiver((429, {"Retry-After": "5"}), (503, {"Retry-After": "999"}), 408)
    sender = make_sender(rng=_Bottom(), backoff_max_s=30.0)

    assert await sender.deliver(serve(receiver) + "/hook", EVENT, event_id="evt_3") is True

    assert len(receiver.requests) == 4
    assert sleeps.delays == [5.0, 30.0, 0.0]


@pytest.mark.parametrize("status", [400, 401, 404, 410, 301])
async def test_other_statuses_are_final_after_one_attempt(
    make_sender: Callable[..., WebhookSender],
    serve: Callable[[Receiver], str],
    sleeps: Sleeps,
    status: int,
) -> None:
    # A redirect is not followed either: it could point anywhere.
    receiver = Receiver((status, {"Location": "http://169.254.169.254/"}))

    assert await make_sender().deliver(serve(receiver) + "/h", EVENT, event_id="e") is False

    assert len(receiver.requests) == 1
    assert sleeps.delays == []


async def test_an_unreachable_receiver_fails_after_max_attempts_without_waiting(
    make_sender: Callable[..., WebhookSender], sleeps: Sleeps
) -> None:
    sender = make_sender(max_attempts=4, backoff_base_s=10.0, backoff_max_s=15.0)
    started = time.monotonic()

    delivered = await sender.deliver(f"http://127.0.0.1:{closed_port()}/h", EVENT, event_id="e")

    assert delivered is False
    assert sleeps.delays == [10.0, 15.0, 15.0]  # three waits between four attempts
    assert time.monotonic() - started < 5  # none of the 40 s was slept


async def test_each_attempt_at_a_silent_receiver_ends_within_timeout_s(
    make_sender: Callable[..., WebhookSender], sleeps: Sleeps
) -> None:
    sender = make_sender(max_attempts=3, timeout_s=0.5)
    async with SilentReceiver() as silent:
        started = time.monotonic()
        delivered = await sender.deliver(f"http://127.0.0.1:{silent.port}/h", EVENT, event_id="e")
        elapsed = time.monotonic() - started
        arrivals = silent.arrivals

    assert delivered is False
    assert len(arrivals) == 3  # a fresh connection per attempt: the stuck one is dropped
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert all(0.4 < gap < 1.0 for gap in gaps), gaps
    assert elapsed < 3 * 0.5 + 1.5
    assert len(sleeps.delays) == 2


async def test_delivers_over_tls_and_refuses_an_untrusted_certificate(
    make_sender: Callable[..., WebhookSender],
) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)

    async with TlsReceiver(server_context) as receiver:
        port = receiver.port
        url = f"https://127.0.0.1:{port}/hook"
        assert await make_sender(ssl_context=trusting).deliver(url, EVENT, event_id="e") is True
        # The system's CAs do not know the test's CA: no delivery, nothing sent.
        assert await make_sender(max_attempts=2).deliver(url, EVENT, event_id="e") is False

    [head] = receiver.heads
    assert head.startswith(b"POST /hook HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{port}\r\n".encode() in head


async def test_keeps_the_connection_for_the_next_event_until_aclose(
    make_sender: Callable[..., WebhookSender], serve: Callable[[Receiver], str]
) -> None:
    receiver = Receiver()
    url = serve(receiver) + "/hook"
    sender = make_sender()

    await sender.deliver(url, EVENT, event_id="a")
    await sender.deliver(url, EVENT, event_id="b")
    await sender.aclose()
    await sender.deliver(url, EVENT, event_id="c")

    first, second, third = (seen.client_port for seen in receiver.requests)
    assert first == second  # reused
    assert third != first  # aclose closed it


async def test_a_2xx_with_a_long_body_is_delivered_without_reading_it_all(
    make_sender: Callable[..., WebhookSender], serve: Callable[[Receiver], str]
) -> None:
    receiver = Receiver(202, body=b"x" * 5_000_000)
    url = serve(receiver) + "/hook"
    sender = make_sender()

    assert await sender.deliver(url, EVENT, event_id="a") is True
    assert await sender.deliver(url, EVENT, event_id="b") is True

    first, second = (seen.client_port for seen in receiver.requests)
    assert first != second  # closed mid-body rather than drained


async def test_failed_attempts_are_logged_without_the_secret_or_the_url(
    make_sender: Callable[..., WebhookSender],
    serve: Callable[[Receiver], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = Receiver(500, 502)
    url = serve(receiver) + "/hook?token=receiver-token-abc"

    with caplog.at_level(logging.WARNING, logger="interlock.batch.webhooks"):
        assert await make_sender(max_attempts=2).deliver(url, EVENT, event_id="evt_9") is False

    records = [r for r in caplog.records if r.name == "interlock.batch.webhooks"]
    assert [r.levelno for r in records] == [logging.WARNING, logging.WARNING]
    assert "HTTP 500" in records[0].getMessage() and "retrying" in records[0].getMessage()
    assert "HTTP 502" in records[1].getMessage() and "giving up" in records[1].getMessage()
    assert all("evt_9" in r.getMessage() for r in records)
    assert SECRET.decode() not in caplog.text
    assert "receiver-token-abc" not in caplog.text


async def test_an_event_id_that_would_split_the_header_is_refused_before_sending(
    make_sender: Callable[..., WebhookSender], serve: Callable[[Receiver], str]
) -> None:
    receiver = Receiver()
    with pytest.raises(ValueError):
        await make_sender().deliver(serve(receiver), EVENT, event_id="e\r\nx-evil: 1")
    assert receiver.requests == []


def test_backoff_grows_exponentially_under_full_jitter_and_is_capped() -> None:
    top = WebhookSender(SECRET, backoff_base_s=1.0, backoff_max_s=8.0, rng=_Top())
    assert [top.backoff(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert top.backoff(10_000) == 8.0  # no overflow however long it has been failing

    jittered = WebhookSender(SECRET, backoff_base_s=1.0, backoff_max_s=8.0, rng=random.Random(7))
    delays = [jittered.backoff(n) for n in range(1, 8) for _ in range(50)]
    assert all(0.0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 100  # spread out, not lock-step


# -- the signature -----------------------------------------------------------------


def test_sign_is_the_documented_hmac() -> None:
    body = b'{"id":"evt_1"}'
    expected = hmac.new(SECRET, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body, 1_700_000_000) == f"t=1700000000,v1={expected}"


def test_verify_accepts_its_own_signature_within_the_tolerance() -> None:
    header = sign(SECRET, b"{}", NOW)
    assert verify(SECRET, header, b"{}", now=NOW)
    assert verify(SECRET, header, b"{}", now=NOW + 300)
    assert verify(SECRET, header, b"{}", now=NOW - 300)  # a receiver's clock a little behind


def test_verify_accepts_any_matching_v1_and_ignores_unknown_fields() -> None:
    good = sign(SECRET, b"{}", NOW).split(",")[1]
    assert verify(SECRET, f"t={NOW},v1={'0' * 64},{good},v2=whatever", b"{}", now=NOW)


def test_verify_rejects_a_tampered_body() -> None:
    header = sign(SECRET, b'{"amount":1}', NOW)
    assert not verify(SECRET, header, b'{"amount":9}', now=NOW)


def test_verify_rejects_a_wrong_secret() -> None:
    header = sign(SECRET, b"{}", NOW)
    assert not verify(b"another-secret", header, b"{}", now=NOW)


@pytest.mark.parametrize("skew", [301, -301, 86_400])
def test_verify_rejects_a_stale_or_future_timestamp(skew: int) -> None:
    header = sign(SECRET, b"{}", NOW)
    assert not verify(SECRET, header, b"{}", now=NOW + skew)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        f"t={NOW}",  # no signature
        "v1=" + "0" * 64,  # no timestamp
        f"t=soon,v1={'0' * 64}",
        f"t=-{NOW},v1={'0' * 64}",
        f"t=\uff11\uff17,v1={'0' * 64}",  # full-width digits: isdigit() says yes
        f"t={NOW},t={NOW},v1={'0' * 64}",
        f"t={NOW},v1=é",
        f"t={NOW},v1",
        f"t={NOW}," + ",".join(["v1=" + "0" * 64] * 40),  # oversized
    ],
)
def test_verify_rejects_garbage_headers(header: str | None) -> None:
    assert not verify(SECRET, header, b"{}", now=NOW)


def test_verify_rejects_the_right_digest_under_a_malformed_header() -> None:
    digest = sign(SECRET, b"{}", NOW).split("v1=")[1]
    assert not verify(SECRET, f"t={NOW};v1={digest}", b"{}", now=NOW)


# -- where a webhook may go --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.example.com/done", ["hooks.example.com"]),
        ("http://HOOKS.Example.COM:8080/done?x=1", ["hooks.example.com"]),
        ("https://hooks.example.com/", [" Hooks.Example.com. "]),
        ("https://a.example.org/", ["*.example.org"]),
        ("https://a.b.example.org/", ["other.net", "*.example.org"]),
        ("http://127.0.0.1:9000/h", ["127.0.0.1"]),
        ("http://[::1]:9000/h", ["[::1]"]),
    ],
)
def test_check_webhook_url_allows(url: str, allowed: list[str]) -> None:
    assert check_webhook_url(url, allowed) == url


@pytest.mark.parametrize(
    ("url", "allowed", "says"),
    [
        ("https://evil.com/", ["hooks.example.com"], "host 'evil.com' is not allowed"),
        ("https://example.org/", ["*.example.org"], "is not allowed"),  # not the apex
        ("https://evilexample.org/", ["*.example.org"], "is not allowed"),
        ("https://hooks.example.com.evil.com/", ["hooks.example.com"], "is not allowed"),
        ("https://169.254.169.254/latest/meta-data", ["hooks.example.com"], "is not allowed"),
        ("ftp://hooks.example.com/", ["hooks.example.com"], "http or https"),
        ("file:///etc/passwd", ["hooks.example.com"], "http or https"),
        ("hooks.example.com/done", ["hooks.example.com"], "http or https"),
        ("https://user:pw@hooks.example.com/", ["hooks.example.com"], "credentials"),
        ("https://user@hooks.example.com/", ["hooks.example.com"], "credentials"),
        ("https://evil.com@hooks.example.com/", ["hooks.example.com"], "credentials"),
        ("https:///done", ["hooks.example.com"], "no host"),
        ("https://hooks.example.com:99999/", ["hooks.example.com"], "not a valid URL"),
        ("https://[::1/", ["::1"], "not a valid URL"),
        ("https://hooks.example.com/a b", ["hooks.example.com"], "spaces or control"),
        ("https://hooks.example.com/\r\nx: y", ["hooks.example.com"], "spaces or control"),
        ("https://hooks.example.com/é", ["hooks.example.com"], "ASCII"),
        ("https://hooks.example.com/" + "a" * 2100, ["hooks.example.com"], "2048"),
    ],
)
def test_check_webhook_url_refuses(url: str, allowed: list[str], says: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_webhook_url(url, allowed)
    assert refused.value.param == "webhook"
    assert says in refused.value.message


def test_check_webhook_url_with_an_empty_allow_list_says_webhooks_are_off() -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_webhook_url("https://hooks.example.com/", [])
    assert refused.value.message == (
        "webhooks are disabled on this gateway (batch.webhooks.allowed_hosts)"
    )
    assert refused.value.param == "webhook"


@pytest.mark.parametrize("url", [None, 123, b"https://hooks.example.com/", {"url": "x"}])
def test_check_webhook_url_refuses_what_is_not_a_string(url: object) -> None:
    with pytest.raises(InvalidRequest, match="must be a URL string"):
        check_webhook_url(url, ["hooks.example.com"])
