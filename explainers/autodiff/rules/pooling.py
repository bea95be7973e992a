"""Pooling: MaxPool (through Indices), AveragePool, GlobalAveragePool, GlobalMaxPool.

Notation: X [N, C, spatial...], g the output gradient, k/s/d/p the kernel, strides, dilations and
pads of one spatial axis, dk = d·(k − 1) + 1.

Max pooling routes each output's gradient to the input element it selected. Windows overlap
(kernel 3, stride 2 is the norm), so several outputs may select the same element and their
gradients must add up: ``ScatterElements(reduction="add")`` (opset ≥ 16) does, where
``MaxUnpool`` (last write wins) would not. The selected element comes from the runtime itself (the
Indices output of a MaxPool; ArgMax for GlobalMaxPool), so ties follow the runtime's choice
instead of being split by an equality mask. The forward node is never rewired: when it has no
Indices output, the backward graph runs a twin MaxPool on the same input that has one (the same
kernel on the same data selects the same elements; it costs one more pooling pass, small next to
the convolutions around it).
"""

from __future__ import annotations

import numpy as np

from ..context import VjpContext
from ..errors import Declined
from ..registry import vjp
from ._common import node_attributes
from .conv import explicit_pads, spatial_shape, static_spatial, transpose_conv_to


def spatial_count(ctx: VjpContext, x: str) -> str:
    """Number of spatial positions of ``x`` [N, C, ...] as a scalar of x's dtype."""
    shape = ctx.static_shape(x)
    if shape is not None and all(isinstance(d, int) for d in shape[2:]):
        return ctx.const(float(np.prod(shape[2:])), like=x)
    count = ctx.op("ReduceProd", spatial_shape(ctx, x), keepdims=0)
    return ctx.op("CastLike", count, x)


@vjp("GlobalAveragePool")
def global_average_pool(ctx: VjpContext, node, grads):
    """Y[n, c] = (1/S)·Σ_p X[n, c, p] over the S spatial positions: dX = Expand(g / S, Shape(X))."""
    x = node.input[0]
    share = ctx.op("Div", grads[0], spatial_count(ctx, x))
    return [ctx.op("Expand", share, ctx.shape(x))]


def _scatter_add(ctx: VjpContext, x: str, indices: str, g: str) -> str:
    """dX = Reshape(ScatterElements(zeros[N·C·H·W], flat indices, flat g, reduction="add"), Shape(X))."""
    flat = ctx.ints([-1])
    zeros = ctx.op("Expand", ctx.const(0, like=x), ctx.op("Reshape", ctx.op("Size", x), ctx.ints([1])))
    summed = ctx.op("ScatterElements", zeros, ctx.op("Reshape", indices, flat), ctx.op("Reshape", g, flat),
                    axis=0, reduction="add")
    return ctx.op("Reshape", summed, ctx.shape(x))


def _row_major_indices(ctx: VjpContext, node, x: str, indices: str) -> str:
    """Convert ``storage_order=1`` indices (spatial axes column-major) to row-major ones."""
    sizes = static_spatial(ctx, x)
    if sizes is None:
        raise Declined("storage_order=1 indices need a static spatial input size")
    plane = int(np.prod(sizes))
    rest = ctx.op("Mod", indices, ctx.ints(plane))
    flat = ctx.op("Mul", ctx.op("Div", indices, ctx.ints(plane)), ctx.ints(plane))  # (n·C + c)·plane
    column_stride = 1
    row_strides = [int(np.prod(sizes[i + 1:])) for i in range(len(sizes))]
    for size, row_stride in zip(sizes, row_strides):
        coordinate = ctx.op("Mod", ctx.op("Div", rest, ctx.ints(column_stride)), ctx.ints(size))
        flat = ctx.op("Add", flat, ctx.op("Mul", coordinate, ctx.ints(row_stride)))
        column_stride *= size
    return flat


def max_pool_indices(ctx: VjpContext, node, x: str) -> str:
    """Row-major flat Indices [N, C, out...] of MaxPool ``node`` applied to ``x``: the node's own
    Indices output when ``x`` is its input and it has one (a column-major one, ``storage_order``
    1, converted), else the second output of a twin MaxPool on ``x`` emitted in the backward graph."""
    if x == node.input[0] and len(node.output) > 1 and node.output[1]:
        indices = node.output[1]
        if ctx.attr(node, "storage_order", 0) and len(ctx.attr(node, "kernel_shape")) > 1:
            indices = _row_major_indices(ctx, node, x, indices)
        return indices
    attributes = node_attributes(node, storage_order=0)
    return ctx.op_multi("MaxPool", [x], 2, **attributes)[1]


@vjp("MaxPool")
def max_pool(ctx: VjpContext, node, grads):
    """Y[n, c, o] = X[I[n, c, o]] with I the Indices of the pooling (:func:`max_pool_indices`),
    flattened over the whole N·C·H·W input (padding excluded), as onnxruntime and
    onnx.reference compute it.

    dX = Σ over outputs o with I(o) = i of g[o]: ScatterElements(reduction="add") of g into zeros.
    """
    x = node.input[0]
    return [_scatter_add(ctx, x, max_pool_indices(ctx, node, x), grads[0])]


