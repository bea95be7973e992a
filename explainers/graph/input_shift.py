"""A model that reads a constant-shifted input and computes the same function (Kindermans et al. 2019,
"The (Un)reliability of Saliency Methods", §2: input invariance).

Given the model f and a shift c (one value per channel), the rewrite builds g with g(x + c) = f(x)
for every x: the two models are functionally the same classifier on shifted data, so an attribution
method that is *input invariant* gives g at x + c the map f gives at x.

Where it is exact, the shift is folded into the first layer's bias, as in the paper:

* a Conv reading the image with no padding (``pads`` all 0, ``auto_pad`` NOTSET or VALID), any
  ``group``: y = W ⋆ x + b, so W ⋆ (x + c) = W ⋆ x + W ⋆ c and
  b′[o] = b[o] − Σ_{i,kh,kw} W[o, i, kh, kw] · c[g(o)·C_g + i];
* a Gemm (``transA`` 0, β ≠ 0) or MatMul + Add reading ``Flatten(image, axis=1)`` (or ``Reshape(image, [0, −1])``): the flattened
  shift d (c repeated over the pixels in the input's layout) moves the output by α·d·B′, so
  C′ = C − α·d·B′ / β (for MatMul + Add: b′ = b − d·W).

With zero padding the border is not shifted, so the bias cannot absorb it; there (and for any other
first layer) a node ``Sub(x, c)`` is prepended instead, which is exact up to float rounding. Either
way the rewrite is checked by the caller on real scores (:mod:`..metrics.shift_invariance`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import helper, numpy_helper

from .index import GraphIndex

COMPENSATION_NODE = "input_shift_compensation"


@dataclass(frozen=True)
class ShiftedModel:
    """``model`` computes g with g(x + c) = f(x). ``folded``: the shift went into the bias of
    ``layer`` (the first layer's name); otherwise a ``Sub`` node named ``layer`` was prepended."""

    model: onnx.ModelProto
    folded: bool
    layer: str


def shift_compensated(model: onnx.ModelProto, input_name: str, shift: NDArray[np.floating], *,
                      layout: str = "NCHW") -> ShiftedModel:
    """g from f = ``model`` for the per-channel ``shift`` c [C] of the input ``input_name``
    (``layout`` NCHW or NHWC, rank 4); see the module docstring."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    index = GraphIndex(copy)
    shift = np.asarray(shift, np.float64)
    readers = [node for node in index.consumers_of(input_name) if node.op_type != "Shape"]  # Shape ignores values
    if len(readers) == 1:
        first = readers[0]
        if layout == "NCHW" and first.op_type == "Conv" and _unpadded(first):
            if _fold_into_conv(copy, index, first, shift):
                return ShiftedModel(copy, True, first.name or first.output[0])
        if _flattens(first, index):
            folded = _fold_into_dense(copy, index, first, shift, layout)
            if folded is not None:
                return ShiftedModel(copy, True, folded)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    _prepend_subtraction(copy, input_name, shift, layout)
    return ShiftedModel(copy, False, COMPENSATION_NODE)


def _attribute(node: onnx.NodeProto, name: str, default):
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _unpadded(conv: onnx.NodeProto) -> bool:
    auto_pad = _attribute(conv, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    return auto_pad in ("NOTSET", "VALID") and not any(_attribute(conv, "pads", []))


def _new_initializer(model: onnx.ModelProto, base: str, value: np.ndarray) -> str:
    """Add ``value`` as a fresh initializer named after ``base``; its name."""
    taken = {init.name for init in model.graph.initializer} | {n for node in model.graph.node for n in node.output}
    name, k = f"{base}__shift_compensated", 0
    while name in taken:
        k += 1
        name = f"{base}__shift_compensated_{k}"
    model.graph.initializer.append(numpy_helper.from_array(value, name))
    return name


def _fold_into_conv(model: onnx.ModelProto, index: GraphIndex, conv: onnx.NodeProto, shift: NDArray) -> bool:
    weight = index.constant(conv.input[1])
    if weight is None or weight.ndim != 4:
        return False
    out_channels, per_group = weight.shape[:2]
    group = _attribute(conv, "group", 1)
    if per_group * group != len(shift):
        return False
    w = weight.astype(np.float64)
    c = shift.reshape(group, per_group)[np.arange(out_channels) // (out_channels // group)]  # [O, C_g]
    moved = np.einsum("oikl,oi->o", w, c)
    bias_name = conv.input[2] if len(conv.input) > 2 and conv.input[2] else ""
    bias = index.constant(bias_name) if bias_name else np.zeros(out_channels, weight.dtype)
    if bias is None:
        return False
    new_bias = (bias.astype(np.float64) - moved).astype(weight.dtype)
    name = _new_initializer(model, bias_name or f"{conv.input[1]}_bias", new_bias)
    if len(conv.input) > 2:
        conv.input[2] = name
    else:
        conv.input.append(name)
    return True


def _fold_into_dense(model: onnx.ModelProto, index: GraphIndex, flatten: onnx.NodeProto, shift: NDArray,
                     layout: str) -> str | None:
    readers = index.consumers_of(flatten.output[0])
    input_shape = _input_shape(model, flatten.input[0])
    if len(readers) != 1 or input_shape is None:
        return None
    pixels = int(np.prod(input_shape[1:])) // len(shift)
    d = np.repeat(shift, pixels) if layout == "NCHW" else np.tile(shift, pixels)  # the flattened shift
    dense = readers[0]
    if dense.op_type == "Gemm" and dense.input[0] == flatten.output[0] and not _attribute(dense, "transA", 0):
        weight, beta = index.constant(dense.input[1]), _attribute(dense, "beta", 1.0)
        if weight is None or beta == 0:
            return None
        b = weight.astype(np.float64).T if _attribute(dense, "transB", 0) else weight.astype(np.float64)
        moved = _attribute(dense, "alpha", 1.0) * d @ b / beta
        bias_name = dense.input[2] if len(dense.input) > 2 and dense.input[2] else ""
        bias = index.constant(bias_name) if bias_name else np.zeros(b.shape[1], weight.dtype)
        if bias is None or (bias.shape != (b.shape[1],) and bias.size != 1):
            return None
        name = _new_initializer(model, bias_name or f"{dense.input[1]}_bias",
                                (bias.astype(np.float64) - moved).astype(weight.dtype))
        if len(dense.input) > 2:
            dense.input[2] = name
        else:
            dense.input.append(name)
        return dense.name or dense.output[0]
    if dense.op_type == "MatMul" and dense.input[0] == flatten.output[0]:
        weight = index.constant(dense.input[1])
        adds = index.consumers_of(dense.output[0])
        if weight is None or weight.ndim != 2 or len(adds) != 1 or adds[0].op_type != "Add":
            return None
        add = adds[0]
        slot = 1 if add.input[0] == dense.output[0] else 0
        bias = index.constant(add.input[slot])
        if bias is None or bias.shape != (weight.shape[1],):
            return None
        add.input[slot] = _new_initializer(model, add.input[slot],
                                           (bias.astype(np.float64) - d @ weight.astype(np.float64)).astype(bias.dtype))
        return dense.name or dense.output[0]
    return None


def _flattens(node: onnx.NodeProto, index: GraphIndex) -> bool:
    """``node`` reshapes a rank-4 input to [N, C·H·W]: Flatten(axis=1), or Reshape to the constant [0, −1]."""
    if node.op_type == "Flatten":
        return _attribute(node, "axis", 1) == 1
    if node.op_type == "Reshape" and len(node.input) > 1:
        target = index.constant(node.input[1])
        return target is not None and target.shape == (2,) and target[0] == 0 and target[1] == -1
    return False


def _input_shape(model: onnx.ModelProto, name: str) -> list[int] | None:
    for value in model.graph.input:
        if value.name == name:
            dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
            return dims if len(dims) == 4 and all(dims[1:]) else None
    return None


def _prepend_subtraction(model: onnx.ModelProto, input_name: str, shift: NDArray, layout: str) -> None:
    """Every reader of ``input_name`` reads ``input_name − c`` instead (a new first node)."""
    elem_type = next(v.type.tensor_type.elem_type for v in model.graph.input if v.name == input_name)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
    shape = (1, -1, 1, 1) if layout == "NCHW" else (1, 1, 1, -1)
    constant = _new_initializer(model, f"{input_name}_shift", shift.reshape(shape).astype(dtype))
    unshifted = f"{input_name}__unshifted"
    for node in model.graph.node:
        for position, name in enumerate(node.input):
            if name == input_name:
                node.input[position] = unshifted
    model.graph.node.insert(0, helper.make_node("Sub", [input_name, constant], [unshifted], name=COMPENSATION_NODE))
