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
