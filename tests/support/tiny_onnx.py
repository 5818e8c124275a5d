"""Tiny ONNX models built in code, byte for byte the same on every run.

``build_tiny_classifier`` is the model shipped as
``interlock/engines/models/tiny-classifier.onnx`` (``provider: onnx``,
``model: tiny-classifier``); regenerate that file with
``python -m tests.support.tiny_onnx`` after changing it (a test compares the
two). The others exist for the engine's tests: two inputs with a shared
symbolic batch dimension, a fixed batch dimension, a model that fails
inside onnxruntime, and strings.

Opset 17 and IR version 8: loadable by every onnxruntime since 1.14.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "BIAS",
    "BUNDLED_PATH",
    "WEIGHTS",
    "build_fixed_batch_model",
    "build_pairs_model",
    "build_string_model",
    "build_tiny_classifier",
    "build_two_input_model",
]

OPSET = 17
IR_VERSION = 8
BUNDLED_PATH = (
    Path(__file__).resolve().parents[2] / "src/interlock/engines/models/tiny-classifier.onnx"
)

# features (4) -> class scores (3); chosen so no two classes tie.
WEIGHTS = np.array(
    [
        [0.5, -0.25, 0.125],
        [-1.0, 0.75, 0.25],
        [0.25, 0.5, -0.75],
        [1.5, -0.5, 0.0],
    ],
    dtype=np.float32,
)
BIAS = np.array([0.1, -0.2, 0.05], dtype=np.float32)


def _model(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="interlock-tests",
        producer_version="1",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def build_tiny_classifier() -> bytes:
    """``features`` FP32 [batch, 4] -> ``probabilities`` FP32 [batch, 3]:
    softmax(features @ WEIGHTS + BIAS)."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "weights"], ["scores"]),
            helper.make_node("Add", ["scores", "bias"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        "tiny_classifier",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        initializer=[
            numpy_helper.from_array(WEIGHTS, "weights"),
            numpy_helper.from_array(BIAS, "bias"),
        ],
    )
    return _model(graph)


def build_two_input_model() -> bytes:
    """``ids`` INT64 [batch, seq] and ``scale`` FP32 [batch, 1] ->
    ``total`` FP32 [batch, 1] = sum(ids) * scale, ``doubled`` INT64
    [batch, seq] = ids + ids."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["ids"], ["ids_float"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", ["ids_float", "axes"], ["sums"], keepdims=1),
            helper.make_node("Mul", ["sums", "scale"], ["total"]),
            helper.make_node("Add", ["ids", "ids"], ["doubled"]),
        ],
        "two_inputs",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("scale", TensorProto.FLOAT, ["batch", 1]),
        ],
        [
            helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("doubled", TensorProto.INT64, ["batch", "seq"]),
        ],
        initializer=[numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    return _model(graph)


def build_fixed_batch_model() -> bytes:
    """``x`` FP32 [1, 4] -> ``y`` FP32 [1, 4] = relu(x): cannot be batched."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "fixed_batch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return _model(graph)


def build_pairs_model() -> bytes:
    """``x`` FP32 [batch, n] -> ``pairs`` FP32 [rows, 2]: every element
    count is valid input, but onnxruntime fails on an odd one (a model
    error no check can see), and ``pairs`` has more rows than ``x`` (a
    dynamic first dimension that is not the batch)."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "pair_shape"], ["pairs"])],
        "pairs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("pairs", TensorProto.FLOAT, ["rows", 2])],
        initializer=[numpy_helper.from_array(np.array([-1, 2], dtype=np.int64), "pair_shape")],
    )
    return _model(graph)


def build_string_model() -> bytes:
    """``text`` BYTES [n] -> ``same`` BYTES [n]: strings pass through."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["same"])],
        "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["n"])],
        [helper.make_tensor_value_info("same", TensorProto.STRING, ["n"])],
    )
    return _model(graph)


if __name__ == "__main__":
    BUNDLED_PATH.parent.mkdir(parents=True, exist_ok=True)
    BUNDLED_PATH.write_bytes(build_tiny_classifier())
    print(f"wrote {BUNDLED_PATH}")
