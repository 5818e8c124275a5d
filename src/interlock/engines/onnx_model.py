"""One ONNX model in an onnxruntime session, on the CPU.

``OnnxModel`` knows the model's signature and checks a whole v2 request
against it (names, datatypes, shapes, requested outputs) before anything
runs, so the caller's mistakes are 400s and what fails inside onnxruntime
afterwards is the deployment's (``EngineError``). ``load`` and ``run``
block: call them off the event loop. One session serves concurrent
``run`` calls (onnxruntime allows it), so threads share a model.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interlock.engines import EngineError
from interlock.engines.tensors import ORT_TO_V2, Array, TensorSpec, decode_input
from interlock.errors import InvalidRequest

__all__ = ["PLATFORM", "OnnxModel", "Signature"]

# The platform name KServe and Triton report for ONNX models.
PLATFORM = "onnxruntime_onnx"
# Errors only: onnxruntime's warnings (e.g. unused initializers) are about
# the model file, and would print on every load.
_LOG_ERRORS = 3


@dataclass(frozen=True, slots=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def _spec(arg: Any) -> TensorSpec:
    """A ``TensorSpec`` from an onnxruntime ``NodeArg``."""
    datatype = ORT_TO_V2.get(arg.type)
    if datatype is None:
        raise ValueError(f"tensor '{arg.name}' has type {arg.type}, which KServe v2 cannot carry")
    dims = list(arg.shape or [])
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in dims)
    names = tuple(d if isinstance(d, str) and d else None for d in dims)
    return TensorSpec(arg.name, datatype, shape, names)


class OnnxModel:
    """A loaded model: its signature, request checks, and blocking ``run``."""

    def __init__(self, session: Any):
        self._session = session
        self.signature = Signature(
            inputs=tuple(_spec(arg) for arg in session.get_inputs()),
            outputs=tuple(_spec(arg) for arg in session.get_outputs()),
        )
        tensors = self.signature.inputs + self.signature.outputs
        # Rows of concurrent requests can share one run only when every
        # tensor's first dimension is free to be the batch.
        self.batchable = bool(self.signature.inputs) and all(
            spec.shape[:1] == (-1,) for spec in tensors
        )

    @classmethod
    def load(cls, path: str | Path, *, intra_op_threads: int = 1) -> OnnxModel:
        """Load a .onnx file on the CPU provider; ``ValueError`` when it
        cannot be loaded or its tensors are not v2 tensors. Blocks."""
        # By name: onnxruntime has no type information, and the extra may
        # not be installed where mypy runs.
        ort = importlib.import_module("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = _LOG_ERRORS
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's errors share no base class
            raise ValueError(f"cannot load ONNX model {path}: {exc}") from None
        return cls(session)

    def run(
        self, feeds: Mapping[str, Array], output_names: Sequence[str] | None = None
    ) -> dict[str, Array]:
        """Run once (blocks); every output unless ``output_names`` picks some."""
        names = list(output_names or [spec.name for spec in self.signature.outputs])
        try:
            results = self._session.run(names, dict(feeds))
        except Exception as exc:  # onnxruntime's errors share no base class
            raise EngineError(f"onnxruntime failed: {exc}") from exc
        return dict(zip(names, results, strict=True))

    def metadata(self, name: str, versions: Sequence[str]) -> dict[str, Any]:
        """The v2 model metadata response."""
        return {
            "name": name,
            "versions": list(versions),
            "platform": PLATFORM,
            "inputs": [spec.metadata() for spec in self.signature.inputs],
            "outputs": [spec.metadata() for spec in self.signature.outputs],
        }

    def decode_inputs(self, inputs: Sequence[Mapping[str, Any]]) -> dict[str, Array]:
        """A request's ``inputs`` as feeds, or a 400 naming the tensor."""
        specs = {spec.name: spec for spec in self.signature.inputs}
        seen: set[str] = set()
        for index, tensor in enumerate(inputs):
            name = tensor.get("name")
            if name not in specs:
                raise InvalidRequest(
                    f"The model has no input tensor '{name}'; its inputs are {_names(specs)}.",
                    param=f"inputs[{index}].name",
                    code="invalid_value",
                )
            if name in seen:
                raise InvalidRequest(
                    f"Input tensor '{name}' is given more than once.",
                    param=f"inputs[{index}].name",
                    code="invalid_value",
                )
            seen.add(name)
        missing = [name for name in specs if name not in seen]
        if missing:
            raise InvalidRequest(
                f"Missing input tensor '{missing[0]}': the model needs {_names(specs)}.",
                param="inputs",
                code="missing_required_parameter",
            )
        feeds = {
            tensor["name"]: decode_input(index, tensor, specs[tensor["name"]])
            for index, tensor in enumerate(inputs)
        }
        _check_shared_dimensions(inputs, feeds, specs)
        return feeds

    def requested_outputs(self, outputs: Sequence[Mapping[str, Any]] | None) -> list[str]:
        """The output names a request asks for, in its order; all of the
        model's when it names none."""
        known = [spec.name for spec in self.signature.outputs]
        if not outputs:
            return known
        names: list[str] = []
        for index, output in enumerate(outputs):
            name = output.get("name")
            if name not in known or name in names:
                problem = "is asked for twice" if name in names else "is not an output of the model"
                raise InvalidRequest(
                    f"Output tensor '{name}' {problem}; its outputs are {_names(known)}.",
                    param=f"outputs[{index}].name",
                    code="invalid_value",
                )
            names.append(name)
        return names


def _names(names: Mapping[str, Any] | Sequence[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def _check_shared_dimensions(
    inputs: Sequence[Mapping[str, Any]], feeds: Mapping[str, Array], specs: Mapping[str, TensorSpec]
) -> None:
    """Inputs whose dimensions share a symbolic name (``batch``) must agree
    on its size; onnxruntime would otherwise fail deep in the graph, as if
    the model were at fault."""
    sizes: dict[str, tuple[int, str]] = {}
    for index, tensor in enumerate(inputs):
        name = tensor["name"]
        for dim_name, size in zip(specs[name].dim_names, feeds[name].shape, strict=False):
            if dim_name is None:
                continue
            first = sizes.setdefault(dim_name, (size, name))
            if first[0] != size:
                raise InvalidRequest(
                    f"Input tensors '{first[1]}' and '{name}' disagree on dimension "
                    f"'{dim_name}': {first[0]} and {size}.",
                    param=f"inputs[{index}].shape",
                    code="invalid_value",
                )
