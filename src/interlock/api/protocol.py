"""The HTTP/1.1 connection under the ASGI app: uvicorn's httptools protocol,
with bounds on what one client may hold (ADR 0012).

uvicorn bounds neither the request head nor the time a client takes to send
its request: one connection could hold a 128 MB header (parsed in quadratic
time), and any number could stall half-way through theirs for ever. Here,
from ``server:`` in the config:

- a request head (request line and headers) over ``max_header_bytes``, or
  with more than ``max_headers`` headers: 431. The parser never sees more
  than ``max_header_bytes`` of one head.
- a head not complete ``header_timeout_s`` after the connection opened (on a
  kept-alive connection: after its first bytes), or a body not complete
  ``body_timeout_s`` after its head: 408.
- a connection beyond ``max_connections`` (``max_connections_per_client``
  from one address) has its request answered 503 (429) and is closed.
- a malformed request (a negative ``content-length``, a bare CR or LF): 400.

Each is answered in OpenAI's error shape (``api/errors.py``) and the
connection closed. The request path pays for this with no timer at all when
a request arrives whole in one read, and a few attribute checks; a timer
runs only while part of a head or body is waiting for the rest.

The drain (``shutdown``) never closes a kept-alive connection under a
client that may be sending on it (see ``GatewayProtocol.shutdown``).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, ClassVar, cast

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from interlock.api.connections import ConnectionCaps
from interlock.api.errors import error_bytes
from interlock.config import ServerConfig
from interlock.errors import HeaderFieldsTooLarge, InterlockError, InvalidRequest, RequestTimeout

__all__ = ["GatewayProtocol"]

# Head room while a body is read: the body is not the head's to count.
_UNCOUNTED = sys.maxsize
# While draining, how long a kept-alive connection with nothing to answer
# stays open before it is closed (bounded by server.drain_timeout_s). A load
# balancer that still sends on it within this time is answered; one that
# does not has stopped using this instance (nginx: its pooled connections are
# used up, or the instance is marked failed after refused connects).
DRAIN_IDLE_S = 1.0


class GatewayProtocol(HttpToolsProtocol):
    """Use ``GatewayProtocol.bind(settings)`` as uvicorn's ``http`` class."""

    # Set on the class ``bind`` makes: uvicorn builds each connection's
    # protocol from a class, and the caps count across all of them.
    settings: ClassVar[ServerConfig]
    caps: ClassVar[ConnectionCaps]

    @classmethod
    def bind(cls, settings: ServerConfig) -> type[GatewayProtocol]:
        caps = ConnectionCaps(settings.max_connections, settings.max_connections_per_client)
        bound = type(cls.__name__, (cls,), {"settings": settings, "caps": caps})
        return cast(type[GatewayProtocol], bound)

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._max_head = self.settings.max_header_bytes
        self._max_headers = self.settings.max_headers
        # Bytes the head being read may still take.
        self._head_room = self._max_head
        self._in_body = False  # the head is in, the body is not
        self._deadline: asyncio.TimerHandle | None = None
        self._client_host: str | None = None
        self._refusal: InterlockError | None = None  # over a connection cap
        # A malformed head read while earlier requests are still being
        # answered: sent once they are, then the connection is closed.
        self._refusal_after_answer: InterlockError | None = None
        self._draining = False  # uvicorn's shutdown has begun
        self._drain_close: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._client_host = self.client[0] if self.client else None
        self._refusal = self.caps.open(self._client_host)
        self._arm(self.settings.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._drain_close is not None:
            self._drain_close.cancel()
        self.caps.close(self._client_host)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal_after_answer is not None:
            return  # the parser failed on what came before: nothing more is read
        self._unset_keepalive_if_required()
        room = self._head_room
        if len(data) <= room:  # the usual case, inlined: a whole request in one read
            self._head_room = room - len(data)
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                pass  # no protocol to switch to: the request was served as plain HTTP
            except httptools.HttpParserError as exc:
                self._refuse(_malformed(exc))
                return
        elif not self._receive(data):
            return
        if self._in_body:
            if self._deadline is None:
                self._arm(self.settings.body_timeout_s)
        elif self._head_room < self._max_head:  # part of a head is in
            headers = self.headers  # None until the parser has begun a request
            if headers is not None and len(headers) > self._max_headers:
                self._refuse(_too_many_headers(self._max_headers))
            elif self._deadline is None:
                self._arm(self.settings.header_timeout_s)
        elif self._idle():
            # Nothing is pending and nothing is being answered (a body that
            # came after its response ended): the keep-alive timer this read
            # cancelled must run again, or the connection would have no timer.
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def _idle(self) -> bool:
        cycle = self.cycle
        return (
            (cycle is None or cycle.response_complete)
            and not self.pipeline
            and self.timeout_keep_alive_task is None
            and not self.transport.is_closing()
        )

    def _receive(self, data: bytes | memoryview) -> bool:
        """Parse ``data``, never more than the head's room of a head; False
        once the connection is refused."""
        room = self._head_room
        if len(data) <= room:
            self._head_room = room - len(data)
            return self._feed(data)
        # The head must end within its room: feed that much, and the rest
        # (a body, or the next request) only if it did.
        self._head_room = 0
        view = memoryview(data)
        if not self._feed(view[:room]):
            return False
        if self._head_room == 0:
            self._refuse(
                HeaderFieldsTooLarge(
                    f"The request head (request line and headers) is over the server's "
                    f"limit of {self._max_head} bytes."
                )
            )
            return False
        return self._receive(view[room:])

    def _feed(self, data: bytes | memoryview) -> bool:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no protocol to switch to: the request was served as plain HTTP
        except httptools.HttpParserError as exc:
            self._refuse(_malformed(exc))
            return False
        return True

    # Parser callbacks
    # (``HttpToolsProtocol.x(self)`` rather than ``super().x()``: every request
    # passes here, and the explicit call is the cheaper.)
    def on_headers_complete(self) -> None:
        if self._deadline is not None:
            self._disarm()
        if self._refusal is not None:
            raise self._refusal
        if len(self.headers) > self._max_headers:
            raise _too_many_headers(self._max_headers)
        HttpToolsProtocol.on_headers_complete(self)
        self._in_body = True
        self._head_room = _UNCOUNTED
        if self._draining:
            # The last request on this connection: its response says so.
            self.cycle.keep_alive = False

    def on_response_complete(self) -> None:
        HttpToolsProtocol.on_response_complete(self)
        refusal = self._refusal_after_answer
        if refusal is not None and not self.pipeline and not self.transport.is_closing():
            self._unset_keepalive_if_required()
            self.transport.write(error_bytes(refusal, self.server_state.default_headers))
            self.transport.close()
        elif self._draining and not self.transport.is_closing():
            self._close_when_idle()  # a response begun before the drain, ended kept alive

    # Drain
    def shutdown(self) -> None:
        """uvicorn's drain, once the listener is closed, on every connection.

        uvicorn closes an idle kept-alive connection at once, and one whose
        response is under way when that response ends. A load balancer that
        pools connections to the gateway (nginx's upstream ``keepalive``)
        may have just sent a request on it: the close resets that request,
        and the balancer, which never resends a POST that went out, answers
        its client 502. So a connection is closed only once the client was
        told (``Connection: close`` on a response that had not begun), or
        after ``DRAIN_IDLE_S`` with nothing to answer; a request that comes
        meanwhile is served, and its response says ``Connection: close``.
        """
        self._draining = True
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self._close_when_idle()
        elif not cycle.response_started:
            cycle.keep_alive = False
        # else: a response under way, sent kept alive; on_response_complete
        # starts the wait once it has ended.

    def _close_when_idle(self) -> None:
        if self._drain_close is not None:
            self._drain_close.cancel()
        grace = min(DRAIN_IDLE_S, self.settings.drain_timeout_s)
        self._drain_close = self.loop.call_later(grace, self._drain_idle_over)

    def _drain_idle_over(self) -> None:
        self._drain_close = None
        cycle = self.cycle
        if self.transport.is_closing():
            return
        if cycle is None or cycle.response_complete:
            self.transport.close()
        elif not cycle.response_started:
            cycle.keep_alive = False
        # else: the request that came is answered kept alive only if it
        # began before the drain; on_response_complete waits once more.

    def on_message_complete(self) -> None:
        if self._deadline is not None:
            self._disarm()
        self._in_body = False
        self._head_room = self._max_head
        HttpToolsProtocol.on_message_complete(self)

    # Deadlines
    def _arm(self, seconds: float) -> None:
        self._deadline = self.loop.call_later(seconds, self._timed_out, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self, seconds: float) -> None:
        self._deadline = None
        if self._answering_earlier():
            # Its clock runs from when the connection is free to serve it.
            self._arm(seconds)
            return
        part = "body" if self._in_body else "head"
        self._refuse(RequestTimeout(f"The request {part} did not arrive within {seconds:g} s."))

    def _answering_earlier(self) -> bool:
        """Whether the request still arriving waits on an earlier one's
        answer (a pipelined request: uvicorn stops reading meanwhile)."""
        if self.pipeline:
            return True
        cycle = self.cycle
        return not self._in_body and cycle is not None and not cycle.response_complete

    def _refuse(self, exc: InterlockError) -> None:
        """Answer ``exc`` unless a response is already under way, and close."""
        self._disarm()
        cycle = self.cycle
        if not self._in_body and (
            self.pipeline or (cycle is not None and not cycle.response_complete)
        ):
            # Bytes that are no request came after requests still being
            # answered (in the same read, or pipelined): those are answered
            # first, then this refusal (``on_response_complete``).
            self._refusal_after_answer = exc
            return
        answered = self._in_body and cycle.response_started
        if cycle is not None and not cycle.response_complete:
            # The app sees the client gone; whatever it still sends goes nowhere.
            cycle.disconnected = True
            cycle.message_event.set()
        if self.transport.is_closing():
            return
        if not answered:
            self.transport.write(error_bytes(exc, self.server_state.default_headers))
        self.transport.close()


def _malformed(exc: httptools.HttpParserError) -> InterlockError:
    """The refusal for a request the parser (or a callback) rejected."""
    if isinstance(exc, httptools.HttpParserCallbackError):
        cause = exc.__context__  # what the callback raised
        if isinstance(cause, InterlockError):
            return cause
        # The parser's own words are worth passing on; a callback's others are not.
        exc = cause if isinstance(cause, httptools.HttpParserError) else exc
    detail = "" if isinstance(exc, httptools.HttpParserCallbackError) else f": {exc}"
    return InvalidRequest(f"Malformed HTTP request{detail}.", code="invalid_http")


def _too_many_headers(limit: int) -> HeaderFieldsTooLarge:
    return HeaderFieldsTooLarge(f"The request has more than the server's limit of {limit} headers.")
