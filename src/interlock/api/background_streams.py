"""Background responses created with ``stream: true``: OpenAI's resumable
streams (``GET /v1/responses/{id}?stream=true&starting_after=N``).

The response runs at once on the instance that took it, in a task of its
own (not on the batch workers, which answer whole): the pipeline's stream,
through the Responses encoder, into an event log in the state store
(``state/event_log.py``), one entry per event, in ``sequence_number`` order
(entry n is event n - 1). The client that created it reads the log as it
grows; a client that left, or another one with the key, reads it again
from any instance and any event. Leaving does not stop the response: it
runs to its end (or a cancel), and is stored as it finished.

- The stored Response is ``in_progress`` from the start; the finished one
  (or ``failed`` with the error, or ``cancelled``) replaces it before the
  last event is logged, so a client that saw the last event can read it.
- ``cancel`` stops it: at once when it runs here, within ``poll_s`` when it
  runs on another instance (which watches a flag in the state store).
- The log is kept ``responses.background_events_s`` after its last entry.
- The instance running it keeps a liveness mark fresh; a reader that finds
  the log quiet and the mark gone (that instance died) ends the stream with
  an ``error`` event, and the response is stored ``failed``.
- A draining gateway (SIGTERM) lets its runs finish within what is left of
  ``server.drain_timeout_s``, then stores the rest ``failed``.
- The state store out: creating one is a 503, a run stops (stored
  ``failed``), a reader ends with an ``error`` event (and may read on later).
- The run has its own request record (the create call's request id): its
  access-log line, usage-ledger row and in-flight slot last as long as the
  response runs, not as long as a client reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from interlock.admission.accounting import Accounting
from interlock.api.errors import safe_message
from interlock.api.sse import SSE_HEADERS, watch_disconnect
from interlock.dialects.responses.stream import ResponseEvents
from interlock.errors import InterlockError, ServiceUnavailable
from interlock.pipeline import ChatStream, ModelRequest, Pipeline
from interlock.redaction import Redactor
from interlock.state import StateStore, StateStoreUnavailable
from interlock.state.event_log import EventLog
from interlock.telemetry.hub import Telemetry

__all__ = ["BackgroundStreams", "LoggedStream"]

log = logging.getLogger("interlock.responses")

JSONDict = dict[str, Any]
# Stores the response as it ended (replacing the stored one).
OnEnd = Callable[[JSONDict], Awaitable[None]]

_END = b""  # the log's last entry: nothing follows
_HEARTBEAT = b": keep-alive\n\n"


class BackgroundStreams:
    """The streamed background responses running on this instance, and the
    event logs of every instance's."""

    def __init__(
        self,
        pipeline: Pipeline,
        telemetry: Telemetry,
        accounting: Accounting,
        state: StateStore,
        ttl_s: float,
        redactor: Redactor,
        *,
        poll_s: float = 0.25,
        heartbeat_s: float = 15.0,
        lost_after_s: float = 5.0,
    ):
        self._pipeline = pipeline
        self._telemetry = telemetry
        self._accounting = accounting
        self._state = state
        self._log = EventLog(state, "responses", ttl_s)
        self._redactor = redactor
        self._poll_s = poll_s
        self._heartbeat_s = heartbeat_s
        self._lost_after_s = lost_after_s
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[str] = set()  # asked to stop (not the gateway stopping)

    async def start(self, request: ModelRequest, shell: JSONDict, on_end: OnEnd) -> None:
        """Open the model's stream for ``request`` (a failure before it opens
        raises here, for the create call to answer) and run it to its end."""
        record = request.record
        try:
            answer = await self._pipeline.run(request)
        except BaseException:
            self._telemetry.finish(record)
            await self._accounting.finish(record)
            raise
        assert isinstance(answer, ChatStream)  # the body asks for a stream
        response_id = shell["id"]
        try:
            await self._state.set(_alive(response_id), b"1", self._lost_after_s)
        except StateStoreUnavailable:
            await answer.aclose()  # nothing may read its events: no run
            self._telemetry.finish(record)
            await self._accounting.finish(record)
            raise ServiceUnavailable(
                "The state store that keeps a streamed background response's events is "
                "unreachable; retry, or create the response without `stream`."
            ) from None
        run = asyncio.create_task(
            self._run(response_id, answer, ResponseEvents(shell), request, shell, on_end),
            name=f"background-stream-{response_id}",
        )
        self._running[response_id] = run
        self._telemetry.metrics.background_streams.inc()

    async def kept(self, response_id: str) -> bool:
        """Whether ``response_id`` has an event log (a streamed background
        response whose events are still kept)."""
        return await self._log.length(response_id) is not None

    async def cancel(self, response_id: str) -> None:
        """Stop the response: at once here, else through the flag its
        instance watches. Returns once a run here has stored its end."""
        self._cancelled.add(response_id)
        run = self._running.get(response_id)
        if run is None:
            await self._log.cancel(response_id)
            return
        run.cancel()
        await asyncio.wait([run])

    async def events(
        self, response_id: str, starting_after: int | None, on_lost: OnEnd, shell: JSONDict
    ) -> AsyncGenerator[bytes, None]:
        """The response's events after ``sequence_number`` ``starting_after``
        (all of them for None), as they are logged, heartbeats between;
        ends after the last. ``on_lost`` stores ``shell`` failed when the
        instance running it is found gone."""
        after = 0 if starting_after is None else starting_after + 1
        beat_due = quiet_since = time.monotonic()
        beat_due += self._heartbeat_s
        event_log = self._log
        try:
            while True:
                try:
                    found = await event_log.read(response_id, after)
                except StateStoreUnavailable:
                    yield _error_event(after, _UNREADABLE)  # the client may read on later
                    return
                for n, payload in found:
                    if payload == _END:
                        return
                    yield payload
                    after = n
                now = time.monotonic()
                if found:
                    quiet_since, beat_due = now, now + self._heartbeat_s
                    continue
                if now >= beat_due:
                    yield _HEARTBEAT
                    beat_due = now + self._heartbeat_s
                local = response_id in self._running
                if not local and now - quiet_since >= self._lost_after_s:
                    if await self._state.get(_alive(response_id)) is None:
                        yield _error_event(after, _LOST)
                        await on_lost(_failed(shell, "server_error", _LOST))
                        return
                await event_log.wait(response_id, self._heartbeat_s if local else self._poll_s)
        finally:
            event_log.forget(response_id)

    async def aclose(self, grace_s: float = 0.0) -> None:
        """At shutdown: the runs here get ``grace_s`` to finish (what is left
        of the drain), then the rest are stopped, each stored ``failed``."""
        runs = list(self._running.values())
        if runs and grace_s > 0:
            await asyncio.wait(runs, timeout=grace_s)
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)

    async def _run(
        self,
        response_id: str,
        stream: ChatStream,
        events: ResponseEvents,
        request: ModelRequest,
        shell: JSONDict,
        on_end: OnEnd,
    ) -> None:
        record = request.record
        watch = asyncio.create_task(self._watch(response_id, asyncio.current_task()))
        try:
            await self._append(response_id, events.start())
            async for _ in stream.opening():
                pass  # a reader writes its own heartbeats
            if stream.first is not None:
                await self._append(response_id, events.feed(stream.first))
            async for chunk in stream.chunks:
                if data := events.feed(chunk):
                    await self._append(response_id, data)
            last = events.finish(record.usage)
            assert events.response is not None
            await on_end(events.response)
            await self._append(response_id, last)
            record.status = 200
        except InterlockError as exc:
            record.status = exc.status_code
            record.error_type = exc.error_type
            record.error_code = exc.code or exc.error_type
            message = safe_message(exc, self._redactor)
            code = exc.code or exc.error_type
            await on_end(_failed(shell, code, message))
            await self._append(response_id, events.error(code, message, exc.param))
        except asyncio.CancelledError:
            record.status = 499
            if response_id in self._cancelled:
                await on_end({**shell, "status": "cancelled"})
            else:
                await on_end(_failed(shell, "server_error", _STOPPED))
                await self._append(response_id, events.error("server_error", _STOPPED))
            raise
        except StateStoreUnavailable:  # its events cannot be kept: it stops, stored failed
            record.status = 503
            log.warning("background stream stopped: state store out", extra={"id": response_id})
            await on_end(_failed(shell, "server_error", _UNREADABLE))
        except Exception as exc:  # our bug: logged, the response failed, the gateway goes on
            log.error("background stream failed", exc_info=exc, extra={"id": response_id})
            record.status = 500
            await on_end(_failed(shell, "server_error", "The response failed."))
        finally:
            watch.cancel()
            self._running.pop(response_id, None)
            self._telemetry.metrics.background_streams.dec()
            self._cancelled.discard(response_id)
            try:
                await self._log.append(response_id, _END)
            except StateStoreUnavailable:
                pass  # readers find the instance's liveness mark gone, and end
            finally:
                await stream.aclose()
                self._telemetry.finish(record)
                await self._accounting.finish(record)

    async def _append(self, response_id: str, data: bytes) -> None:
        """Each event of ``data`` (the encoder's output) as one log entry."""
        for event in data.split(b"\n\n"):
            if event:
                await self._log.append(response_id, event + b"\n\n")

    async def _watch(self, response_id: str, run: asyncio.Task[Any] | None) -> None:
        """Keep the liveness mark fresh, and stop the run when another
        instance asks (the cancel flag)."""
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                await self._state.set(_alive(response_id), b"1", self._lost_after_s)
                cancelled = await self._log.cancelled(response_id)
            except StateStoreUnavailable:
                continue  # the run's own writes fail too, and stop it
            if cancelled and run is not None:
                self._cancelled.add(response_id)
                run.cancel()
                return


class LoggedStream:
    """The ASGI response writing a streamed background response's events;
    a client that leaves stops its reading, not the response."""

    def __init__(self, events: AsyncGenerator[bytes, None]):
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        client_gone = asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(
            watch_disconnect(receive, task, client_gone)
        )
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            async for data in self._events:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (asyncio.CancelledError, OSError):
            if not client_gone.is_set():
                raise
            task.uncancel()  # the client left: stop quietly
        finally:
            watcher.cancel()
            await self._events.aclose()


_STOPPED = "The gateway stopped before the response finished."
_LOST = "The gateway instance running the response stopped before it finished."
_UNREADABLE = "The state store keeping the response's events is unreachable."


def _alive(response_id: str) -> str:
    return f"responses:alive:{response_id}"


def _failed(shell: JSONDict, code: str, message: str) -> JSONDict:
    return {**shell, "status": "failed", "error": {"code": code, "message": message}}


def _error_event(after: int, message: str) -> bytes:
    # Entry ``after`` is event ``after - 1``: this one comes next.
    data = {
        "type": "error",
        "sequence_number": after,
        "code": "server_error",
        "message": message,
        "param": None,
    }
    return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"
