"""A fake KServe v2 (Open Inference Protocol) REST server on loopback.

For the ``kserve`` adapter's tests and for benchmarks. It serves the models
registered in it (by default ``tiny-classifier``: softmax of a fixed linear
layer, exact to recompute in a test) and checks inputs the way a real server
does: an unknown tensor, a wrong datatype or shape is a 400 with the v2 error
body ``{"error": "..."}``; an unknown model or version a 404.

Fault knobs, set from a test between calls: ``latency_s`` added to every
infer call, ``fail_next(status, times)`` and ``fail_always(status)``; and
what it saw: ``infer_calls``, ``last_headers``, ``last_body``.

In a test, in the test's own event loop::

    async with FakeKServe() as fake:
        ... fake.url ...

For a benchmark, as a process (prints ``fake kserve listening on URL`` when
ready; SIGTERM or SIGINT stops it)::

    python -m tests.support.fake_kserve --port 8001 [--latency-ms 5]

aiohttp's low-level server (no router, no middlewares, no access log) on
uvloop keeps its cost per request near aiohttp's floor.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import unquote

import orjson
import uvloop
from aiohttp import web

__all__ = [
    "B",
    "FakeKServe",
    "FakeModel",
    "Tensor",
    "TensorSpec",
    "W",
    "classify",
    "tiny_classifier",
]

# tiny-classifier: probabilities = softmax(features @ W + b), features [-1, 4].
# The bundled ONNX model's weights (tests/support/tiny_onnx.py), so that the
# fake and the in-process engine give the same answers (failover tests).
W = (
    (0.5, -0.25, 0.125),
    (-1.0, 0.75, 0.25),
    (0.25, 0.5, -0.75),
    (1.5, -0.5, 0.0),
)
B = (0.1, -0.2, 0.05)

_NUMBER_TYPES = {"FP16", "FP32", "FP64"}
_INTEGER_TYPES = {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}


class BadRequest(Exception):
    """The request is wrong: a 400, or ``status`` (404 for an unknown model)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model's input or output as metadata shows it; -1 is a dynamic dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True, slots=True)
class Tensor:
    """A tensor in a request or response; ``data`` flat, row-major."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "datatype": self.datatype,
            "shape": self.shape,
            "data": self.data,
        }


Compute = Callable[[Mapping[str, Tensor]], list[Tensor]]


@dataclass(frozen=True, slots=True)
class FakeModel:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    compute: Compute
    versions: tuple[str, ...] = ("1",)
    platform: str = "fake_python"

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": list(self.versions),
            "platform": self.platform,
            "inputs": [spec.as_json() for spec in self.inputs],
            "outputs": [spec.as_json() for spec in self.outputs],
        }


def classify(row: Sequence[float]) -> list[float]:
    """tiny-classifier's answer for one row of 4 features."""
    logits = [sum(x * w[j] for x, w in zip(row, W, strict=True)) + B[j] for j in range(3)]
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    total = sum(exps)
    return [e / total for e in exps]


def _classifier(inputs: Mapping[str, Tensor]) -> list[Tensor]:
    features = inputs["features"]
    rows = features.shape[0]
    data = features.data
    out: list[float] = []
    for r in range(rows):
        out.extend(classify(data[4 * r : 4 * r + 4]))
    return [Tensor("probabilities", "FP32", [rows, 3], out)]


def tiny_classifier() -> FakeModel:
    return FakeModel(
        "tiny-classifier",
        (TensorSpec("features", "FP32", (-1, 4)),),
        (TensorSpec("probabilities", "FP32", (-1, 3)),),
        _classifier,
    )


