"""Real Redis behind a loopback TCP proxy that a test can freeze, kill and revive.

Frozen is what a SIGSTOPped Redis looks like to its clients: connections are
accepted (the kernel does that) and commands go in, but nothing comes back;
on ``thaw`` what was held is delivered, as a resumed Redis would read it.
Killed is a Redis that is gone: the port refuses and every connection is
reset; ``revive`` listens on the same port again. The proxy runs in a thread
with its own event loop, so it serves async tests and an in-process gateway
on another thread alike, and ``held`` records the commands clients sent
while it was frozen (how a test counts the calls that reached Redis).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["RedisProxy"]

T = TypeVar("T")

# A probe, and the handshake redis-py sends on each new connection.
PROBE_COMMANDS = frozenset({"PING", "CLIENT", "SELECT", "HELLO", "AUTH"})


class RedisProxy:
    def __init__(self, target_port: int = 6379):
        self._target_port = target_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._thawed = self._run(_new_event())
        self._sockets: set[asyncio.StreamWriter] = set()
        self._relays: set[asyncio.Task[None]] = set()
        self.frozen = False
        self.accepted = 0
        self.held: list[str] = []  # command names
        self.port = 0
        self.revive()

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def commands_held(self) -> list[str]:
        """Commands sent while frozen, probes and connection handshakes left out."""
        return [name for name in self.held if name not in PROBE_COMMANDS]

    def freeze(self) -> None:
        self._run(self._set_frozen(True))

    def thaw(self) -> None:
        self._run(self._set_frozen(False))

    def kill(self) -> None:
        self._run(self._kill())

    def revive(self) -> None:
        self._run(self._listen())

    def close(self) -> None:
        self.thaw()
        self.kill()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(5)

    async def _set_frozen(self, frozen: bool) -> None:
        self.frozen = frozen
        if frozen:
            self._thawed.clear()
        else:
            self._thawed.set()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _kill(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._sockets):
            writer.transport.abort()
        for relay in self._relays:
            relay.cancel()  # some may be holding commands until a thaw
        await asyncio.gather(*self._relays, return_exceptions=True)

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.accepted += 1
        self._relays.add(task)
        self._sockets.add(client_w)
        try:
            redis_r, redis_w = await asyncio.open_connection("127.0.0.1", self._target_port)
            self._sockets.add(redis_w)
            try:
                await asyncio.gather(self._forward(client_r, redis_w), _pipe(redis_r, client_w))
            finally:
                redis_w.transport.abort()
                self._sockets.discard(redis_w)
        except OSError:
            pass
        finally:
            client_w.transport.abort()
            self._sockets.discard(client_w)
            self._relays.discard(task)

    async def _forward(self, client_r: asyncio.StreamReader, redis_w: asyncio.StreamWriter) -> None:
        try:
            while data := await client_r.read(65536):
                if self.frozen:
                    self.held += command_names(data)
                    await self._thawed.wait()
                redis_w.write(data)
                await redis_w.drain()
        except OSError:
            pass
        finally:
            redis_w.transport.abort()  # ends the other direction too


def command_names(data: bytes) -> list[str]:
    """The name of each RESP command in ``data`` ("?" for what does not parse)."""
    names, at = [], 0
    try:
        while at < len(data):
            end = data.index(b"\r\n", at)
            if data[at : at + 1] != b"*":
                raise ValueError("not a command array")
            count, at = int(data[at + 1 : end]), end + 2
            for index in range(count):
                end = data.index(b"\r\n", at)
                size = int(data[at + 1 : end])
                if index == 0:
                    names.append(data[end + 2 : end + 2 + size].decode().upper())
                at = end + 2 + size + 2
    except (ValueError, UnicodeDecodeError):
        names.append("?")  # part of a command: count it all the same
    return names


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()


async def _new_event() -> asyncio.Event:
    return asyncio.Event()  # made on the proxy's loop
