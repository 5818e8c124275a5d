"""The shipped defaults, as a new user meets them: a key from the config file
and no limits set, many concurrent streams."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from aiohttp import web

from tests.conftest import TEST_KEY
from tests.support.servers import FakeUpstream, GatewayProcess
from tests.support.sse import stream_one_chunk

STREAMS = 300  # past the 256 per-key streams an earlier default allowed


class GatheringUpstream:
    """Holds every stream until ``expected`` are open at once (or a deadline
    passes), then answers them all: so they were truly concurrent."""

    def __init__(self, expected: int):
        self.expected = expected
        self.arrived = 0
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.handle)
        self._all_here: asyncio.Event | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._all_here is None:
            self._all_here = asyncio.Event()
        self.arrived += 1
        if self.arrived == self.expected:
            self._all_here.set()
        try:
            await asyncio.wait_for(self._all_here.wait(), 30)
        except TimeoutError:
            pass  # the test then sees fewer than all
        return await stream_one_chunk(request)


def test_one_key_holds_hundreds_of_concurrent_streams(
    start_gateway: Callable[..., GatewayProcess],
    fake_upstream: Callable[[web.Application], FakeUpstream],
) -> None:
    """An earlier default refused one key's streams beyond 256 (429 on 244 of
    500 when tried). A config-file key is an operator's key (tier
    ``unlimited``): bounded only by load shedding (2,048 in flight)."""
    upstream = GatheringUpstream(STREAMS)
    url = fake_upstream(upstream.app).url
    config = {
        "models": [
            {
                "name": "m",
                "deployments": [
                    {"id": "m-1", "provider": "openai", "model": "m", "base_url": url + "/v1"}
                ],
            }
        ],
        "keys": [{"name": "dev", "key": "os.environ/TEST_KEY"}],
    }
    gateway = start_gateway(config)
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "stream": True}

    async def run() -> list[tuple[int, bytes]]:
        connector = aiohttp.TCPConnector(limit=STREAMS)
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=60),
            headers={"authorization": f"Bearer {TEST_KEY}"},
        ) as session:

            async def one() -> tuple[int, bytes]:
                url = gateway.base_url + "/v1/chat/completions"
                async with session.post(url, json=body) as response:
                    return response.status, await response.read()

            return await asyncio.gather(*(one() for _ in range(STREAMS)))

    results = asyncio.run(run())
    assert [status for status, _ in results] == [200] * STREAMS
    assert upstream.arrived == STREAMS
    assert all(payload.endswith(b"data: [DONE]\n\n") for _, payload in results)
