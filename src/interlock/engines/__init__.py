"""In-process engines: models run inside the gateway's own process.

Importing this package imports neither numpy nor onnxruntime; its modules
that need them are imported only by the provider that serves such a model,
once its extra is known to be installed. Bundled model files live in
``models/``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MODELS_DIR", "EngineError"]

MODELS_DIR = Path(__file__).parent / "models"


class EngineError(RuntimeError):
    """The engine failed to run a model on input that passed validation:
    the deployment's fault, not the caller's (the provider makes it a
    ``ProviderError``)."""
