"""Issue 13's probe as a test: generated malformed requests on every route.

A seeded generator (the same requests on every run) takes a valid request
for each route and breaks it: fields removed, retyped, enlarged, nested;
unknown fields; JSON cut short or not JSON at all; wrong query parameters
and path segments. Whatever it sends, the gateway answers without a 5xx,
in OpenAI's error shape when it refuses, within a second, and stays live.
Against a gateway process with the bundled simulator models and the admin
API on, as a user runs it.

A second seeded generator breaks the request head instead, as raw bytes on
a socket (HTTP clients normalise or refuse most of it): content-type,
content-length and chunked framing, bytes no header may hold, heads over the
server's limits, authorization, x-request-id and accept-encoding oddities,
the method, version and request target. The same promises hold, and the
connection is sane after the answer: what the server made of any bytes left
over, and a request of ours, are answered cleanly too.
"""

from __future__ import annotations

import random
import re
import socket
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
    Route("POST", "/api/v1/search", {"query": "how fast does light travel", "num_results": 3}),
    Route("GET", "/api/v1/search/status/search_none", None),
    Route("POST", "/v1/files", {"purpose": "batch"}),  # a JSON body: never the multipart it needs
    Route("GET", "/v1/files", None),
    Route("GET", "/v1/files/file-none/content", None),
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


