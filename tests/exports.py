"""Models that reproduce what real exporters hand users (issue 11): built with onnx.helper, or cut from a
committed fixture. Each returns an ONNX model whose right answer on a known image is known by hand."""

from __future__ import annotations

from pathlib import Path

import builders
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def brightness(channels: int = 3, size: int = 8, *, layout: str = "NCHW") -> onnx.ModelProto:
    """Two classes: logit 0 = mean pixel, logit 1 = −mean pixel. After a normalisation that centres
    pixels on mid-grey, a dark photo is class 1 and a bright one class 0; fed raw 0–255 pixels
    (defaulted preprocessing) every photo is class 0."""
    weights = np.stack([np.ones((channels, size, size)), -np.ones((channels, size, size))]) / (channels * size * size)
    return builders.linear(weights.astype(np.float32), layout=layout)


def with_metadata(model: onnx.ModelProto, **props: str) -> onnx.ModelProto:
    """``model`` with ONNX ``metadata_props`` (keys may hold dots: pass a dict with ``**``)."""
    onnx.helper.set_model_props(model, props)
    return model


def float16(model: onnx.ModelProto) -> onnx.ModelProto:
    """An FP16 export of a ``builders.linear`` model: FP16 input, weights, output (shape constants stay int64)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for init in out.graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for value in (*out.graph.input, *out.graph.output):
        value.type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.checker.check_model(out)
    return out


def flat_digits() -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """The committed skl2onnx digits MLP as skl2onnx writes it: input ``[batch, 64]`` (the fixture's
    image wrapper cut off). Returns (model, three 8×8 digits in [0, 1], sklearn's labels for them)."""
    model = onnx.load(FIXTURES / "sklearn_mlp.onnx")
    golden = np.load(FIXTURES / "sklearn_mlp.npz")
    graph = model.graph
    wrapper = next(node for node in graph.node if node.op_type == "Reshape" and node.input[0] == "input")
    flat = wrapper.output[0]
    graph.node.remove(wrapper)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(flat, TensorProto.FLOAT, ["batch", 64]))
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    onnx.checker.check_model(model)
    return model, golden["x"].reshape(-1, 8, 8), golden["label"]


# ---------------------------------------------------------------- graphs of other exporters (issue 11, items 4-5)

def _cnn_weights(channels: int = 3, hidden: int = 4, classes: int = 3, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w1": rng.standard_normal((hidden, channels, 3, 3)), "b1": 0.1 * rng.standard_normal(hidden),
            "w2": rng.standard_normal((hidden, hidden, 3, 3)) / 2, "b2": 0.1 * rng.standard_normal(hidden),
            "fw": rng.standard_normal((hidden, classes)), "fb": 0.1 * rng.standard_normal(classes)}


def _model(nodes, image: list, output: str, classes: int, initializers: dict, opset: int, *, ir: int = 8,
           domains: tuple = ()) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "export", [helper.make_tensor_value_info("x", TensorProto.FLOAT, image)],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(v if v.dtype == np.int64 else v.astype(np.float32), k)
         for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *domains])
    model.ir_version = ir
    onnx.checker.check_model(model)
    return model