@vjp("GlobalMaxPool")
def global_max_pool(ctx: VjpContext, node, grads):
    """Y[n, c] = max_p X[n, c, p]: the gradient goes to the first maximal position
    p* = ArgMax(Reshape(X, [N, C, −1]), axis = 2), as onnxruntime's MaxPool picks the first on ties.

    dX = Reshape(ScatterElements(zeros [N, C, S], p*, g, axis = 2), Shape(X))."""
    g = grads[0]
    x = node.input[0]
    per_channel = ctx.ints([0, 0, -1])
    flat = ctx.op("Reshape", x, per_channel)
    winner = ctx.op("ArgMax", flat, axis=2, keepdims=1, select_last_index=0)
    zeros = ctx.op("Expand", ctx.const(0, like=x), ctx.shape(flat))
    scattered = ctx.op("ScatterElements", zeros, winner, ctx.op("Reshape", g, per_channel), axis=2)
    return [ctx.op("Reshape", scattered, ctx.shape(x))]


def _pooled_sizes(ctx: VjpContext, node, sizes, kernel, strides, pads, dilations, ceil_mode) -> list[int]:
    """The pooled spatial size, from shape inference, else from the spec's formula (in ceil mode
    the last window must start inside the input or its begin padding)."""
    shape = ctx.static_shape(node.output[0])
    if shape is not None and len(shape) == 2 + len(kernel) and all(isinstance(d, int) for d in shape[2:]):
        return list(shape[2:])
    spatial = len(kernel)
    out = []
    for i, (h, k, s, d) in enumerate(zip(sizes, kernel, strides, dilations)):
        span = h + pads[i] + pads[i + spatial] - d * (k - 1) - 1
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= h + pads[i]:
            o -= 1
        out.append(o)
    return out


@vjp("AveragePool")
def average_pool(ctx: VjpContext, node, grads):
    """Y[n, c, o] = r(o)·Σ_{j} X_pad[n, c, o·s + j·d] (zero padding), r(o) = 1/divisor(o).

    dX = ConvTranspose(g ⊙ r, ones kernel [1, 1, k...]; strides, pads, dilations) on
    [N·C, 1, O...] (a depthwise transposed convolution whatever C is), reshaped to X.

    The divisor depends on ``count_include_pad``, pads and ``ceil_mode`` (windows running past the
    end). It is not re-derived: r(o) = AveragePool(1)(o) / V(o), where AveragePool(1) is the
    forward op itself applied to ones (= V(o)/divisor(o)) and V(o) = Conv(1, ones kernel) counts
    the real input positions in window o — so the gradient follows the executing runtime's
    convention exactly. Without pads or overhanging windows r = 1/Π k is a constant.
    """
    g = grads[0]
    x = node.input[0]
    kernel = list(ctx.attr(node, "kernel_shape"))
    spatial = len(kernel)
    strides = list(ctx.attr(node, "strides", None) or [1] * spatial)
    dilations = list(ctx.attr(node, "dilations", None) or [1] * spatial)
    ceil_mode = int(ctx.attr(node, "ceil_mode", 0))
    count_include_pad = int(ctx.attr(node, "count_include_pad", 0))
    pads = explicit_pads(ctx, node, x, kernel, strides, dilations)
    sizes = static_spatial(ctx, x)
    if sizes is None and ceil_mode:
        raise Declined("ceil_mode needs a static spatial input size "
                       "(pass input_shape= to build_gradient_model)")
    ends = list(pads[spatial:])
    if sizes is not None:  # grow the end padding so a plain Conv has the overhanging windows too
        pooled = _pooled_sizes(ctx, node, sizes, kernel, strides, pads, dilations, ceil_mode)
        for i, (h, k, s, d, o) in enumerate(zip(sizes, kernel, strides, dilations, pooled)):
            ends[i] = max(ends[i], (o - 1) * s + d * (k - 1) + 1 - h - pads[i])
    grown = pads[:spatial] + ends
    ones_kernel = ctx.const(np.ones([1, 1] + kernel), like=x)
    if grown == pads and (count_include_pad or not any(pads)):
        scaled = ctx.op("Mul", g, ctx.const(1.0 / float(np.prod(kernel)), like=x))
    else:
        plane = ctx.ints([1, 1] + sizes) if sizes is not None else ctx.op(
            "Concat", ctx.ints([1, 1]), spatial_shape(ctx, x), axis=0)
        ones = ctx.op("Expand", ctx.const(1, like=x), plane)
        averaged = ctx.op("AveragePool", ones, **node_attributes(node))
        counted = ctx.op("Conv", ones, ones_kernel, strides=strides, pads=grown, dilations=dilations)
        if sizes is not None:  # an edge case of ceil_mode: the Conv may count one window more
            counted = ctx.op("Slice", counted, ctx.ints([0] * spatial), ctx.ints(pooled),
                             ctx.ints(list(range(2, 2 + spatial))))
        scaled = ctx.op("Mul", g, ctx.op("Div", averaged, counted))
    if sizes is not None:
        windows = [(h + p0 + p1 - d * (k - 1) - 1) // s + 1
                   for h, p0, p1, k, s, d in zip(sizes, pads[:spatial], ends, kernel, strides, dilations)]
        if windows != pooled:  # pad g with zeros for the extra window the Conv geometry implies
            extra = [w - o for w, o in zip(windows, pooled)]
            scaled = ctx.op("Pad", scaled, ctx.ints([0] * (2 + spatial) + [0, 0] + extra))
        single = ctx.ints([-1, 1] + windows)
    else:
        single = ctx.op("Concat", ctx.ints([-1, 1]), spatial_shape(ctx, g), axis=0)
    target = None if sizes is not None else spatial_shape(ctx, x)
    spread = transpose_conv_to(ctx, ctx.op("Reshape", scaled, single), ones_kernel, sizes=sizes, target=target,
                               kernel=kernel, strides=strides, pads=grown, dilations=dilations)
    return [ctx.op("Reshape", spread, ctx.shape(x))]
