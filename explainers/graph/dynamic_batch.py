"""Rewrite a model whose batch dimension is fixed to 1 so that it accepts any batch size.

Model zoos often export with batch 1 baked in. Declaring the batch dimension symbolic is enough
for most graphs; graphs that also bake the batch into a ``Reshape`` target (``[1, -1]``) need that
leading 1 turned into 0 ("copy this dimension from the input"). Whether the result is *correct*
is not decidable from the graph alone: the caller verifies it numerically (a batch of two must
equal two single runs) and falls back to one sample per run when it is not.
"""

from __future__ import annotations

import onnx
from onnx import numpy_helper

from .index import GraphIndex

BATCH_DIM = "batch"


def has_fixed_batch(model: onnx.ModelProto, input_name: str) -> bool:
    """Whether ``input_name`` declares its first dimension as the literal 1."""
    for value in model.graph.input:
        if value.name == input_name:
            dims = value.type.tensor_type.shape.dim
            return len(dims) > 0 and dims[0].HasField("dim_value") and dims[0].dim_value == 1
    return False


def make_batch_dynamic(model: onnx.ModelProto, *, fix_reshapes: bool = False) -> onnx.ModelProto:
    """Return a copy whose graph inputs and outputs have a symbolic batch dimension.

    Intermediate ``value_info`` is dropped (it may repeat the fixed batch). With ``fix_reshapes``
    every Reshape whose constant target starts with 1 (and has ``allowzero`` unset) gets 0 there.
    """
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    initializer_names = {init.name for init in graph.initializer}
    for value in list(graph.input) + list(graph.output):
        if value.name in initializer_names:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) > 0 and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].dim_param = BATCH_DIM
    del graph.value_info[:]
    if fix_reshapes:
        _zero_leading_reshape_ones(graph)
    return result


def _zero_leading_reshape_ones(graph: onnx.GraphProto) -> None:
    index = GraphIndex(graph)
    for node in index.nodes:
        if node.op_type != "Reshape" or any(a.name == "allowzero" and a.i == 1 for a in node.attribute):
            continue
        target = node.input[1]
        constant = index.constant_node(target)
        if target in index.initializers:
            stored = index.initializers[target]
        elif constant is not None and any(a.name == "value" for a in constant.attribute):
            stored = next(a for a in constant.attribute if a.name == "value").t
        else:
            continue
        shape = numpy_helper.to_array(stored)
        if shape.ndim == 1 and shape.size > 1 and shape[0] == 1:
            shape = shape.copy()
            shape[0] = 0
            stored.CopyFrom(numpy_helper.from_array(shape, stored.name))
