"""Low-resolution maps resized bilinearly in the graph: Score-CAM's activations, extremal
perturbation's mask parameters (its smoothing and pull-back live in :mod:`explainers.perturb.extremal`)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from ...graph.perturbation import MASK, PREFIX, MaskSource
from ...graph.perturbation import prefix_node as node
from .bilinear import bilinear_matrix


def upsampled_masks(height: int, width: int, low_height: int, low_width: int, *, normalise: bool,
                    align_corners: bool = False) -> MaskSource:
    """Input ``low_masks`` float [n, 1, h, w] resized bilinearly (as a separable matrix product) to
    [n, 1, H, W]; with ``normalise`` each sample is min-max scaled to [0, 1] (Score-CAM). The source's
    name encodes everything the graph depends on, since compiled prefixes are cached by it."""
    rows = bilinear_matrix(low_height, height, align_corners=align_corners).astype(np.float32)  # [H, h]
    cols = bilinear_matrix(low_width, width, align_corners=align_corners).T.astype(np.float32)  # [w, W]
    p = PREFIX
    up = MASK if not normalise else p + "up"
    inits = [numpy_helper.from_array(rows, p + "rows"), numpy_helper.from_array(cols, p + "cols"),
             numpy_helper.from_array(np.array(1e-12, np.float32), p + "tiny")]
    nodes = [
        node("MatMul", [p + "rows", "low_masks"], p + "rows_up"),
        node("MatMul", [p + "rows_up", p + "cols"], up),
    ]
    if normalise:
        nodes += [  # per-sample min and max with GlobalMaxPool: the same in every opset
            node("GlobalMaxPool", [up], p + "high"),
            node("Neg", [up], p + "negated"),
            node("GlobalMaxPool", [p + "negated"], p + "negated_low"),
            node("Neg", [p + "negated_low"], p + "low"),
            node("Sub", [up, p + "low"], p + "shifted"),
            node("Sub", [p + "high", p + "low"], p + "span"),
            node("Max", [p + "span", p + "tiny"], p + "safe_span"),
            node("Div", [p + "shifted", p + "safe_span"], MASK),
        ]
    inputs = [helper.make_tensor_value_info("low_masks", TensorProto.FLOAT, ["n", 1, low_height, low_width])]
    name = f"upsampled{low_height}x{low_width}{'n' if normalise else ''}{'c' if align_corners else ''}"
    return MaskSource(name, inputs, nodes, inits)