def upsampling_cnn(opset: int, size: int = 16) -> onnx.ModelProto:
    """Conv → Relu → crop the top-left half (``Slice``) → nearest ×2 upsampling → Conv → Relu ("act")
    → GlobalAveragePool → Flatten → Gemm, written in ``opset``'s own forms: opset 7–8 ``Slice``-1 and
    ``Upsample`` with attributes (what caffe2onnx and old tf2onnx write), 9 ``Upsample`` with a
    scales input, ≥ 11 ``Slice`` with inputs and ``Resize``. The same function in every opset."""
    inits = _cnn_weights()
    half = size // 2
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c1"], ["r1"])]
    if opset < 10:
        nodes.append(helper.make_node("Slice", ["r1"], ["crop"], axes=[2, 3], starts=[0, 0], ends=[half, half]))
    else:
        inits |= {"starts": np.array([0, 0], np.int64), "ends": np.array([half, half], np.int64),
                  "axes": np.array([2, 3], np.int64)}
        nodes.append(helper.make_node("Slice", ["r1", "starts", "ends", "axes"], ["crop"]))
    scales = np.array([1, 1, 2, 2], np.float32)
    if opset < 9:
        nodes.append(helper.make_node("Upsample", ["crop"], ["up"], mode="nearest", scales=scales.tolist()))
    elif opset < 11:
        inits["scales"] = scales
        nodes.append(helper.make_node("Upsample", ["crop", "scales"], ["up"], mode="nearest"))
    else:
        inits |= {"roi": np.zeros(0, np.float32), "scales": scales}
        nodes.append(helper.make_node("Resize", ["crop", "roi", "scales"], ["up"], mode="nearest",
                                      coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
    inits["fw"] = inits["fw"].T.copy()
    nodes += [helper.make_node("Conv", ["up", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
              helper.make_node("Relu", ["c2"], ["act"]),
              helper.make_node("GlobalAveragePool", ["act"], ["pool"]),
              helper.make_node("Flatten", ["pool"], ["flat"]),
              helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"], transB=1)]
    return _model(nodes, ["N", 3, size, size], "logits", 3, inits, opset, ir=4)


def conv_net(layout: str, size: int = 16) -> onnx.ModelProto:
    """Two Conv → Relu ("act") → global average pool → linear, classes 3; the same function for both
    layouts. ``"NCHW"``: as torch exports it (GlobalAveragePool → Flatten → MatMul → Add).
    ``"NHWC"``: as tf2onnx exports the Keras model: input [N, H, W, C], every Conv wrapped in
    ``Transpose`` perm [0, 3, 1, 2] / [0, 2, 3, 1] so the activations stay NHWC, the pooling a
    ``ReduceMean`` over axes [1, 2], then Keras's ``Reshape((1, 1, K))`` ([N, 1, 1, 4], the tensor the
    CAM layer detection used to pick) and a ``Reshape`` to [N, K] before the MatMul."""
    inits = _cnn_weights() | {"flat": np.array([-1, 4], np.int64), "keras": np.array([-1, 1, 1, 4], np.int64)}
    if layout == "NCHW":
        nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
                 helper.make_node("Relu", ["c1"], ["r1"]),
                 helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
                 helper.make_node("Relu", ["c2"], ["act"]),
                 helper.make_node("GlobalAveragePool", ["act"], ["pool"]),
                 helper.make_node("Reshape", ["pool", "flat"], ["features"])]
        image = ["N", 3, size, size]
    else:
        nodes = []
        source = "x"
        for i in (1, 2):
            nodes += [helper.make_node("Transpose", [source], [f"t{i}"], perm=[0, 3, 1, 2]),
                      helper.make_node("Conv", [f"t{i}", f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1],
                                       kernel_shape=[3, 3]),
                      helper.make_node("Transpose", [f"c{i}"], [f"c{i}_nhwc"], perm=[0, 2, 3, 1]),
                      helper.make_node("Relu", [f"c{i}_nhwc"], ["act" if i == 2 else f"r{i}"])]
            source = f"r{i}"
        nodes += [helper.make_node("ReduceMean", ["act"], ["pool"], axes=[1, 2], keepdims=0),
                  helper.make_node("Reshape", ["pool", "keras"], ["keras_reshape"]),
                  helper.make_node("Reshape", ["keras_reshape", "flat"], ["features"])]
        image = ["N", size, size, 3]
    nodes += [helper.make_node("MatMul", ["features", "fw"], ["mm"]),
              helper.make_node("Add", ["mm", "fb"], ["logits"])]
    return _model(nodes, image, "logits", 3, inits, 13)


def softmax_cnn(*, zipmap: bool = False, scale_input: str | None = None, scale_default: float | None = 2.0,
                unread_input: bool = False, size: int = 16) -> onnx.ModelProto:
    """``conv_net("NCHW")`` scaled by 2 and ending in Softmax (output ``output_probability``), as
    skl2onnx-style exports write it. ``zipmap``: the probabilities zipped into a sequence of maps by
    ``ZipMap`` (skl2onnx's default), an int64 ``output_label`` first. ``scale_input``: the scale is a
    second graph input of that name, with an initializer default ``scale_default`` (None: no
    default). ``unread_input``: a ``training`` flag input that nothing reads (tf2onnx leftovers)."""
    model = conv_net("NCHW", size)
    graph = model.graph
    scale = scale_input or "scale"
    if scale_default is not None:
        graph.initializer.append(numpy_helper.from_array(np.array([scale_default], np.float32), scale))
    if scale_input:
        graph.input.append(helper.make_tensor_value_info(scale, TensorProto.FLOAT, [1]))
    graph.node[0].input[0] = "scaled"
    graph.node.insert(0, helper.make_node("Mul", ["x", scale], ["scaled"]))
    graph.node.extend([helper.make_node("Softmax", ["logits"], ["output_probability"], axis=1)])
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("output_probability", TensorProto.FLOAT, ["N", 3]))
    if unread_input:
        graph.input.append(helper.make_tensor_value_info("training", TensorProto.BOOL, []))
    if zipmap:
        graph.node[-1].output[0] = "probabilities"
        graph.node.extend([
            helper.make_node("ArgMax", ["probabilities"], ["output_label"], axis=1, keepdims=0),
            helper.make_node("ZipMap", ["probabilities"], ["output_probability"], domain="ai.onnx.ml",
                             classlabels_int64s=[0, 1, 2])])
        del graph.output[:]
        graph.output.extend([
            helper.make_tensor_value_info("output_label", TensorProto.INT64, ["N"]),
            helper.make_value_info("output_probability", helper.make_sequence_type_proto(
                helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, []))))])
        model.opset_import.append(helper.make_opsetid("ai.onnx.ml", 1))
    onnx.checker.check_model(model)
    return model