def _flat(data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise BadRequest("tensor data must be an array")
    if not data or not isinstance(data[0], list):
        return data
    out: list[Any] = []
    for item in data:
        out.extend(_flat(item))
    return out


def _element_ok(datatype: str, value: Any) -> bool:
    if isinstance(value, bool):
        return datatype == "BOOL"
    if datatype in _NUMBER_TYPES:
        return isinstance(value, int | float)
    if datatype in _INTEGER_TYPES:
        return isinstance(value, int) and (value >= 0 or datatype.startswith("INT"))
    return datatype == "BYTES" and isinstance(value, str)


def _read_input(model: FakeModel, raw: Any) -> Tensor:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise BadRequest("each input needs a name")
    name = raw["name"]
    spec = next((s for s in model.inputs if s.name == name), None)
    if spec is None:
        raise BadRequest(f"unexpected inference input '{name}' for model '{model.name}'")
    if raw.get("datatype") != spec.datatype:
        raise BadRequest(
            f"inference input '{name}' data-type is '{raw.get('datatype')}', "
            f"but model '{model.name}' expects '{spec.datatype}'"
        )
    shape = raw.get("shape")
    if not (
        isinstance(shape, list)
        and len(shape) == len(spec.shape)
        and all(isinstance(d, int) and d >= 0 for d in shape)
        and all(want in (-1, got) for want, got in zip(spec.shape, shape, strict=True))
    ):
        raise BadRequest(
            f"unexpected shape for input '{name}' for model '{model.name}': "
            f"expected {list(spec.shape)}, got {shape}"
        )
    data = _flat(raw.get("data"))
    if len(data) != math.prod(shape):
        raise BadRequest(
            f"input '{name}' has {len(data)} elements; shape {shape} needs {math.prod(shape)}"
        )
    if not all(_element_ok(spec.datatype, v) for v in data):
        raise BadRequest(f"input '{name}' holds a value that is not {spec.datatype}")
    return Tensor(name, spec.datatype, shape, data)


def infer(model: FakeModel, version: str, body: Any) -> dict[str, Any]:
    """One inference, checked like a real server checks it."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise BadRequest("the request needs an `inputs` array")
    inputs: dict[str, Tensor] = {}
    for raw in body["inputs"]:
        tensor = _read_input(model, raw)
        if tensor.name in inputs:
            raise BadRequest(f"input '{tensor.name}' is given twice")
        inputs[tensor.name] = tensor
    if len(inputs) != len(model.inputs):
        raise BadRequest(
            f"expected {len(model.inputs)} inputs but got {len(body['inputs'])} inputs "
            f"for model '{model.name}'"
        )
    outputs = model.compute(inputs)
    wanted = body.get("outputs")
    if wanted is not None:
        names = [o.get("name") if isinstance(o, dict) else None for o in wanted]
        known = {t.name for t in outputs}
        for name in names:
            if name not in known:
                raise BadRequest(f"unexpected inference output '{name}' for model '{model.name}'")
        outputs = [t for t in outputs if t.name in names]
    response: dict[str, Any] = {"model_name": model.name, "model_version": version}
    if isinstance(body.get("id"), str):
        response["id"] = body["id"]
    response["outputs"] = [t.as_json() for t in outputs]
    return response


def _json(content: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(content), status=status, content_type="application/json")


@dataclass(slots=True)
class _Faults:
    status: int = 0
    remaining: int = 0  # -1: every call


class FakeKServe:
    """The server and its knobs. Serves ``models`` (default: tiny-classifier)."""

    def __init__(self, models: Iterable[FakeModel] = (), *, host: str = "127.0.0.1", port: int = 0):
        self.models = {m.name: m for m in (list(models) or [tiny_classifier()])}
        self.host = host
        self.port = port
        self.latency_s = 0.0
        self.unready: set[str] = set()  # model names whose /ready answers 503
        self.infer_calls = 0
        self.last_path = ""
        self.last_headers: Mapping[str, str] = {}
        self.last_body: Any = None
        self._faults = _Faults()
        self._closing = asyncio.Event()
        self._runner: web.ServerRunner | None = None
        # (count, future) per waiter of wait_for_infer_calls: a handler only
        # looks at the list, so serving costs nothing when no test waits.
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def fail_next(self, status: int, times: int = 1) -> None:
        """The next ``times`` infer calls answer ``status`` (a v2 error body)."""
        self._faults = _Faults(status, times)

    def fail_always(self, status: int) -> None:
        self._faults = _Faults(status, -1)

    def heal(self) -> None:
        self._faults = _Faults()

    async def wait_for_infer_calls(self, count: int) -> None:
        """Until ``count`` infer calls have arrived (a request can outlive its client)."""
        if self.infer_calls < count:
            future = asyncio.get_running_loop().create_future()
            self._waiters.append((count, future))
            await future

    async def __aenter__(self) -> Self:
        server = web.Server(self._handle, access_log=None)
        self._runner = web.ServerRunner(server, shutdown_timeout=5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=4096)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()  # requests held by latency_s end now
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        parts = [unquote(p) for p in request.raw_path.split("?", 1)[0].split("/")[1:]]
        try:
            if parts[:2] == ["v2", "models"] and len(parts) >= 3:
                return await self._model_route(request, parts[2:])
            if request.method == "GET" and parts in (
                ["v2", "health", "live"],
                ["v2", "health", "ready"],
            ):
                return _json({"live": True} if parts[2] == "live" else {"ready": True})
            if request.method == "GET" and parts == ["v2"]:
                return _json({"name": "fake-kserve", "version": "0", "extensions": []})
            raise BadRequest(f"no route {request.path}", 404)
        except BadRequest as exc:
            return _json({"error": str(exc)}, exc.status)

    async def _model_route(self, request: web.BaseRequest, parts: list[str]) -> web.StreamResponse:
        """``{name}[/versions/{v}][/ready|/infer]``."""
        model = self.models.get(parts[0])
        if model is None:
            raise BadRequest(f"Request for unknown model: '{parts[0]}' is not found", 404)
        version, rest = model.versions[-1], parts[1:]
        if rest[:1] == ["versions"] and len(rest) >= 2:
            version, rest = rest[1], rest[2:]
            if version not in model.versions:
                raise BadRequest(
                    f"Request for unknown model: '{model.name}' version {version}", 404
                )
        if rest == [] and request.method == "GET":
            return _json(model.metadata())
        if rest == ["ready"] and request.method == "GET":
            if model.name in self.unready:
                raise BadRequest(f"model '{model.name}' is not ready", 503)
            return _json({"name": model.name, "ready": True})
        if rest == ["infer"] and request.method == "POST":
            return await self._infer(request, model, version)
        raise BadRequest(f"no route {request.path}", 404)

    async def _infer(
        self, request: web.BaseRequest, model: FakeModel, version: str
    ) -> web.StreamResponse:
        raw = await request.read()
        self.infer_calls += 1
        self.last_path = request.path
        self.last_headers = request.headers
        if self._waiters:
            self._wake_waiters()
        try:
            self.last_body = body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BadRequest("the request body is not JSON") from None
        if self.latency_s > 0:
            try:
                await asyncio.wait_for(self._closing.wait(), self.latency_s)
            except TimeoutError:
                pass
        faults = self._faults
        if faults.remaining:
            if faults.remaining > 0:
                faults.remaining -= 1
            raise BadRequest(f"injected fault {faults.status}", faults.status)
        return _json(infer(model, version, body))

    def _wake_waiters(self) -> None:
        waiting = []
        for count, future in self._waiters:
            if self.infer_calls < count:
                waiting.append((count, future))
            elif not future.done():
                future.set_result(None)
        self._waiters = waiting


async def _serve(host: str, port: int, latency_s: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with FakeKServe(host=host, port=port) as fake:
        fake.latency_s = latency_s
        print(f"fake kserve listening on {fake.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake KServe v2 REST server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to each infer call")
    args = parser.parse_args(argv)
    uvloop.run(_serve(args.host, args.port, args.latency_ms / 1000))


if __name__ == "__main__":
    main()
