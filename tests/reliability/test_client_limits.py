"""The HTTP server under hostile clients (api/protocol.py): a real
``interlock serve``, raw sockets for what no HTTP client would send.

Time bounds are generous (``BOUND_S``, over 10x the configured timeouts):
on a busy two-core machine the tests must not depend on how fast the
server is, only on it getting there.
"""

from __future__ import annotations

import json
import re
import selectors
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_KEY, simulator_config
from tests.support.servers import GatewayProcess

BOUND_S = 20.0
TIMEOUT_S = 1.0  # the impatient gateway's header and body timeouts
MIB = 1024 * 1024


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def _start(tmp_path_factory: pytest.TempPathFactory, server: dict[str, Any]) -> GatewayProcess:
    config = simulator_config()
    config["server"] = server
    tmp_path = tmp_path_factory.mktemp("gateway")
    return GatewayProcess(config, tmp_path, env={"TEST_KEY": TEST_KEY})


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """Small heads, the default (10 s) timeouts."""
    gateway = _start(tmp_path_factory, {"max_header_bytes": 4096, "max_headers": 20})
    yield gateway
    gateway.close()


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The default head limits, short timeouts."""
    gateway = _start(tmp_path_factory, {"header_timeout_s": TIMEOUT_S, "body_timeout_s": TIMEOUT_S})
    yield gateway
    gateway.close()


def _connect(gateway: GatewayProcess) -> socket.socket:
    port = int(gateway.base_url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=BOUND_S)


def _send(sock: socket.socket, data: bytes) -> None:
    """Send what the server takes: it may refuse (and close) before the rest."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def _read_to_close(sock: socket.socket) -> bytes:
    """Everything until the server closes (a timeout fails the test)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:  # it closed with our unread bytes: still a close
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _exchange(gateway: GatewayProcess, data: bytes) -> bytes:
    with _connect(gateway) as sock:
        _send(sock, data)
        return _read_to_close(sock)


def _parse(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    length = int(headers["content-length"])
    assert len(body) == length, raw
    return Answer(int(status_line.split()[1]), headers, json.loads(body))


def _error(raw: bytes, status: int) -> dict[str, Any]:
    """The OpenAI-shaped error in ``raw``, a whole response with ``status``."""
    answer = _parse(raw)
    assert answer.status == status, raw
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["connection"] == "close"
    error: dict[str, Any] = answer.body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" or status >= 429
    return error


def _read_response(sock: socket.socket) -> bytes:
    """One response off a kept-alive connection (framed by content-length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    match = re.search(rb"content-length: (\d+)", data, re.IGNORECASE)
    assert match is not None, data
    end = data.index(b"\r\n\r\n") + 4 + int(match.group(1))
    while len(data) < end:
        data += sock.recv(65536)
    return data


def _peak_rss(gateway: GatewayProcess) -> int:
    """The process's peak resident memory so far, in bytes (VmHWM)."""
    with open(f"/proc/{gateway.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _log_records(gateway: GatewayProcess, until: Callable[[dict[str, Any]], bool]) -> list[Any]:
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        for line in gateway.drain_stderr():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        if any(until(r) for r in records):
            return records
        time.sleep(0.02)
    raise AssertionError(f"no matching log line in {records}")


HEALTH = b"GET /health/live HTTP/1.1\r\nHost: x\r\n"


# The request head


def test_a_head_over_the_byte_limit_is_431(strict: GatewayProcess) -> None:
    head = HEALTH + b"X-Big: " + b"a" * 8000 + b"\r\n\r\n"
    error = _error(_exchange(strict, head), 431)
    assert error["code"] == "request_header_fields_too_large"
    assert "4096 bytes" in error["message"]


def test_a_long_url_counts_towards_the_head(strict: GatewayProcess) -> None:
    head = b"GET /health/live?" + b"q" * 8000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    _error(_exchange(strict, head), 431)


def test_too_many_headers_is_431(strict: GatewayProcess) -> None:
    head = HEALTH + b"".join(b"X-H%d: v\r\n" % i for i in range(30)) + b"\r\n"
    error = _error(_exchange(strict, head), 431)
    assert "20 headers" in error["message"]


def test_headers_are_counted_before_the_head_ends(strict: GatewayProcess) -> None:
    # No end of head: a 431 at once, not a 408 ten seconds later.
    head = HEALTH + b"".join(b"X-H%d: v\r\n" % i for i in range(30))
    _error(_exchange(strict, head), 431)


def test_a_head_at_the_limit_is_served(strict: GatewayProcess) -> None:
    head = HEALTH + b"Connection: close\r\nX-Pad: "
    head += b"p" * (4096 - len(head) - 4) + b"\r\n\r\n"
    assert len(head) == 4096
    assert _parse(_exchange(strict, head)).status == 200


@pytest.mark.parametrize(
    "head",
    [
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET /health/live HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n",
        b"GET /health/live HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n",
        b"GET /health/\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # TLS to a plain-HTTP port
    ],
    ids=["negative-content-length", "bare-lf", "bare-cr", "non-ascii-path", "bad-url", "tls"],
)
def test_a_malformed_request_is_400_in_openai_shape(strict: GatewayProcess, head: bytes) -> None:
    error = _error(_exchange(strict, head), 400)
    assert error["code"] == "invalid_http"
    assert error["message"].startswith("Malformed HTTP request")


def test_a_body_read_with_its_head_is_not_counted_as_head(strict: GatewayProcess) -> None:
    # Head and a body five times the head limit, in one write.
    chat = {"model": "sim", "messages": [{"role": "user", "content": "x" * 20_000}]}
    body = json.dumps(chat).encode()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer " + TEST_KEY.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    answer = _parse(_exchange(strict, head + body))
    assert answer.status == 200 and answer.body["object"] == "chat.completion"


def test_pipelined_requests_are_each_answered(strict: GatewayProcess) -> None:
    raw = _exchange(strict, HEALTH + b"\r\n" + HEALTH + b"Connection: close\r\n\r\n")
    assert raw.count(b"HTTP/1.1 200 OK") == 2


def test_huge_unfinished_headers_do_not_pile_up_in_memory(impatient: GatewayProcess) -> None:
    # Before the limit, each of these held its whole header (~125 MB for 128 MB).
    before = _peak_rss(impatient)
    huge = HEALTH + b"X-Big: " + b"a" * (32 * MIB)  # never ends
    for _ in range(4):
        _error(_exchange(impatient, huge), 431)
    grew = _peak_rss(impatient) - before
    print(f"figure: 4 unfinished 32 MiB headers grew peak RSS by {grew / MIB:.1f} MiB")
    assert grew < 64 * MIB


# Slow clients


def test_a_connection_that_sends_nothing_is_closed_with_408(impatient: GatewayProcess) -> None:
    with _connect(impatient) as sock:
        error = _error(_read_to_close(sock), 408)
    assert error["code"] == "request_timeout"
    assert "head" in error["message"]


def test_a_stalled_head_is_cut_after_the_header_timeout(impatient: GatewayProcess) -> None:
    with _connect(impatient) as sock:
        _send(sock, HEALTH + b"X-Half: ")
        started = time.monotonic()
        error = _error(_read_to_close(sock), 408)
    assert "head did not arrive within 1 s" in error["message"]
    assert time.monotonic() - started < BOUND_S


def test_a_kept_alive_connection_has_the_header_timeout_too(impatient: GatewayProcess) -> None:
    with _connect(impatient) as sock:
        _send(sock, HEALTH + b"\r\n")
        assert _parse(_read_response(sock)).status == 200
        _send(sock, HEALTH)  # the next request's head, unfinished
        _error(_read_to_close(sock), 408)


def test_a_stalled_body_is_cut_after_the_body_timeout(impatient: GatewayProcess) -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: stalled-body\r\n"
        b"Authorization: Bearer " + TEST_KEY.encode() + b"\r\nContent-Length: 1000\r\n\r\n"
    )
    with _connect(impatient) as sock:
        _send(sock, head + b'{"model": ')
        error = _error(_read_to_close(sock), 408)
    assert "body did not arrive within 1 s" in error["message"]
    # The app saw the client leave, not an error of its own.
    records = _log_records(impatient, lambda r: r.get("request_id") == "stalled-body")
    access = [r for r in records if r.get("request_id") == "stalled-body"]
    assert access[0]["status"] == 499
    assert not [r for r in records if r.get("level") == "error"]


def test_stalled_clients_hold_neither_sockets_nor_memory_for_long(
    impatient: GatewayProcess,
) -> None:
    before = _peak_rss(impatient)
    partial = HEALTH + b"X-Pad: " + b"p" * (60 * 1024)  # just under the 64 KiB head limit
    socks = [_connect(impatient) for _ in range(200)]
    try:
        with selectors.DefaultSelector() as selector:
            for sock in socks:
                _send(sock, partial)
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ, bytearray())
            deadline = time.monotonic() + BOUND_S
            open_ = len(socks)
            while open_ and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=1.0):
                    try:
                        chunk = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    except ConnectionResetError:  # closed with bytes of ours unread
                        chunk = b""
                    key.data.extend(chunk)
                    if not chunk:
                        _error(bytes(key.data), 408)
                        selector.unregister(key.fileobj)
                        open_ -= 1
        assert open_ == 0, f"{open_} stalled connections still open after {BOUND_S} s"
    finally:
        for sock in socks:
            sock.close()
    # 200 heads of 60 KiB are 12 MB; the bound leaves room for the parser's copies.
    grew = _peak_rss(impatient) - before
    print(f"figure: 200 stalled 60 KiB heads: all closed (408), peak RSS +{grew / MIB:.1f} MiB")
    assert grew < 100 * MIB


