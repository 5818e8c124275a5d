from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
