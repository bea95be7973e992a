"""A model's skeleton: its graph with the large weight tensors declared instead of stored.

``onnx.checker.check_model`` and ``onnx.shape_inference.infer_shapes`` serialize the whole model
and walk every byte of it; on a VGG11 export (530 MB of weights, 400 MB of them one Gemm matrix)
each took several seconds of a gradient graph's build, for no information: neither needs a
weight's values, only its type and shape (data propagation reads small shape constants, which
stay). The skeleton keeps every node, input, output and small initializer, and declares each
large floating-point initializer as a graph input of the same type and shape. Fed zeros for those
inputs (:func:`zero_weights`) it runs, which is how the introspection probes tensor shapes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

KEPT_ELEMENTS = 4096
"""Initializers up to this many elements (and every non-float one) stay: shape arithmetic reads them."""

_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}


def is_weight(tensor: onnx.TensorProto) -> bool:
    """A floating-point initializer over :data:`KEPT_ELEMENTS` elements."""
    return tensor.data_type in _FLOATS and int(np.prod(tensor.dims, dtype=np.int64)) > KEPT_ELEMENTS


def skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose large float initializers (:func:`is_weight`) are graph inputs.

    The copy costs the nodes and small tensors only; ``model`` is not modified. Graph attributes
    (If/Loop bodies) are copied whole.
    """
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    light.producer_name = model.producer_name
    graph, source = light.graph, model.graph
    graph.name = source.name
    graph.node.extend(source.node)
    graph.input.extend(source.input)
    graph.output.extend(source.output)
    graph.value_info.extend(source.value_info)
    declared = {value.name for value in source.input}
    for tensor in source.initializer:
        if not is_weight(tensor):
            graph.initializer.append(tensor)
        elif tensor.name not in declared:
            graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    return light


def zero_weights(model: onnx.ModelProto) -> dict[str, np.ndarray] | None:
    """Zeros shaped like each of ``model``'s weights (:func:`is_weight`), by name: the feed that makes its
    :func:`skeleton` runnable where only shapes matter (no weight's value sets a shape). ``np.zeros`` maps
    untouched pages, so even a VGG's 530 MB cost no memory until read, and reads map the zero page. None when a
    weight has no numpy dtype (bfloat16)."""
    zeros = {}
    for tensor in model.graph.initializer:
        if is_weight(tensor):
            if tensor.data_type == onnx.TensorProto.BFLOAT16:
                return None
            zeros[tensor.name] = np.zeros(tuple(tensor.dims), helper.tensor_dtype_to_np_dtype(tensor.data_type))
    return zeros


def serialized_bytes(model: onnx.ModelProto) -> int:
    """``model.ByteSize()`` to within a few bytes per weight, without walking the weights' bytes (the
    protobuf call took 0.8 s on a VGG11 export): the skeleton's size plus each weight's elements × item size."""
    weights = sum(int(np.prod(t.dims, dtype=np.int64)) * np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
                  for t in model.graph.initializer if is_weight(t))
    return skeleton(model).ByteSize() + weights


def check_structure(model: onnx.ModelProto) -> None:
    """``onnx.checker.check_model`` on the :func:`skeleton` (nodes, attributes, types, opsets).

    Raises:
        onnx.checker.ValidationError: as the checker does.
    """
    onnx.checker.check_model(skeleton(model))
