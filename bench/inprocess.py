"""An ASGI app driven in this process, the way a server drives it, minus the HTTP layer.

``InProcessApp`` runs the app's lifespan and sends it requests as ASGI calls
(scope, one ``http.request`` message, the response collected from ``send``),
so the only CPU in this process besides the app's own is a few dict
operations per request: what a benchmark timing ``time.process_time()``
around the calls measures is the app. Parsing and writing HTTP (uvicorn and
httptools in ``interlock serve``) is left out.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message

from procs import BenchError

__all__ = ["Answer", "InProcessApp"]

_SERVER = ("127.0.0.1", 8080)
_CLIENT = ("127.0.0.1", 40000)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


class InProcessApp:
    """``app`` started (its lifespan entered) in the running event loop until ``stop``."""

    def __init__(self, app: ASGIApp, bearer: str):
        self.app = app
        self._auth = (b"authorization", b"Bearer " + bearer.encode())
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._lifespan: asyncio.Task[None] | None = None

    async def start(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}

        async def lifespan() -> None:
            await self.app(scope, self._inbox.get, self._outbox.put)

        self._lifespan = asyncio.create_task(lifespan())
        await self._inbox.put({"type": "lifespan.startup"})
        message = await self._outbox.get()
        if message["type"] != "lifespan.startup.complete":
            raise BenchError(f"app start-up failed: {message.get('message')}")

    async def stop(self) -> None:
        if self._lifespan is None:
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._outbox.get()
        await self._lifespan

    async def post(self, path: str, body: bytes) -> Answer:
        """One POST with a JSON body; the whole answer."""
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1:8080"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                self._auth,
            ],
            "client": _CLIENT,
            "server": _SERVER,
            "state": {},
        }
        answered = asyncio.Event()
        request: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
        status = 0
        headers: dict[bytes, bytes] = {}
        chunks: list[bytes] = []

        async def receive() -> Message:
            if request:
                return request.pop()
            await answered.wait()  # the client stays connected until the answer is in
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers.update(message.get("headers", ()))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    answered.set()

        await self.app(scope, receive, send)
        return Answer(status, headers, b"".join(chunks))
