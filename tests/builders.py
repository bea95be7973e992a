"""Tiny analytic ONNX classifiers built in code, with answers known by hand."""

from __future__ import annotations

import io

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    """Encode a uint8 image array (tests feed the server encoded images)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def _model(nodes, inputs, outputs, initializers, opset=OPSET) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "test", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def linear(weights: np.ndarray, *, bias: np.ndarray | None = None, batch: int | str = "N", layout="NCHW",
           softmax: bool = False) -> onnx.ModelProto:
    """logits[k] = Σ weights[k] ⊙ x + bias[k]; ``weights`` [K, C, H, W] in canonical layout."""
    k, c, h, w = weights.shape
    shape = [batch, c, h, w] if layout == "NCHW" else [batch, h, w, c]
    nodes, first = [], "x"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", ["x"], ["x_nchw"], perm=[0, 3, 1, 2]))
        first = "x_nchw"
    flat_shape = np.array([1 if batch == 1 else -1, c * h * w] if batch == 1 else [0, -1], np.int64)
    nodes += [
        helper.make_node("Reshape", [first, "flat_shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "b"], ["logits"], transB=1),
    ]
    out = "logits"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
        out = "probs"
    b = np.zeros(k, np.float32) if bias is None else bias.astype(np.float32)
    inits = [
        numpy_helper.from_array(flat_shape, "flat_shape"),
        numpy_helper.from_array(weights.reshape(k, -1).astype(np.float32), "W"),
        numpy_helper.from_array(b, "b"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, k])],
        inits,
    )


def quadrant(size: int = 16, channels: int = 3, classes: int = 2) -> onnx.ModelProto:
    """Only the top-left quadrant matters: logits[k] = (k + 1) · mean(x[:, :, :h/2, :w/2] ** 2)."""
    half = size // 2
    nodes = [
        helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["q"]),
        helper.make_node("Mul", ["q", "q"], ["q2"]),
        helper.make_node("ReduceMean", ["q2"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "one"], ["m1"]),
        helper.make_node("Mul", ["m1", "scale"], ["logits"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([0, 0], np.int64), "starts"),
        numpy_helper.from_array(np.array([half, half], np.int64), "ends"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.arange(1, classes + 1, dtype=np.float32)[None], "scale"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        inits,
    )


def two_outputs(weights: np.ndarray) -> onnx.ModelProto:
    """skl2onnx-style: an int64 label output first, then probabilities."""
    k, c, h, w = weights.shape
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "b"], ["z"], transB=1),
        helper.make_node("Softmax", ["z"], ["output_probability"], axis=1),
        helper.make_node("ArgMax", ["z"], ["output_label"], axis=1, keepdims=0),
    ]
    inits = [
        numpy_helper.from_array(weights.reshape(k, -1).astype(np.float32), "W"),
        numpy_helper.from_array(np.zeros(k, np.float32), "b"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, h, w])],
        [
            helper.make_tensor_value_info("output_label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("output_probability", TensorProto.FLOAT, ["N", k]),
        ],
        inits,
    )


def small_cnn(size: int = 16, channels: int = 3, hidden: int = 4, classes: int = 3, seed: int = 0) -> onnx.ModelProto:
    """Conv(3x3, pad 1) → Relu → GlobalAveragePool → Flatten → Gemm: a CAM-able net."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["conv"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv"], ["act"]),
        helper.make_node("GlobalAveragePool", ["act"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"], transB=1),
    ]
    inits = [
        numpy_helper.from_array(rng.standard_normal((hidden, channels, 3, 3)).astype(np.float32), "cw"),
        numpy_helper.from_array(rng.standard_normal(hidden).astype(np.float32) * 0.1, "cb"),
        numpy_helper.from_array(rng.standard_normal((classes, hidden)).astype(np.float32), "fw"),
        numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32) * 0.1, "fb"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        inits,
    )


def affine_generator(weights: np.ndarray, bias: np.ndarray, shape: tuple[int, ...],
                     input_shape: tuple[int, ...] | None = None) -> onnx.ModelProto:
    """A companion u ↦ reshape(weights · flatten(u) + bias) to [N, *shape]: a linear generator (u = z [N, d])
    or encoder (u = an image [N, C, H, W], ``input_shape``); ``weights`` [prod(shape), prod(input_shape)]."""
    input_shape = input_shape or (weights.shape[1],)
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "W", "b"], ["affine"], transB=1),
             helper.make_node("Reshape", ["affine", "shape"], ["output"])]
    inits = [numpy_helper.from_array(weights.astype(np.float32), "W"),
             numpy_helper.from_array(bias.astype(np.float32), "b"),
             numpy_helper.from_array(np.array([-1, *shape], np.int64), "shape")]
    return _model(nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *input_shape])],
                  [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", *shape])], inits)


def small_generator(shape: tuple[int, int, int] = (3, 16, 16), latent: int = 6, seed: int = 12) -> onnx.ModelProto:
    """A seeded linear generator of ``shape`` images from ``latent`` numbers: the companion model the
    conformance suite and the test server give methods that need one (e.g. ``cdeepex``)."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    return affine_generator(rng.standard_normal((size, latent)) / 3, rng.standard_normal(size), shape)
