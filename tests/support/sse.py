"""Answers for fake OpenAI-compatible upstreams that stream."""

from __future__ import annotations

import orjson
from aiohttp import web

__all__ = ["stream_one_chunk"]


async def stream_one_chunk(request: web.Request, content: str = "hi") -> web.StreamResponse:
    """A streamed answer of one content chunk (finish_reason stop), then [DONE]."""
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": "stop"}],
    }
    await response.write(b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n")
    return response
