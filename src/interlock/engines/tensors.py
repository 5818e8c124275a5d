"""KServe v2 tensors to numpy arrays and back, checked against a model.

The edge has already validated the request's shape (``InferTensor``: a
known datatype, element count equal to the shape's product). What only the
model can say is checked here, and every refusal is a 400 that names the
tensor and the parameter to fix: the datatype the model expects, its rank
and fixed dimensions, and values of the right kind. JSON is strict about
kinds the way the protocol is: ``"1.5"`` is not an FP32 and ``true`` is not
an INT64, even where numpy would convert them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from interlock.errors import InvalidRequest
from interlock.pipeline.schemas import flat_data

__all__ = [
    "ORT_TO_V2",
    "V2_TO_NUMPY",
    "Array",
    "TensorSpec",
    "datatype_of",
    "decode_input",
    "encode_output",
]

Array = NDArray[Any]

V2_TO_NUMPY: Final[Mapping[str, np.dtype[Any]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    # onnxruntime takes and gives string tensors as arrays of Python str.
    "BYTES": np.dtype(object),
}
_NUMPY_TO_V2: Final[Mapping[np.dtype[Any], str]] = {
    dtype: name for name, dtype in V2_TO_NUMPY.items()
}

# onnxruntime's names for ONNX tensor element types (``NodeArg.type``).
ORT_TO_V2: Final[Mapping[str, str]] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

_INTEGERS = frozenset({"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"})
_FLOATS = frozenset({"FP16", "FP32", "FP64"})


def _accepts(datatype: str) -> tuple[frozenset[type], str]:
    """The JSON value kinds a datatype takes (exact types: a bool is not an
    int here), and how to name them in a message."""
    if datatype == "BOOL":
        return frozenset({bool}), "a boolean"
    if datatype in _INTEGERS:
        return frozenset({int}), "an integer"
    if datatype in _FLOATS:
        return frozenset({int, float}), "a number"
    return frozenset({str}), "a string"


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One tensor of a model's signature.

    ``shape`` has -1 for a dimension of any size; ``dim_names`` holds the
    model's symbolic name for such a dimension where it gave one (inputs
    sharing a name must agree on its size), else ``None``.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    dim_names: tuple[str | None, ...] = ()

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def _shown(shape: Sequence[int]) -> str:
    text = str(list(shape))
    return f"{text} (-1: any size)" if -1 in shape else text


def decode_input(index: int, tensor: Mapping[str, Any], spec: TensorSpec) -> Array:
    """The request's ``inputs[index]`` as an array shaped as the request
    says, or a 400 naming the tensor and what the model expects."""
    name = spec.name
    datatype = tensor.get("datatype")
    if datatype != spec.datatype:
        raise InvalidRequest(
            f"Input tensor '{name}' has datatype {datatype}; the model expects {spec.datatype}.",
            param=f"inputs[{index}].datatype",
            code="invalid_value",
        )
    shape = tuple(tensor.get("shape", ()))
    fits = len(shape) == len(spec.shape) and all(
        want < 0 or got == want for got, want in zip(shape, spec.shape, strict=True)
    )
    if not fits:
        raise InvalidRequest(
            f"Input tensor '{name}' has shape {list(shape)}; the model expects "
            f"{_shown(spec.shape)}.",
            param=f"inputs[{index}].shape",
            code="invalid_value",
        )
    values = flat_data(tensor.get("data", []))
    allowed, kind = _accepts(spec.datatype)
    if not set(map(type, values)) <= allowed:
        bad = next(value for value in values if type(value) not in allowed)
        raise InvalidRequest(
            f"Input tensor '{name}' holds {_short(bad)}, which is not {kind} ({spec.datatype}).",
            param=f"inputs[{index}].data",
            code="invalid_value",
        )
    try:
        # Overflow in a float cast is only a warning to numpy; here it is
        # the caller's value out of range.
        with np.errstate(over="raise"):
            array = np.asarray(values, dtype=V2_TO_NUMPY[spec.datatype])
    except (OverflowError, FloatingPointError):
        raise InvalidRequest(
            f"Input tensor '{name}' holds a value out of range for {spec.datatype}.",
            param=f"inputs[{index}].data",
            code="invalid_value",
        ) from None
    return array.reshape(shape)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def datatype_of(array: Array) -> str:
    """The v2 datatype of an array; numpy's fixed-width strings are BYTES."""
    if array.dtype.kind in "OUS":
        return "BYTES"
    datatype = _NUMPY_TO_V2.get(array.dtype.newbyteorder("="))
    if datatype is None:
        raise TypeError(f"no KServe v2 datatype for numpy dtype {array.dtype}")
    return datatype


def encode_output(name: str, array: Array) -> dict[str, Any]:
    """A v2 output tensor: ``data`` flat, row-major."""
    datatype = datatype_of(array)
    data = array.ravel().tolist()
    if datatype == "BYTES":
        # JSON carries strings; a model that gives raw bytes gets them decoded.
        data = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in data]
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}
