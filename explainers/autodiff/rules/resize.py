"""Resize: nearest, linear and cubic, every coordinate_transformation_mode, scales or sizes.

Resize is separable and, for fixed sizes, linear in x: along each resized axis k the output is
``y = A_k x`` with an interpolation matrix ``A_k`` [out, in] that depends only on the attributes,
the scale and the two lengths (one-hot rows for nearest, two taps for linear, four for cubic,
wider with antialias). So the vector-Jacobian product applies the transposes ::

    dx = g ×_k A_kᵀ  for every resized axis k      (MatMul on the last two axes, Transpose else)

The matrices are computed here with numpy at build time, following the ONNX specification as
written in its reference implementation (``onnx.reference.ops.op_resize``; up to float noise, see
:func:`interpolation_matrix`): the scale per axis
(from ``scales``, or ``sizes`` / in with ``keep_aspect_ratio_policy``), the original coordinate of
each output position, the kernel taps, ``exclude_outside``, ``antialias``, edge clamping, and
``tf_crop_and_resize`` positions outside the roi (they hold ``extrapolation_value``, a constant:
their rows are zero). Needed at build time: the input lengths of the resized axes and constant
``scales`` or ``sizes`` (run-time ``sizes`` also work when shape inference knows the output
lengths of the resized axes and the policy is ``stretch``, as in torch's exports of
``F.interpolate(size=…)``), and a constant ``roi`` for ``tf_crop_and_resize``.

Otherwise, mode ``nearest`` falls back to the generic index rule (Resize run on the indices cast
to int32, the integer type onnxruntime implements Resize for), and linear/cubic raise
the rule declines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from onnx import TensorProto

from ..context import VjpContext
from ..errors import Declined
from ..registry import vjp
from ._common import node_attributes, text
from .indexing import scatter_through_indices


# ---------------------------------------------------------------------- interpolation weights
def _nearest_coeffs(ratio: float, nearest_mode: str) -> np.ndarray:
    if float(ratio).is_integer():
        return np.array([0.0, 1.0])
    if nearest_mode == "round_prefer_floor":
        return np.array([ratio <= 0.5, ratio > 0.5], dtype=np.float64)
    if nearest_mode == "round_prefer_ceil":
        return np.array([ratio < 0.5, ratio >= 0.5], dtype=np.float64)
    if nearest_mode == "floor":
        return np.array([1.0, 0.0])
    if nearest_mode == "ceil":
        return np.array([0.0, 1.0])
    raise Declined(f"unknown nearest_mode {nearest_mode!r}")


def _linear_coeffs(ratio: float, scale: float, antialias: bool) -> np.ndarray:
    if not antialias:
        return np.array([1 - ratio, ratio])
    scale = min(scale, 1.0)
    start = int(np.floor(-1 / scale) + 1)
    footprint = 2 - 2 * start
    args = (np.arange(start, start + footprint) - ratio) * scale
    coeffs = np.clip(1 - np.abs(args), 0, 1)
    return coeffs / coeffs.sum()


def _cubic_coeffs(ratio: float, scale: float, a: float, antialias: bool) -> np.ndarray:
    if not antialias:
        r, s = ratio, 1 - ratio
        return np.array([
            ((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
            ((a + 2) * r - (a + 3)) * r * r + 1,
            ((a + 2) * s - (a + 3)) * s * s + 1,
            ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a,
        ])
    scale = min(scale, 1.0)

    def kernel(t: float) -> float:
        t = abs(t)
        if t <= 1:
            return (a + 2) * t**3 - (a + 3) * t**2 + 1
        if t < 2:
            return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
        return 0.0

    i_start = int(np.floor(-2 / scale) + 1)
    coeffs = np.array([kernel(scale * (i - ratio)) for i in range(i_start, 2 - i_start)])
    return coeffs / coeffs.sum()


def _source_coordinates(mode: str, n_in: int, n_out: int, scale: float, roi: Sequence[float] | None):
    """Original coordinate of each output position, and which positions fall outside the roi."""
    y = np.arange(n_out, dtype=np.float64)
    width = scale * n_in  # the output length as a real number
    outside = None
    if mode == "align_corners":
        x = np.zeros(n_out) if width == 1 else y * (n_in - 1) / (width - 1)
    elif mode == "asymmetric":
        x = y / scale
    elif mode == "tf_crop_and_resize":
        start, end = roi
        if width == 1:
            x = np.full(n_out, (end - start) * (n_in - 1) / 2, dtype=np.float64)
        else:
            x = y * (end - start) * (n_in - 1) / (width - 1)
        x = x + start * (n_in - 1)
        outside = (x < 0) | (x > n_in - 1)
    elif mode == "pytorch_half_pixel":
        x = np.full(n_out, -0.5) if width == 1 else (y + 0.5) / scale - 0.5
    elif mode == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / width)
        x = offset + (y + 0.5) / scale - 0.5
    else:
        raise Declined(f"unknown coordinate_transformation_mode {mode!r}")
    return x, outside


def interpolation_matrix(
    n_in: int, n_out: int, scale: float, *, mode: str = "nearest",
    coordinate_transformation_mode: str = "half_pixel", nearest_mode: str = "round_prefer_floor",
    cubic_coeff_a: float = -0.75, exclude_outside: bool = False, antialias: bool = False,
    roi: Sequence[float] | None = None,
) -> np.ndarray:
    """The [n_out, n_in] float64 matrix A of a 1-D Resize along one axis: y = A x.

    Follows the ONNX reference implementation (``_interpolate_1d_along_axis``) step by step, except
    for float noise: a source coordinate within 1e-9 (relative) of an integer or a half-integer is
    snapped to it, since with ``sizes`` it is a ratio of small integers whose exact value decides
    nearest rounding and the ``x == floor(x)`` tap choice (e.g. 7 → 17 half_pixel gives
    3.0000000000000004 for the exact 3, and the reference then reads pixel 2 with weight 1; the
    window below stays consistent with the ratio in any case). onnxruntime agrees with this on
    more cases than with the reference."""
    x, outside = _source_coordinates(coordinate_transformation_mode, n_in, n_out, scale, roi)
    halves = np.round(2 * x) / 2
    x = np.where(np.abs(x - halves) < 1e-9 * np.maximum(1.0, np.abs(x)), halves, x)
    if outside is not None:
        outside = (x < 0) | (x > n_in - 1)
    floor = np.floor(x)
    ratios = np.where(x == floor, 1.0, x - floor)  # prefer the left pixel: ratio in (0, 1]
    if mode == "nearest":
        coeffs = [_nearest_coeffs(r, nearest_mode) for r in ratios]
    elif mode == "linear":
        coeffs = [_linear_coeffs(r, scale, antialias) for r in ratios]
    elif mode == "cubic":
        coeffs = [_cubic_coeffs(r, scale, cubic_coeff_a, antialias) for r in ratios]
    else:
        raise Declined(f"unknown mode {mode!r}")
    coeffs = np.array(coeffs, dtype=np.float64).reshape(n_out, -1)
    taps = coeffs.shape[1]  # always even: 2 (nearest, linear), 4 (cubic), wider with antialias
    # The taps sit around the pixel the ratio is measured from (the left one, x − 1 when x is an
    # integer). The reference finds the window from x + taps/2 instead, which can round
    # differently from the ratio when x lies within an ulp of an integer.
    left = np.where(x == floor, floor - 1, floor).astype(np.int64)
    neighbours = left[:, None] - (taps // 2 - 1) + np.arange(taps)[None, :]
    if exclude_outside:
        coeffs = np.where((neighbours < 0) | (neighbours >= n_in), 0.0, coeffs)
        total = coeffs.sum(axis=1, keepdims=True)
        coeffs = coeffs / np.where(total == 0, 1.0, total)
    matrix = np.zeros((n_out, n_in))
    rows = np.repeat(np.arange(n_out), taps)
    np.add.at(matrix, (rows, np.clip(neighbours, 0, n_in - 1).ravel()), coeffs.ravel())
    if outside is not None:
        matrix[outside] = 0.0
    return matrix


# ---------------------------------------------------------------------- the rule
def _optional_constant(ctx: VjpContext, node, index: int) -> tuple[np.ndarray | None, bool]:
    """(value, given): an absent or empty optional input is (None, False); a run-time one (None, True)."""
    if len(node.input) <= index or not node.input[index]:
        return None, False
    value = ctx.constant_value(node.input[index])
    if value is None:
        return None, True
    value = np.asarray(value)
    return (value, True) if value.size else (None, False)


def separable_plan(ctx: VjpContext, node) -> list[tuple[int, np.ndarray]] | None:
    """[(axis, A)] for every axis that Resize does not leave unchanged, or None when the sizes,
    scales or roi are not known at build time."""
    x = node.input[0]
    shape = ctx.static_shape(x)
    if shape is None:
        return None
    rank = len(shape)
    axes = [a % rank for a in ctx.attr(node, "axes", range(rank))]
    coordinate_mode = text(ctx.attr(node, "coordinate_transformation_mode", "half_pixel"))
    policy = text(ctx.attr(node, "keep_aspect_ratio_policy", "stretch"))
    roi, roi_given = _optional_constant(ctx, node, 1)
    scales, scales_given = _optional_constant(ctx, node, 2)
    sizes, sizes_given = _optional_constant(ctx, node, 3)
    if coordinate_mode == "tf_crop_and_resize":
        if roi is None and roi_given:
            return None
    else:
        roi = None
    dims = [shape[a] for a in axes]
    if scales is not None:
        axis_scales = [float(s) for s in scales.ravel()]
        if any(not isinstance(d, int) for d, s in zip(dims, axis_scales) if s != 1.0):
            return None
        outputs = [int(s * d) if s != 1.0 else d for s, d in zip(axis_scales, dims)]
    elif sizes is not None:
        if not all(isinstance(d, int) for d in dims):
            return None
        outputs = [int(v) for v in sizes.ravel()]
        axis_scales = [o / d for o, d in zip(outputs, dims)]
        if policy != "stretch":
            scale = min(axis_scales) if policy == "not_larger" else max(axis_scales)
            axis_scales = [scale] * len(dims)
            outputs = [int(scale * d + 0.5) for d in dims]
    else:  # run-time sizes: the output lengths shape inference resolved
        out_shape = ctx.static_shape(node.output[0])
        if scales_given or not sizes_given or policy != "stretch" or out_shape is None or len(out_shape) != rank:
            return None
        outputs = [out_shape[a] for a in axes]
        if any(isinstance(d, int) != isinstance(o, int) for o, d in zip(outputs, dims)):
            return None
        # A symbolic input dim whose output dim inference could not name (it loses the symbol of a
        # batch passed through Shape → Concat) is taken as unchanged; the rule's final Reshape to
        # Shape(x) fails at run time if it was not.
        outputs = [o if isinstance(o, int) else d for o, d in zip(outputs, dims)]
        axis_scales = [1.0 if o == d else o / d for o, d in zip(outputs, dims)]
    count = len(axes)
    plan = []
    for i, (axis, dim, scale, out) in enumerate(zip(axes, dims, axis_scales, outputs)):
        axis_roi = None if roi is None else (float(roi.ravel()[i]), float(roi.ravel()[count + i]))
        trivial_roi = axis_roi is None or (math.isclose(axis_roi[0], 0.0) and math.isclose(axis_roi[1], 1.0))
        if math.isclose(scale, 1.0) and out == dim and trivial_roi:
            continue  # the reference skips this axis: the identity
        if not isinstance(dim, int):
            return None
        matrix = interpolation_matrix(
            dim, out, scale, mode=text(ctx.attr(node, "mode", "nearest")),
            coordinate_transformation_mode=coordinate_mode,
            nearest_mode=text(ctx.attr(node, "nearest_mode", "round_prefer_floor")),
            cubic_coeff_a=ctx.attr(node, "cubic_coeff_a", -0.75),
            exclude_outside=bool(ctx.attr(node, "exclude_outside", 0)),
            antialias=bool(ctx.attr(node, "antialias", 0)), roi=axis_roi,
        )
        if matrix.shape[0] != matrix.shape[1] or not np.array_equal(matrix, np.eye(dim)):
            plan.append((axis, matrix))
    return plan


def _sizes_at_run_time(ctx: VjpContext, node) -> bool:
    return len(node.input) > 3 and bool(node.input[3]) and ctx.constant_value(node.input[3]) is None


def _apply_transposed(ctx: VjpContext, g: str, matrix: np.ndarray, axis: int, rank: int, like: str) -> str:
    """Contract ``g``'s ``axis`` (length out) with A [out, in]: the result has length in there."""
    if axis == rank - 1:
        return ctx.op("MatMul", g, ctx.const(matrix, like=like))
    if axis == rank - 2:
        return ctx.op("MatMul", ctx.const(matrix.T, like=like), g)
    perm = list(range(rank))
    perm[axis], perm[-1] = perm[-1], perm[axis]
    moved = ctx.op("Transpose", g, perm=perm)
    return ctx.op("Transpose", ctx.op("MatMul", moved, ctx.const(matrix, like=like)), perm=perm)