def test_health_is_answered_while_slow_clients_hang(strict: GatewayProcess) -> None:
    socks = [_connect(strict) for _ in range(200)]
    try:
        for sock in socks:
            _send(sock, HEALTH + b"X-Half: ")
        response = httpx.get(strict.base_url + "/health/live", timeout=BOUND_S)
        assert response.json() == {"status": "ok"}
    finally:
        for sock in socks:
            sock.close()


# Connection caps


def test_a_connection_over_the_global_cap_is_answered_503(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    config = simulator_config()
    config["server"] = {"max_connections": 4}
    gateway = start_gateway(config)
    held = [_connect(gateway) for _ in range(4)]
    try:
        for sock in held:  # each answered: each is open on the server's side
            _send(sock, HEALTH + b"\r\n")
            assert _parse(_read_response(sock)).status == 200
            _send(sock, HEALTH)  # and held open by a next head, for 10 s
        raw = _exchange(gateway, HEALTH + b"\r\n")
        error = _error(raw, 503)
        assert error["code"] == "overloaded"
        assert _parse(raw).headers["retry-after"] == "1"
    finally:
        for sock in held:
            sock.close()
    # Their places are free again once the server has seen them close.
    deadline = time.monotonic() + BOUND_S
    while _parse(_exchange(gateway, HEALTH + b"Connection: close\r\n\r\n")).status != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_connection_over_the_per_client_cap_is_answered_429(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    config = simulator_config()
    config["server"] = {"max_connections_per_client": 3}
    gateway = start_gateway(config)
    held = [_connect(gateway) for _ in range(3)]
    try:
        for sock in held:
            _send(sock, HEALTH + b"\r\n")
            assert _parse(_read_response(sock)).status == 200
            _send(sock, HEALTH)
        error = _error(_exchange(gateway, HEALTH + b"\r\n"), 429)
        assert error["code"] == "too_many_connections"
    finally:
        for sock in held:
            sock.close()


def test_the_defaults_serve_hundreds_of_connections_from_one_address(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gateway = start_gateway(simulator_config())
    socks = [_connect(gateway) for _ in range(300)]
    try:
        for sock in socks:
            _send(sock, HEALTH + b"\r\n")
        assert all(_parse(_read_response(sock)).status == 200 for sock in socks)
    finally:
        for sock in socks:
            sock.close()
