"""CPU per streamed chunk of the translating adapters, over OpenAI passthrough.

    .venv/bin/python -m bench.translate_stream [--chunks 2000] [--reps 7] [--quick]

A server process on loopback (``--serve``, started by the run) answers every
stream with ``--chunks`` text deltas in each vendor's documented format, all
bytes built ahead so it costs next to nothing per request: OpenAI chunks
(``/v1/chat/completions``), Anthropic events (``/v1/messages``), Gemini
fragments (``:streamGenerateContent?alt=sse``), Bedrock ConverseStream
event-stream frames (``/converse-stream``), and, for Anthropic and Bedrock,
a tool call whose arguments arrive in ``--chunks`` pieces. This process runs
each adapter exactly as the gateway does (``build_provider`` from a
``DeploymentConfig``, the pooled upstream client, ``stream_chat``) and
drains its chunks; its own CPU time (``time.process_time``; the server is
another process) divided by the chunks it yielded is the adapter's cost per
chunk: reading the network, parsing the framing and, for all but OpenAI,
translating. The OpenAI-compatible adapter forwards the bytes it parsed, so
the difference to it is what translation costs. Median of ``--reps``
streams after a warm-up. Target: translation costs at most 20 µs of CPU per
chunk over passthrough. Prints Markdown, writes it to
``bench/results/translate-stream.md`` (``--quick``: ``<work-dir>/quick.md``)
and the figures to ``<work-dir>/translate-stream.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
TARGET_US = 20.0
PIECE = "word "
SCENARIOS: list[tuple[str, str, dict[str, Any]]] = [
    # (name, upstream route kind, request body extras)
    ("openai (passthrough)", "openai", {}),
    ("anthropic text", "anthropic", {}),
    ("anthropic tool call", "anthropic-tool", {}),
    ("gemini text", "gemini", {}),
    ("bedrock text", "bedrock", {}),
    ("bedrock tool call", "bedrock-tool", {}),
]


# -- the upstream ---------------------------------------------------------------


def _sse(events: list[tuple[str | None, Any]]) -> bytes:
    out = []
    for name, data in events:
        head = f"event: {name}\n".encode() if name else b""
        out.append(head + b"data: " + orjson.dumps(data) + b"\n\n")
    return b"".join(out)


def _openai(chunks: int) -> bytes:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events = [(None, chunk({"role": "assistant", "content": ""}))]
    events += [(None, chunk({"content": PIECE})) for _ in range(chunks)]
    events.append((None, chunk({}, "stop")))
    return _sse(events) + b"data: [DONE]\n\n"


def _anthropic(chunks: int, tool: bool) -> bytes:
    usage = {"input_tokens": 10, "output_tokens": 1}
    start = {"id": "msg_bench", "type": "message", "role": "assistant", "model": "claude"}
    events: list[tuple[str | None, Any]] = [
        ("message_start", {"type": "message_start", "message": {**start, "usage": usage}}),
    ]
    if tool:
        block = {"type": "tool_use", "id": "toolu_bench", "name": "lookup", "input": {}}
        delta = {"type": "input_json_delta", "partial_json": '"ab",'}
    else:
        block, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": PIECE}
    events.append(
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
    )
    events += [
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        for _ in range(chunks)
    ]
    stop = "tool_use" if tool else "end_turn"
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop},
                "usage": {"output_tokens": chunks},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return _sse(events)


def _gemini(chunks: int) -> bytes:
    def fragment(text: str, finish: str | None = None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}}
        if finish:
            candidate["finishReason"] = finish
        return {"candidates": [candidate], "responseId": "bench", "modelVersion": "gemini"}

    events: list[tuple[str | None, Any]] = [(None, fragment(PIECE)) for _ in range(chunks - 1)]
    last = fragment(PIECE, "STOP")
    last["usageMetadata"] = {"promptTokenCount": 10, "candidatesTokenCount": chunks}
    events.append((None, last))
    return _sse(events)


def _bedrock(chunks: int, tool: bool) -> bytes:
    from tests.support.fake_bedrock import frame

    def event(kind: str, payload: dict[str, Any]) -> bytes:
        headers = {
            ":event-type": kind,
            ":content-type": "application/json",
            ":message-type": "event",
        }
        return frame(headers, orjson.dumps({**payload, "p": "abcdefgh"}))

    out = [event("messageStart", {"role": "assistant"})]
    if tool:
        start = {"toolUse": {"toolUseId": "tooluse_bench", "name": "lookup"}}
        out.append(event("contentBlockStart", {"contentBlockIndex": 0, "start": start}))
        delta: dict[str, Any] = {"toolUse": {"input": '"ab",'}}
    else:
        delta = {"text": PIECE}
    out += [
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": delta}) for _ in range(chunks)
    ]
    out.append(event("contentBlockStop", {"contentBlockIndex": 0}))
    out.append(event("messageStop", {"stopReason": "tool_use" if tool else "end_turn"}))
    usage = {"inputTokens": 10, "outputTokens": chunks, "totalTokens": 10 + chunks}
    out.append(event("metadata", {"usage": usage, "metrics": {"latencyMs": 1}}))
    return b"".join(out)


def serve(chunks: int) -> None:
    """The upstream: prints its port, then serves until killed."""
    from aiohttp import web

    bodies = {
        "openai": (_openai(chunks), "text/event-stream"),
        "anthropic": (_anthropic(chunks, tool=False), "text/event-stream"),
        "anthropic-tool": (_anthropic(chunks, tool=True), "text/event-stream"),
        "gemini": (_gemini(chunks), "text/event-stream"),
        "bedrock": (_bedrock(chunks, tool=False), "application/vnd.amazon.eventstream"),
        "bedrock-tool": (_bedrock(chunks, tool=True), "application/vnd.amazon.eventstream"),
    }

    def route(kind: str) -> Any:
        body, content_type = bodies[kind]

        async def answer(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(body=body, content_type=content_type)

        return answer

    app = web.Application()
    app.router.add_post("/v1/chat/completions", route("openai"))
    app.router.add_post("/anthropic/v1/messages", route("anthropic"))
    app.router.add_post("/anthropic-tool/v1/messages", route("anthropic-tool"))
    app.router.add_post("/v1beta/models/{model}", route("gemini"))
    app.router.add_post("/bedrock/model/{model}/converse-stream", route("bedrock"))
    app.router.add_post("/bedrock-tool/model/{model}/converse-stream", route("bedrock-tool"))

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the measurement ------------------------------------------------------------


def _deployment(kind: str, base: str) -> dict[str, Any]:
    if kind == "openai":
        return {"provider": "openai", "model": "m", "base_url": f"{base}/v1"}
    if kind.startswith("anthropic"):
        return {"provider": "anthropic", "model": "claude", "base_url": f"{base}/{kind}"}
    if kind == "gemini":
        return {"provider": "gemini", "model": "gemini", "base_url": base}
    return {
        "provider": "bedrock",
        "model": "anthropic.claude",
        "base_url": f"{base}/{kind}",
        "aws": {"region": "us-east-1", "access_key_id": "AKID", "secret_access_key": "secret"},
    }


def _secrets(node: Any) -> Any:
    """The config loader's job: secret fields wrapped in ``Secret``."""
    from interlock.config import Secret

    if isinstance(node, dict):
        secret = {"api_key", "access_key_id", "secret_access_key"}
        return {k: Secret(v) if k in secret else _secrets(v) for k, v in node.items()}
    return node