def _gateway_config() -> dict[str, Any]:
    return {
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


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(_gateway_config(), tmp_path_factory.mktemp("malformed"))
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
    print(f"figure: malformed bodies: slowest answer {slowest * 1000:.0f} ms")
    assert slowest < WITHIN_S


# -- Malformed heads: raw bytes on a socket --------------------------------------

HEAD_SEED = 1313
HEAD_PER_ROUTE = 40
HEAD_TIMEOUT_S = 0.3  # the gateway's header and body timeouts: a lying length ends in 408
MAX_HEADER_BYTES = 8192
MAX_HEADERS = 30
READ_BOUND_S = 10.0  # a socket read that waits longer fails the case as a hang
# What a malformed head may be answered: a route's own answers (the head is
# not always wrong for it) and the server's refusals. No 5xx.
HEAD_STATUSES = {200, 201, 202, 400, 401, 403, 404, 405, 408, 413, 429, 431}
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


@dataclass
class Head:
    """A request as bytes go on the wire, before and after breaking it."""

    method: bytes
    target: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def wire(self) -> bytes:
        lines = [self.method + b" " + self.target + b" " + self.version]
        lines += [name + b": " + value for name, value in self.headers]
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body

    def set(self, name: bytes, *values: bytes) -> None:
        """Replace header ``name`` by one header per value (none: remove it)."""
        self.headers = [(n, v) for n, v in self.headers if n.lower() != name]
        self.headers += [(name, value) for value in values]


def _valid_head(route: Route) -> Head:
    key = ADMIN_KEY if route.admin else DEV_KEY
    body = b"" if route.body is None else orjson.dumps(route.body)
    headers = [(b"host", b"127.0.0.1"), (b"authorization", b"Bearer " + key.encode())]
    if route.body is not None:
        headers += [(b"content-type", b"application/json")]
        headers += [(b"content-length", str(len(body)).encode())]
    return Head(route.method.encode(), route.path.encode(), b"HTTP/1.1", headers, body)


def _chunked(body: bytes, rng: random.Random) -> bytes:
    """``body`` in valid chunks (the last one empty)."""
    out, at = b"", 0
    while at < len(body):
        size = rng.randint(1, 16)
        out += b"%x\r\n" % len(body[at : at + size]) + body[at : at + size] + b"\r\n"
        at += size
    return out + b"0\r\n\r\n"


ODD_BYTES = [b"", b" ", b"\x00", b"\x01", b"\x7f", b"\xff\xfe", b"\xc3\xa9", b"\t", b"a\x00b"]


def _odd_header_value(rng: random.Random) -> bytes:
    return rng.choice(
        [
            *ODD_BYTES,
            b"x" * rng.choice([200, 2000]),
            "é".encode() * 10,
            b"\xe2\x80\x8b",  # zero-width space
            b"=?utf-8?b?w6k=?=",
        ]
    )


def _break_content_type(rng: random.Random, head: Head) -> str:
    values = [
        b"",
        b"text/plain",
        b"application/xml",
        b"application/json; charset=latin-1",
        b"application/json; charset=\xff",
        b"multipart/form-data; boundary=x",
        b"application/x-www-form-urlencoded",
        b"application/json, text/plain",
        b"*/*",
        b"json",
        _odd_header_value(rng),
    ]
    way = rng.randrange(3)
    if way == 0:
        head.set(b"content-type", rng.choice(values))
    elif way == 1:
        head.set(b"content-type", b"application/json", rng.choice(values))
    else:
        head.set(b"content-type")
    return "content-type"


def _break_content_length(rng: random.Random, head: Head) -> str:
    size = len(head.body)
    way = rng.randrange(7)
    if way == 0:
        head.set(b"content-length")  # the body is the next request's head
        return "content-length missing"
    if way == 1:
        head.set(b"content-length", b"%d" % size, b"%d" % size)
        return "content-length twice"
    if way == 2:
        head.set(b"content-length", b"%d" % size, b"%d" % (size + rng.randint(1, 9)))
        return "content-length conflicting"
    if way == 3:
        head.set(b"content-length", b"%d" % (size + rng.randint(1, 100)))
        return "content-length over the body"  # the server waits for more: 408
    if way == 4:
        head.set(b"content-length", b"%d" % rng.randint(0, max(0, size - 1)))
        return "content-length under the body"  # the rest is the next request's head
    if way == 5:
        head.set(b"transfer-encoding", b"chunked")
        return "content-length and transfer-encoding"
    values = [b"abc", b"1e3", b"+12", b"0x10", b"-0", b"1,1", b"9" * 30, b"", b"\xff"]
    head.set(b"content-length", rng.choice(values))
    return "content-length not a number"


def _break_chunking(rng: random.Random, head: Head) -> str:
    head.set(b"content-length")
    head.set(b"transfer-encoding", b"chunked")
    chunked = _chunked(head.body, rng)
    way = rng.randrange(8)
    if way == 0:
        head.body = chunked
        return "chunked (valid)"
    if way == 1:
        head.body = b"zz\r\n" + head.body + b"\r\n0\r\n\r\n"
        return "chunked: size not hex"
    if way == 2:
        head.body = b"%x\r\n" % (len(head.body) + 5) + head.body + b"\r\n0\r\n\r\n"
        return "chunked: size over the data"
    if way == 3:
        head.body = chunked[: -len(b"0\r\n\r\n")]
        return "chunked: no last chunk"  # the server waits for more: 408
    if way == 4:
        head.body = chunked.replace(b"\r\n", b"\n")
        return "chunked: bare LF"
    if way == 5:
        head.body = b"%x;ext=\x01\r\n" % len(head.body) + head.body + b"\r\n0\r\n\r\n"
        return "chunked: control byte in an extension"
    if way == 6:
        head.set(b"transfer-encoding", rng.choice([b"gzip", b"chunked, gzip", b"identity", b"x"]))
        head.body = chunked
        return "transfer-encoding not chunked last"
    head.set(b"transfer-encoding", b"chunked", b"chunked")
    head.body = chunked
    return "transfer-encoding twice"


def _odd_bytes_in_header(rng: random.Random, head: Head) -> str:
    name = rng.choice([b"x-odd", b"user-agent", b"accept", b"host", b"cookie"])
    way = rng.randrange(3)
    if way == 0:
        head.set(name, _odd_header_value(rng))
        return f"odd value in {name.decode()}"
    if way == 1:
        bad = rng.choice([b"x odd", b"x\x00odd", b"\xff\xfe", b"", b"x:odd", b"x\todd", b"(x)"])
        head.headers.append((bad, b"v"))
        return "odd header name"
    head.headers.append((b" folded", b"continuation"))  # obs-fold: a line that starts with SP
    return "folded header"


def _huge_head(rng: random.Random, head: Head) -> str:
    if rng.random() < 0.5:
        size = MAX_HEADER_BYTES + rng.randint(1, 3 * MAX_HEADER_BYTES)
        head.set(rng.choice([b"x-big", b"authorization", b"cookie"]), b"a" * size)
        return "huge header"
    count = MAX_HEADERS + rng.randint(1, 100)
    head.headers += [(b"x-h%d" % i, b"v") for i in range(count)]
    return "too many headers"


def _break_authorization(rng: random.Random, head: Head) -> str:
    values = [
        b"",
        b"Bearer",
        b"Bearer ",
        b"Bearer  " + DEV_KEY.encode(),
        b"bearer " + DEV_KEY.encode(),
        b"Basic " + DEV_KEY.encode(),
        b"Token " + DEV_KEY.encode(),
        b"Bearer " + b"k" * rng.choice([1000, 6000]),
        b"Bearer \xff\xfe\xfd",
        b"Bearer " + "é".encode() * 20,
        b"Bearer sk-\x00",
        DEV_KEY.encode(),
    ]
    if rng.random() < 0.2:
        head.headers.append((b"authorization", rng.choice(values)))  # a second one
        return "authorization twice"
    head.set(b"authorization", *([] if rng.random() < 0.1 else [rng.choice(values)]))
    return "authorization"


def _odd_request_id(rng: random.Random, head: Head) -> str:
    values = [b"", b" ", b"a" * 129, b"../../etc", b"id\xff", b"a b", b"\x00", b"a" * 5000]
    head.set(b"x-request-id", *(rng.choice(values) for _ in range(rng.randint(1, 2))))
    return "x-request-id"


def _odd_accept_encoding(rng: random.Random, head: Head) -> str:
    values = [
        b"gzip;q=abc",
        b"*;q=0",
        b"identity;q=0",
        b"br, zstd, deflate, gzip",
        b"gzip;q=1.5",
        b",,,",
        b"x" * 1000,
        b"\xff",
    ]
    head.set(b"accept-encoding", rng.choice(values))
    return "accept-encoding"


def _break_request_line(rng: random.Random, head: Head) -> str:
    way = rng.randrange(3)
    if way == 0:
        methods = [b"GETT", b"get", b"PATCH", b"TRACE", b"OPTIONS", b"HEAD", b"CONNECT"]
        head.method = rng.choice([*methods, b"PRI", b"M" * 100, b"", b"G\x00T"])
        return "method"
    if way == 1:
        versions = [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/9.9", b"HTTP/1", b"HTTX/1.1", b"http/1.1"]
        head.version = rng.choice([*versions, b"HTTP/1.1 extra", b"HTTP/1.1\x00"])
        return "version"
    targets = [
        b"*",
        b"http://127.0.0.1" + head.target,
        b"//" + head.target,
        head.target + b"#fragment",
        b"/%",
        b"/%zz",
        head.target + b"?%%%=%",
        head.target.lstrip(b"/"),
        head.target + b"/" + b"a" * 5000,
        head.target + b"\x7f",
        b"/v1/../admin/keys",
    ]
    head.target = rng.choice(targets)
    return "request target"


HEAD_BREAKERS: list[Callable[[random.Random, Head], str]] = [
    _break_content_type,
    _break_content_length,
    _break_chunking,
    _odd_bytes_in_header,
    _huge_head,
    _break_authorization,
    _odd_request_id,
    _odd_accept_encoding,
    _break_request_line,
]


@dataclass(frozen=True)
class HeadCase:
    number: int
    kind: str
    route: Route
    head: Head


def _heads() -> Iterator[HeadCase]:
    rng = random.Random(HEAD_SEED)
    number = 0
    for route in ROUTES:
        for _ in range(HEAD_PER_ROUTE):
            head = _valid_head(route)
            breaker = rng.choice(HEAD_BREAKERS)
            if route.body is None and breaker in (_break_content_length, _break_chunking):
                head.body = orjson.dumps({"unexpected": "body"})
            kind = breaker(rng, head)
            yield HeadCase(number, kind, route, head)
            number += 1


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]  # names lower-cased; the last of a name
    body: bytes


class RawConnection:
    """A socket and what has been read from it, read one response at a time."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=READ_BOUND_S)
        self.buffer = b""
        self.closed = False

    def send(self, data: bytes) -> None:
        try:  # the server may refuse (and close) before it has all of it
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _more(self) -> bool:
        """Read what comes (``socket.timeout`` after ``READ_BOUND_S``: a hang)."""
        if self.closed:
            return False
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:  # closed with bytes of ours unread: still a close
            chunk = b""
        self.buffer += chunk
        self.closed = not chunk
        return bool(chunk)

    def response(self, head_only: bool = False) -> RawAnswer | None:
        """The next response (1xx skipped); None if the server closed first."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._more():
                return None
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        if 100 <= status < 200:
            return self.response(head_only)
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if head_only:
            length = 0
        elif "content-length" in headers:
            length = int(headers["content-length"])
        else:  # no framing: to the close
            while self._more():
                pass
            length = len(self.buffer)
        while len(self.buffer) < length:
            if not self._more():
                break
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return RawAnswer(status, headers, body)

    def close(self) -> None:
        self.sock.close()


def _head_findings(answer: RawAnswer, expected: set[int], head_only: bool = False) -> list[str]:
    """What is wrong with an answer to a malformed head (``head_only``: to a
    HEAD request, whose answers have no body)."""
    found = []
    if answer.status not in expected:
        found.append(f"status {answer.status}")
    if answer.status >= 400 and not head_only:
        try:
            error = orjson.loads(answer.body).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            error = None
        if not isinstance(error, dict) or set(error) != ERROR_FIELDS:
            found.append("not OpenAI's error shape")
    if answer.status >= 400 and answer.headers.get("content-type") != "application/json":
        found.append(f"content-type {answer.headers.get('content-type')!r}")
    request_id = answer.headers.get("x-request-id")
    if request_id is not None and not _VALID_REQUEST_ID.match(request_id):
        found.append(f"x-request-id {request_id!r} echoed")
    return found


PROBE = b"GET /health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
# What the server must answer, where the kind of breakage decides it.
EXPECTED = {
    "huge header": {431},
    "too many headers": {431},
    "folded header": {400},
    "content-length twice": {400},
    "content-length conflicting": {400},
    "content-length not a number": {400},
    "content-length and transfer-encoding": {400},
    "transfer-encoding twice": {400},
    "transfer-encoding not chunked last": {400},
    "chunked: size not hex": {400},
    "chunked: bare LF": {400},
    "chunked: control byte in an extension": {400},
}
# ADR 0012: a client still sending a head the server refused may see the
# connection reset instead of the 431.
MAY_BE_RESET = {"huge header", "too many headers"}
# The server may still be waiting for the body these announce when it answers
# (a route that does not read the body answers first): what follows on the
# connection would be body, so no request of ours follows, only the close.
BODY_PENDING = {
    "content-length over the body",
    "chunked: size over the data",
    "chunked: no last chunk",
}


def _send_head(port: int, case: HeadCase) -> tuple[list[str], float, str]:
    """Send ``case``; what is wrong with the answers, how long the first
    took, and the answers (for a failure's message)."""
    conn = RawConnection(port)
    head_only = case.head.method == b"HEAD"
    try:
        began = time.perf_counter()
        conn.send(case.head.wire())
        try:
            first = conn.response(head_only)
        except TimeoutError:
            return [f"no answer in {READ_BOUND_S} s"], READ_BOUND_S, ""
        elapsed = time.perf_counter() - began
        if first is None:
            return [] if case.kind in MAY_BE_RESET else ["closed without an answer"], elapsed, ""
        found = _head_findings(first, EXPECTED.get(case.kind, HEAD_STATUSES), head_only)
        seen = f"{first.status} {first.body[:200]!r}"
        if first.headers.get("connection") != "close" and not conn.closed:
            # Whatever the server made of the rest (a body it did not take
            # is the next request's head), then a request of ours, then the close.
            if case.kind not in BODY_PENDING:
                conn.send(PROBE)
            try:
                while (later := conn.response()) is not None:
                    found += [f"then {f}" for f in _head_findings(later, HEAD_STATUSES)]
                    seen += f"; then {later.status} {later.body[:200]!r}"
            except TimeoutError:
                found.append(f"the connection hung after the answer ({READ_BOUND_S} s)")
        return found, elapsed, seen
    finally:
        conn.close()


@pytest.fixture(scope="module")
def impatient_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """Short head and body timeouts, so a lying content-length ends in a 408
    within the second every answer must come in; small heads."""
    config = _gateway_config()
    config["server"] |= {
        "header_timeout_s": HEAD_TIMEOUT_S,
        "body_timeout_s": HEAD_TIMEOUT_S,
        "max_header_bytes": MAX_HEADER_BYTES,
        "max_headers": MAX_HEADERS,
    }
    gateway = GatewayProcess(config, tmp_path_factory.mktemp("malformed-heads"))
    yield gateway
    gateway.close()


def test_generated_malformed_heads_get_clean_answers(impatient_gateway: GatewayProcess) -> None:
    port = int(impatient_gateway.base_url.rsplit(":", 1)[1])
    failures: list[str] = []
    slowest = 0.0
    for case in _heads():
        found, elapsed, seen = _send_head(port, case)
        slowest = max(slowest, elapsed)
        if elapsed > WITHIN_S:
            found.append(f"answered in {elapsed:.2f} s")
        if found:
            failures.append(
                f"seed {HEAD_SEED} case {case.number} ({case.kind}): {', '.join(found)}\n"
                f"  sent {case.head.wire()[:300]!r}\n  got {seen[:400]}"
            )
    with httpx.Client(base_url=impatient_gateway.base_url, timeout=30) as client:
        assert client.get("/health/live").status_code == 200
    assert not failures, "\n".join(failures[:20])
    print(f"figure: malformed heads: slowest answer {slowest * 1000:.0f} ms")
    assert slowest < WITHIN_S


def test_a_request_followed_by_bytes_that_are_no_request_is_answered(
    impatient_gateway: GatewayProcess,
) -> None:
    # The request is answered, then the bytes after it (in the same read) are
    # refused: as when they come in a write of their own.
    conn = RawConnection(int(impatient_gateway.base_url.rsplit(":", 1)[1]))
    try:
        conn.send(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n\x00\x01")
        first = conn.response()
        assert first is not None and first.status == 200
        refusal = conn.response()
        assert refusal is not None and not _head_findings(refusal, {400})
    finally:
        conn.close()
