"""Perturbation-prefixed graphs: the perturbed batch is built inside the ONNX model.

Perturbation methods evaluate hundreds to thousands of masked copies of one image. Rather than
ship each copy to onnxruntime (600 KB per 224×224 sample), a prefix in front of the classifier
takes the image and the baseline once per request and, per sample, only a small mask
description, and builds ``x_i = m_i ⊙ image + (1 − m_i) ⊙ baseline`` in the graph. On CUDA the
image and baseline stay on the device (bound once); only kilobytes move per batch.

A :class:`MaskSource` describes how per-sample inputs become the mask ``m`` [n, 1, H, W]:

* :func:`window_masks` — occlusion boxes [n, 4] (top, left, bottom, right) → 0 inside, 1 outside;
* :func:`segment_masks` — LIME on/off vectors [n, S] over a superpixel map [H, W] (per request);
* :func:`grid_masks` — RISE grids [n, s, s] upsampled bilinearly and cropped at a random shift,
  computed as ``A_dy · G · A_dxᵀ`` with interpolation matrices gathered from a constant table;
* :func:`upsampled_masks` — low-resolution maps [n, 1, h, w] resized bilinearly to H×W
  (Score-CAM's activations, extremal perturbation's mask parameters), optionally min-max
  normalised per sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .index import GraphIndex

SOURCE_IMAGE = "source_image"
SOURCE_BASELINE = "source_baseline"
MASK = "perturbation_mask"
_PREFIX = "perturb/"


@dataclass(frozen=True)
class MaskSource:
    """Nodes computing ``MASK`` [n, 1, H, W] from ``inputs``; ``per_request`` names the inputs that
    are the same for every batch of a request (fed once, bound on the device on CUDA)."""

    name: str
    inputs: list[onnx.ValueInfoProto]
    nodes: list[onnx.NodeProto]
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    per_request: tuple[str, ...] = ()


def _node(op: str, inputs: list[str], output: str, **attrs) -> onnx.NodeProto:
    return helper.make_node(op, inputs, [output], name=_PREFIX + output, **attrs)


def window_masks(height: int, width: int) -> MaskSource:
    """Input ``windows`` int64 [n, 4] = (top, left, bottom, right): the mask is 0 inside the box."""
    rows = np.arange(height, dtype=np.int64).reshape(1, 1, height, 1)
    cols = np.arange(width, dtype=np.int64).reshape(1, 1, 1, width)
    inits = [numpy_helper.from_array(rows, _PREFIX + "rows"), numpy_helper.from_array(cols, _PREFIX + "cols"),
             numpy_helper.from_array(np.array([-1, 1, 1, 1], np.int64), _PREFIX + "box_shape")]
    nodes = []
    for index, name in enumerate(("top", "left", "bottom", "right")):
        nodes += [
            _node("Slice", ["windows", _PREFIX + f"s{index}", _PREFIX + f"e{index}", _PREFIX + "axis1"], _PREFIX + name + "_col"),
            _node("Reshape", [_PREFIX + name + "_col", _PREFIX + "box_shape"], _PREFIX + name),
        ]
        inits += [numpy_helper.from_array(np.array([index], np.int64), _PREFIX + f"s{index}"),
                  numpy_helper.from_array(np.array([index + 1], np.int64), _PREFIX + f"e{index}")]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), _PREFIX + "axis1"))
    p = _PREFIX
    nodes += [
        _node("GreaterOrEqual", [p + "rows", p + "top"], p + "below_top"),
        _node("Less", [p + "rows", p + "bottom"], p + "above_bottom"),
        _node("GreaterOrEqual", [p + "cols", p + "left"], p + "right_of_left"),
        _node("Less", [p + "cols", p + "right"], p + "left_of_right"),
        _node("And", [p + "below_top", p + "above_bottom"], p + "in_rows"),
        _node("And", [p + "right_of_left", p + "left_of_right"], p + "in_cols"),
        _node("And", [p + "in_rows", p + "in_cols"], p + "inside"),
        _node("Not", [p + "inside"], p + "outside"),
        _node("Cast", [p + "outside"], MASK, to=TensorProto.FLOAT),
    ]
    inputs = [helper.make_tensor_value_info("windows", TensorProto.INT64, ["n", 4])]
    return MaskSource("windows", inputs, nodes, inits)


def segment_masks(height: int, width: int) -> MaskSource:
    """Inputs ``segments_on`` float [n, S] (1 keeps a superpixel) and ``segments`` int64 [H, W]
    (the superpixel of each pixel, fed once per request)."""
    p = _PREFIX
    inits = [numpy_helper.from_array(np.array([-1, 1, height, width], np.int64), p + "mask_shape"),
             numpy_helper.from_array(np.array([-1], np.int64), p + "flat")]
    nodes = [
        _node("Reshape", ["segments", p + "flat"], p + "segments_flat"),
        _node("Gather", ["segments_on", p + "segments_flat"], p + "pixels_on", axis=1),
        _node("Reshape", [p + "pixels_on", p + "mask_shape"], MASK),
    ]
    inputs = [helper.make_tensor_value_info("segments_on", TensorProto.FLOAT, ["n", "segments"]),
              helper.make_tensor_value_info("segments", TensorProto.INT64, [height, width])]
    return MaskSource("segments", inputs, nodes, inits, per_request=("segments",))


def bilinear_matrix(source: int, target: int, *, align_corners: bool = False) -> np.ndarray:
    """[target, source] weights of a bilinear resize from ``source`` to ``target`` samples:
    half-pixel centres with edge samples clamped (``align_corners=False``, as cv2 and ONNX
    Resize's half_pixel), or end samples aligned (``align_corners=True``, torch's
    ``UpsamplingBilinear2d``)."""
    matrix = np.zeros((target, source))
    if align_corners:
        centres = np.arange(target) * ((source - 1) / (target - 1) if target > 1 else 0.0)
    else:
        centres = (np.arange(target) + 0.5) * source / target - 0.5
    low = np.clip(np.floor(centres).astype(int), 0, source - 1)
    high = np.clip(low + 1, 0, source - 1)
    frac = np.clip(centres - np.floor(centres), 0, 1)
    frac[centres < 0] = 0.0
    rows = np.arange(target)
    np.add.at(matrix, (rows, low), 1 - frac)
    np.add.at(matrix, (rows, high), frac)
    return matrix


def grid_masks(height: int, width: int, grid: int) -> MaskSource:
    """RISE masks (Petsiuk et al. 2018): inputs ``grids`` float [n, s, s] and ``shifts`` int64
    [n, 2] (dy, dx in [0, cell)). Each grid is upsampled bilinearly to (s + 1)·cell and cropped
    at the shift: rows ``A[dy] · G · A[dx]ᵀ`` with ``A[d] = R[d : d + H]`` and R the [(s + 1)·cell, s]
    bilinear matrix — per sample only s² + 2 numbers travel."""
    cell_h, cell_w = -(-height // grid), -(-width // grid)
    rows = bilinear_matrix(grid, (grid + 1) * cell_h)
    cols = bilinear_matrix(grid, (grid + 1) * cell_w)
    row_table = np.stack([rows[d : d + height] for d in range(cell_h)]).astype(np.float32)  # [cell, H, s]
    col_table = np.stack([cols[d : d + width].T for d in range(cell_w)]).astype(np.float32)  # [cell, s, W]
    p = _PREFIX
    inits = [numpy_helper.from_array(row_table, p + "row_table"), numpy_helper.from_array(col_table, p + "col_table"),
             numpy_helper.from_array(np.array([0], np.int64), p + "zero"),
             numpy_helper.from_array(np.array([1], np.int64), p + "one"),
             numpy_helper.from_array(np.array([2], np.int64), p + "two"),
             numpy_helper.from_array(np.array([-1], np.int64), p + "flat"),
             numpy_helper.from_array(np.array([-1, 1, height, width], np.int64), p + "mask_shape")]
    nodes = [
        _node("Slice", ["shifts", p + "zero", p + "one", p + "one"], p + "dy2"),
        _node("Slice", ["shifts", p + "one", p + "two", p + "one"], p + "dx2"),
        _node("Reshape", [p + "dy2", p + "flat"], p + "dy"),
        _node("Reshape", [p + "dx2", p + "flat"], p + "dx"),
        _node("Gather", [p + "row_table", p + "dy"], p + "row_weights", axis=0),  # [n, H, s]
        _node("Gather", [p + "col_table", p + "dx"], p + "col_weights", axis=0),  # [n, s, W]
        _node("MatMul", [p + "row_weights", "grids"], p + "rows_up"),  # [n, H, s]
        _node("MatMul", [p + "rows_up", p + "col_weights"], p + "up"),  # [n, H, W]
        _node("Reshape", [p + "up", p + "mask_shape"], MASK),
    ]
    inputs = [helper.make_tensor_value_info("grids", TensorProto.FLOAT, ["n", grid, grid]),
              helper.make_tensor_value_info("shifts", TensorProto.INT64, ["n", 2])]
    return MaskSource(f"grid{grid}", inputs, nodes, inits)


def upsampled_masks(height: int, width: int, low_height: int, low_width: int, *, normalise: bool,
                    align_corners: bool = False) -> MaskSource:
    """Input ``low_masks`` float [n, 1, h, w] resized bilinearly (as a separable matrix product) to
    [n, 1, H, W]; with ``normalise`` each sample is min-max scaled to [0, 1] (Score-CAM)."""
    rows = bilinear_matrix(low_height, height, align_corners=align_corners).astype(np.float32)  # [H, h]
    cols = bilinear_matrix(low_width, width, align_corners=align_corners).T.astype(np.float32)  # [w, W]
    p = _PREFIX
    up = MASK if not normalise else p + "up"
    inits = [numpy_helper.from_array(rows, p + "rows"), numpy_helper.from_array(cols, p + "cols"),
             numpy_helper.from_array(np.array(1e-12, np.float32), p + "tiny")]
    nodes = [
        _node("MatMul", [p + "rows", "low_masks"], p + "rows_up"),
        _node("MatMul", [p + "rows_up", p + "cols"], up),
    ]
    if normalise:
        nodes += [  # per-sample min and max with GlobalMaxPool: the same in every opset
            _node("GlobalMaxPool", [up], p + "high"),
            _node("Neg", [up], p + "negated"),
            _node("GlobalMaxPool", [p + "negated"], p + "negated_low"),
            _node("Neg", [p + "negated_low"], p + "low"),
            _node("Sub", [up, p + "low"], p + "shifted"),
            _node("Sub", [p + "high", p + "low"], p + "span"),
            _node("Max", [p + "span", p + "tiny"], p + "safe_span"),
            _node("Div", [p + "shifted", p + "safe_span"], MASK),
        ]
    inputs = [helper.make_tensor_value_info("low_masks", TensorProto.FLOAT, ["n", 1, low_height, low_width])]
    name = f"upsampled{low_height}x{low_width}{'n' if normalise else ''}{'c' if align_corners else ''}"
    return MaskSource(name, inputs, nodes, inits)


def prefixed_model(model: onnx.ModelProto, input_name: str, *, layout: str, input_type: int,
                   source: MaskSource) -> onnx.ModelProto:
    """``model`` fed by ``m ⊙ source_image + (1 − m) ⊙ source_baseline`` built from ``source``.

    ``source_image``/``source_baseline`` are canonical float32 [1, C, H, W]; the prefix converts
    to the model's ``layout`` and element type (``input_type``, a TensorProto type).
    """
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    original = next(v for v in graph.input if v.name == input_name)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in original.type.tensor_type.shape.dim]
    channels, height, width = (dims[1], dims[2], dims[3]) if layout == "NCHW" else (dims[3], dims[1], dims[2])
    p = _PREFIX
    nodes = list(source.nodes) + [
        _node("Sub", [SOURCE_IMAGE, SOURCE_BASELINE], p + "difference"),
        _node("Mul", [MASK, p + "difference"], p + "masked_difference"),
        _node("Add", [SOURCE_BASELINE, p + "masked_difference"], p + "blended"),
    ]
    blended = p + "blended"
    if layout == "NHWC":
        nodes.append(_node("Transpose", [blended], p + "blended_nhwc", perm=[0, 2, 3, 1]))
        blended = p + "blended_nhwc"
    if input_type != TensorProto.FLOAT:
        nodes.append(_node("Cast", [blended], p + "blended_cast", to=input_type))
        blended = p + "blended_cast"
    for node in GraphIndex(graph).consumers_of(input_name):
        for i, name in enumerate(node.input):
            if name == input_name:
                node.input[i] = blended
    for output in graph.output:
        if output.name == input_name:
            raise ValueError("the image input is also a graph output")
    kept = [node for node in graph.node]
    del graph.node[:]
    graph.node.extend(nodes + kept)
    graph.initializer.extend(source.initializers)
    inputs = [v for v in graph.input if v.name != input_name]
    del graph.input[:]
    image_shape = [1, channels, height, width]
    graph.input.extend(
        inputs
        + list(source.inputs)
        + [helper.make_tensor_value_info(SOURCE_IMAGE, TensorProto.FLOAT, image_shape),
           helper.make_tensor_value_info(SOURCE_BASELINE, TensorProto.FLOAT, image_shape)]
    )
    del graph.value_info[:]
    onnx.checker.check_model(result)
    return result