async def _measure(kind: str, base: str, reps: int) -> dict[str, Any]:
    from interlock.config import DeploymentConfig
    from interlock.providers.base import CallContext
    from interlock.providers.registry import build_provider
    from interlock.tokens import default_counter

    raw = {"id": kind, **_deployment(kind, base)}
    deployment = DeploymentConfig(**_secrets(raw))
    provider = build_provider(deployment, default_counter())
    await provider.start()
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    ctx = CallContext(request_id="req_bench", public_model="m")
    per_chunk: list[float] = []
    emitted = 0
    try:
        for rep in range(reps + 1):
            emitted = 0
            started = time.process_time()
            async for _ in provider.stream_chat(body, ctx):
                emitted += 1
            cpu = time.process_time() - started
            if rep:  # the first is a warm-up
                per_chunk.append(1e6 * cpu / emitted)
    finally:
        await provider.aclose()
    return {"chunks": emitted, "us_per_chunk": statistics.median(per_chunk), "runs": per_chunk}


def run(chunks: int, reps: int) -> dict[str, Any]:
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.translate_stream", "--serve", "--chunks", str(chunks)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        results = {}
        for name, kind, _ in SCENARIOS:
            results[name] = asyncio.run(_measure(kind, base, reps))
    finally:
        server.kill()
        server.wait()
    passthrough = results[SCENARIOS[0][0]]["us_per_chunk"]
    for figures in results.values():
        figures["over_passthrough_us"] = figures["us_per_chunk"] - passthrough
    return {
        "chunks": chunks,
        "reps": reps,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "results": results,
    }


def report(figures: dict[str, Any]) -> str:
    lines = [
        "# Stream translation: CPU per chunk over passthrough",
        "",
        f"Each stream: {figures['chunks']} deltas; median of {figures['reps']} streams after a "
        f"warm-up; Python {figures['python']}, {figures['cpus']} CPUs. "
        f"Command: `.venv/bin/python -m bench.translate_stream`. Target: at most "
        f"{TARGET_US:.0f} µs of CPU per chunk over passthrough.",
        "",
        "| Adapter and stream | Chunks out | CPU per chunk | Over passthrough | Target |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, got in figures["results"].items():
        over = got["over_passthrough_us"]
        verdict = "—" if name.startswith("openai") else ("met" if over <= TARGET_US else "MISSED")
        lines.append(
            f"| {name} | {got['chunks']} | {got['us_per_chunk']:.1f} µs | "
            f"{over:+.1f} µs | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="200 chunks, 2 reps")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", type=Path, default=REPO / "bench" / ".work")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    if args.serve:
        serve(args.chunks)
        return
    chunks, reps = (200, 2) if args.quick else (args.chunks, args.reps)
    figures = run(chunks, reps)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    (args.work_dir / "translate-stream.json").write_text(json.dumps(figures, indent=2))
    text = report(figures)
    default = (
        args.work_dir / "quick.md" if args.quick else REPO / "bench/results/translate-stream.md"
    )
    (args.out or default).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