@vjp("Resize")
def resize(ctx: VjpContext, node, grads):
    """y = Resize(x): dx = g ×_k A_kᵀ per resized axis (see the module docstring); roi, scales
    and sizes get no gradient."""
    g = grads[0]
    x = node.input[0]
    mode = text(ctx.attr(node, "mode", "nearest"))
    plan = separable_plan(ctx, node)
    if plan is not None:
        grad_x = g
        for axis, matrix in plan:
            grad_x = _apply_transposed(ctx, grad_x, matrix, axis, ctx.rank(x), like=x)
        if _sizes_at_run_time(ctx, node):
            grad_x = ctx.op("Reshape", grad_x, ctx.shape(x))
    elif mode == "nearest":
        crop = text(ctx.attr(node, "coordinate_transformation_mode", "half_pixel")) == "tf_crop_and_resize"
        attributes = node_attributes(node, extrapolation_value=0.0) if crop else None
        grad_x, _ = scatter_through_indices(ctx, node, g, padded=crop, attributes=attributes,
                                            index_type=TensorProto.INT32)
    else:
        raise Declined(
            f"(mode {mode!r}) needs static input lengths on the resized "
            f"axes and constant scales or sizes (and roi) to be differentiated"
        )
    return [grad_x] + [None] * (len(node.input) - 1)
