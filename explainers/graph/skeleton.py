"""A model's skeleton: its graph with the large weight tensors declared instead of stored.

``onnx.checker.check_model`` and ``onnx.shape_inference.infer_shapes`` serialize the whole model
and walk every byte of it; on a VGG11 export (530 MB of weights, 400 MB of them one Gemm matrix)
each took several seconds of a gradient graph's build, for no information: neither needs a
weight's values, only its type and shape (data propagation reads small shape constants, which
stay). The skeleton keeps every node, input, output and small initializer, and declares each
large floating-point initializer as a graph input of the same type and shape. Fed the weights as
inputs it runs (:func:`weight_arrays`), which is how the introspection probes tensor shapes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

KEPT_ELEMENTS = 4096
"""Initializers up to this many elements (and every non-float one) stay: shape arithmetic reads them."""

_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}


def is_weight(tensor: onnx.TensorProto) -> bool:
    """A floating-point initializer over :data:`KEPT_ELEMENTS` elements."""
    return tensor.data_type in _FLOATS and int(np.prod(tensor.dims, dtype=np.int64)) > KEPT_ELEMENTS


def skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose large float initializers (:func:`is_weight`) are graph inputs.

    The copy costs the nodes and small tensors only; ``model`` is not modified. Graph attributes
    (If/Loop bodies) and model-local functions are copied whole.
    """
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    light.producer_name = model.producer_name
    light.functions.extend(model.functions)  # shape inference and onnxruntime need the model-local functions
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


def weight_arrays(model: onnx.ModelProto) -> dict[str, np.ndarray] | None:
    """Each of ``model``'s weights (:func:`is_weight`) as an array, by name: the feed that makes its
    :func:`skeleton` compute what the model computes — the same values, hence the same shapes even where a
    shape depends on values (NonZero, TopK, ...) — without serialising the weights for onnxruntime (0.4 s
    for a VGG11's 530 MB here, against 5 s). None when a weight has no numpy type onnxruntime takes
    (bfloat16)."""
    if any(is_weight(t) and t.data_type == onnx.TensorProto.BFLOAT16 for t in model.graph.initializer):
        return None
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if is_weight(t)}


def serialized_bytes(model: onnx.ModelProto) -> int:
    """``model.ByteSize()`` to within a few bytes per weight, without walking the bytes of the weights stored
    as ``raw_data`` (the protobuf call took 0.8 s on a VGG11 export): the skeleton's size plus each such
    weight's elements × item size; weights in typed fields (varint-encoded float16, ...) are measured, and
    external ones counted at their elements × item size (onnxruntime loads them too)."""
    total = skeleton(model).ByteSize()
    for tensor in model.graph.initializer:
        if not is_weight(tensor):
            continue
        if tensor.HasField("raw_data") or tensor.data_location == onnx.TensorProto.EXTERNAL:
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
            total += int(np.prod(tensor.dims, dtype=np.int64)) * itemsize
        else:
            total += tensor.ByteSize()
    return total


def check_structure(model: onnx.ModelProto) -> None:
    """``onnx.checker.check_model`` on the :func:`skeleton` (nodes, attributes, types, opsets).

    Raises:
        onnx.checker.ValidationError: as the checker does.
    """
    onnx.checker.check_model(skeleton(model))
