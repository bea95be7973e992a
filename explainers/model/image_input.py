"""Rank-2 and rank-3 inputs that are images: give the model a rank-4 image input in front.

scikit-learn's digits classifiers take ``[N, 64]`` (an 8×8 grayscale image, flattened row by row);
MNIST-style models ``[N, 784]`` or ``[N, 28, 28]``. With ``image_shape`` in the config (``[H, W]``,
``[C, H, W]``, or ``"square"``: a square grayscale image, or for a rank-3 input its own H × W), the
graph gets a new rank-4 input under the old input's name — ``[N, C, H, W]``, or ``[N, H, W, C]``
when the config's layout is NHWC, which is then also the flattening order — and one ``Reshape``
to the old shape. Every method then sees an ordinary image classifier; heatmaps are H × W.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import InvalidModel
from .signature import graph_inputs

FLAT_SUFFIX = "/onnxplain_flat"


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def infer_image_shape(dims: list[int | None], image_shape: tuple[int, ...] | str) -> tuple[int, int, int]:
    """(C, H, W) for an input of per-sample ``dims``: from ``image_shape``, or ``"square"`` detected.

    Raises:
        InvalidModel: the shape does not hold as many values as the input, or "square" does not fit.
    """
    if image_shape == "square":
        if len(dims) == 2 and dims[0] and dims[1]:
            return 1, dims[0], dims[1]
        side = math.isqrt(dims[0] or 0) if len(dims) == 1 else 0
        if not side or side * side != dims[0]:
            raise InvalidModel(f"image_shape 'square': {dims[0]} values per sample are not a square image; "
                               "give [H, W] or [C, H, W]", field="config.image_shape")
        return 1, side, side
    shape = tuple(image_shape)
    chw = (1, *shape) if len(shape) == 2 else shape
    if None not in dims and math.prod(chw) != math.prod(dims):  # type: ignore[arg-type]
        raise InvalidModel(f"image_shape {list(shape)} holds {math.prod(chw)} values; the input holds "
                           f"{math.prod(dims)} per sample {dims}", field="config.image_shape")
    return chw  # type: ignore[return-value]


def with_image_input(model: onnx.ModelProto, image_shape: tuple[int, ...] | str | None,
                     layout: str | None) -> tuple[onnx.ModelProto, tuple[int, int, int] | None]:
    """The model with a rank-4 image input when its single input has rank 2 or 3 (else unchanged).

    Returns the model and the (C, H, W) used, or None when nothing changed.

    Raises:
        InvalidModel: a rank-2/3 input without ``image_shape`` (the message says what to set).
    """
    inputs = graph_inputs(model.graph)
    if len(inputs) != 1:
        return model, None
    value = inputs[0]
    dims = _dims(value)
    if len(dims) not in (2, 3):
        return model, None
    if image_shape is None:
        raise InvalidModel(
            f"input {value.name!r} has rank {len(dims)} {dims}: if it is an image, set image_shape in the model "
            "config: [H, W] (grayscale), [C, H, W], or \"square\" (e.g. 64 values → 8x8)", field="config.image_shape")
    channels, height, width = infer_image_shape(dims[1:], image_shape)
    wrapped = onnx.ModelProto()
    wrapped.CopyFrom(model)
    graph = wrapped.graph
    flat = value.name + FLAT_SUFFIX
    for node in graph.node:
        node.input[:] = [flat if name == value.name else name for name in node.input]
    target = [-1, *(d if d is not None else -1 for d in dims[1:])]
    if target.count(-1) > 1:
        target = [-1, *(1 for _ in dims[1:-1]), channels * height * width] if len(dims) == 2 else [-1, height, width]
    shape_name = value.name + "/onnxplain_shape"
    graph.initializer.append(numpy_helper.from_array(np.asarray(target, np.int64), shape_name))
    graph.node.insert(0, helper.make_node("Reshape", [value.name, shape_name], [flat], name="onnxplain/flatten"))
    batch = value.type.tensor_type.shape.dim[0]
    image_dims = [channels, height, width] if layout != "NHWC" else [height, width, channels]
    new_input = helper.make_tensor_value_info(value.name, value.type.tensor_type.elem_type,
                                              [batch.dim_param or batch.dim_value or "N", *image_dims])
    position = next(i for i, v in enumerate(graph.input) if v.name == value.name)
    del graph.input[position]
    graph.input.insert(position, new_input)
    return wrapped, (channels, height, width)
