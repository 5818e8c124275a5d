"""Tensor models in process: an ONNX file run by onnxruntime (``provider:
onnx``), spoken to in KServe v2 / Open Inference Protocol shapes.

``model`` is a path to a ``.onnx`` file, or ``tiny-classifier`` for the
bundled demo model (``features`` FP32 [batch, 4] -> ``probabilities`` FP32
[batch, 3]). It needs the ``onnx`` extra (onnxruntime, numpy); without it,
or with a bad ``params`` entry or a missing file, the config is refused.
The session loads at ``start()`` in a worker thread; until then the model
is not ready and requests get a 503.

Requests are checked against the model's signature before anything runs
(400s that name the tensor); concurrent requests are batched when every
tensor's first dimension is dynamic (``interlock.engines.batcher``). A
failure inside onnxruntime is this deployment's fault: a ``ProviderError``
(502). Behaviour from ``params``:

====================  =========================================================
``max_batch_size``    rows in one run (default 32); 1 turns batching off
``max_wait_ms``       how long a batch waits for company after its first
                      request while every executor thread is busy (a free
                      thread runs a request at once); default 2.0, at most
                      1000; 0 turns batching off
``executor_threads``  runs at once, each in its own thread (default 2)
``intra_op_threads``  threads onnxruntime gives one run (default 1)
``max_queue``         requests waiting or running; past it a 503 (default 1024)
``run_when_idle``     a request that finds a thread free runs at once (default
                      true); false: every batch waits ``max_wait_ms`` for
                      company (the biggest batches, for throughput only)
====================  =========================================================
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from interlock.config import ConfigError, DeploymentConfig
from interlock.engines import MODELS_DIR, EngineError
from interlock.errors import (
    InvalidRequest,
    ProviderError,
    ServiceUnavailable,
    UnsupportedOperation,
)
from interlock.providers.base import CallContext, JSONDict, Provider

if TYPE_CHECKING:
    from interlock.engines.batcher import DynamicBatcher, Feeds, Outputs
    from interlock.engines.minilm_onnx import TextEncoder
    from interlock.engines.onnx_model import OnnxModel

__all__ = ["BUNDLED_MODELS", "EXTRA_MISSING", "OnnxParams", "OnnxProvider", "model_path"]

# Names ``model`` may give instead of a path: files in interlock/engines/models.
BUNDLED_MODELS = {"tiny-classifier": "tiny-classifier.onnx"}
EXTRA_MISSING = "provider 'onnx' needs the optional extra: pip install 'interlock[onnx]'"
_EXTRA_MODULES = ("onnxruntime", "numpy")
# Marks a directory as a text embedding model (engines/minilm_onnx.py).
_EMBEDDING_CONFIG = "interlock-embedding.json"


class OnnxParams(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    max_batch_size: int = Field(default=32, ge=1)
    max_wait_ms: float = Field(default=2.0, ge=0, le=1000)
    executor_threads: int = Field(default=2, ge=1)
    intra_op_threads: int = Field(default=1, ge=1)
    max_queue: int = Field(default=1024, ge=1)
    run_when_idle: bool = True


def _params(deployment: DeploymentConfig) -> OnnxParams:
    try:
        return OnnxParams.model_validate(deployment.params)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in ("params", *first["loc"]))
        raise ValueError(f"deployment {deployment.id}: {where}: {first['msg']}") from None


def _require_extra() -> None:
    """Finds the packages without importing them (importing is slow)."""
    for name in _EXTRA_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # e.g. a module set to None
            found = False
        if not found:
            raise ValueError(EXTRA_MISSING)


def model_path(model: str) -> Path:
    """The file ``model`` names: a bundled model's, the path itself
    (relative to the working directory), or a text embedding model's
    directory (``interlock models export-minilm``; its ``model.onnx``).
    ``ValueError`` when it is no file."""
    bundled = BUNDLED_MODELS.get(model)
    path = MODELS_DIR / bundled if bundled else Path(model).expanduser()
    if (path / _EMBEDDING_CONFIG).is_file():
        path = path / "model.onnx"
    if not path.is_file():
        known = ", ".join(BUNDLED_MODELS)
        raise ValueError(f"no ONNX model file at {str(path)!r} (bundled models: {known})")
    return path


class OnnxProvider(Provider):
    """One ONNX model served in this process; see the module docstring."""

    owned_by = "onnxruntime"
    provider_name = "onnxruntime"

    def __init__(self, deployment: DeploymentConfig):
        self.deployment_id = deployment.id
        self.version = deployment.version or "1"
        self.params = _params(deployment)
        _require_extra()
        try:
            self.path = model_path(deployment.model or "")
        except ValueError as exc:
            raise ValueError(f"deployment {deployment.id}: {exc}") from None
        # Called once per model run with its rows: a batch-size histogram.
        self.on_batch: Callable[[int], None] | None = None
        self._model: OnnxModel | None = None
        self._batcher: DynamicBatcher | None = None
        # A text embedding model also answers /v1/embeddings: texts are
        # tokenized, run, mean-pooled and normalised (engines/minilm_onnx.py).
        self.embeds_text = (self.path.parent / _EMBEDDING_CONFIG).is_file()
        self._encoder: TextEncoder | None = None

    async def start(self) -> None:
        # Imported here: numpy and onnxruntime load only for a deployment
        # that serves an ONNX model.
        from interlock.engines.batcher import DynamicBatcher
        from interlock.engines.onnx_model import OnnxModel

        params = self.params
        try:
            model = await asyncio.to_thread(
                OnnxModel.load, self.path, intra_op_threads=params.intra_op_threads
            )
        except ValueError as exc:
            raise ConfigError(f"deployment {self.deployment_id}: {exc}") from None
        if self.embeds_text:
            from interlock.engines.minilm_onnx import TextEncoder

            try:
                self._encoder = await asyncio.to_thread(TextEncoder, self.path.parent)
            except (ValueError, ImportError) as exc:
                raise ConfigError(f"deployment {self.deployment_id}: {exc}") from None
        batching = model.batchable and params.max_batch_size > 1 and params.max_wait_ms > 0
        self._batcher = DynamicBatcher(
            model.run,
            max_batch_size=params.max_batch_size if batching else 1,
            max_wait_s=params.max_wait_ms / 1000,
            max_queue=params.max_queue,
            executor_threads=params.executor_threads,
            on_batch=self._batched,
            thread_name_prefix=f"onnx-{self.deployment_id}",
            run_when_idle=params.run_when_idle,
        )
        self._model = model

    async def aclose(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
        self._model = None

    def _batched(self, rows: int) -> None:
        # Read at each batch, so the hook can be set after start().
        if self.on_batch is not None:
            self.on_batch(rows)

    def _loaded(self, ctx: CallContext) -> tuple[OnnxModel, DynamicBatcher]:
        if self._model is None or self._batcher is None:
            raise ServiceUnavailable(f"The model `{ctx.public_model}` is not loaded.")
        return self._model, self._batcher

    async def model_ready(self, ctx: CallContext) -> bool:
        return self._model is not None

    async def model_metadata(self, ctx: CallContext) -> JSONDict:
        model, _ = self._loaded(ctx)
        return model.metadata(ctx.public_model, [self.version])

    async def _run(self, batcher: DynamicBatcher, feeds: Feeds) -> Outputs:
        """One request's run in some batch; the engine failing is this
        deployment's fault (a 502 that counts against its breaker)."""
        try:
            return await batcher.submit(feeds)
        except EngineError as exc:
            raise ProviderError(
                str(exc), deployment=self.deployment_id, code="inference_failed"
            ) from exc

    async def infer(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        from interlock.engines.tensors import encode_output

        model, batcher = self._loaded(ctx)
        feeds = model.decode_inputs(body["inputs"])
        names = model.requested_outputs(body.get("outputs"))
        outputs = await self._run(batcher, feeds)
        response: JSONDict = {"model_name": ctx.public_model, "model_version": self.version}
        if body.get("id") is not None:
            response["id"] = body["id"]
        response["outputs"] = [encode_output(name, outputs[name]) for name in names]
        return response

    async def embed(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        encoder = self._encoder
        if encoder is None:
            return await super().embed(body, ctx)
        from interlock.engines.minilm_onnx import OUTPUT_NAME

        _, batcher = self._loaded(ctx)
        texts = body["input"]
        texts = [texts] if isinstance(texts, str) else texts
        if not all(isinstance(text, str) for text in texts):
            raise UnsupportedOperation(
                f"The model `{ctx.public_model}` takes text, not token ids.", param="input"
            )
        dimensions = body.get("dimensions")
        if dimensions is not None and dimensions != encoder.dimensions:
            raise InvalidRequest(
                f"The model `{ctx.public_model}` gives {encoder.dimensions} dimensions only.",
                param="dimensions",
            )
        feeds = await asyncio.to_thread(encoder.tokenize, texts)
        outputs = await self._run(batcher, feeds)
        mask = feeds["attention_mask"]
        vectors = encoder.pool(outputs[OUTPUT_NAME], mask)
        # Word pieces read, [CLS] and [SEP] not counted (as MiniLM's token_counts).
        tokens = max(0, int(mask.sum()) - 2 * len(texts))
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": row.tolist()}
                for i, row in enumerate(vectors)
            ],
            "model": ctx.public_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def chat(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        raise _no_chat(ctx)

    async def stream_chat(self, body: JSONDict, ctx: CallContext) -> AsyncIterator[bytes]:
        raise _no_chat(ctx)
        yield b""  # pragma: no cover - makes this a stream that fails when read


def _no_chat(ctx: CallContext) -> UnsupportedOperation:
    return UnsupportedOperation(
        f"The model `{ctx.public_model}` is a tensor model (/v1/infer); it does not support "
        "chat completions.",
        param="model",
    )
