"""Shape-only ops: the gradient is the output gradient reshaped, permuted, cut or summed back.

Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Split, Expand, Tile, DepthToSpace,
SpaceToDepth. Sizes come from static shapes when known, otherwise from ``Shape`` at run time, so
a dynamic batch stays dynamic.
"""

from __future__ import annotations

import numpy as np

from ..context import VjpContext
from ..registry import vjp
from ._common import text


@vjp("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def reshape_back(ctx: VjpContext, node, grads):
    """Any op that only reinterprets the shape: dx = Reshape(g, Shape(x)).

    Squeeze/Unsqueeze included, whatever the form of their axes (attribute before opset 13, input
    from 13, absent for Squeeze); the shape and axes inputs get no gradient."""
    x = node.input[0]
    return [ctx.op("Reshape", grads[0], ctx.shape(x))] + [None] * (len(node.input) - 1)


@vjp("Transpose")
def transpose(ctx: VjpContext, node, grads):
    """y = Transpose(x, perm): dx = Transpose(g, perm⁻¹) with perm⁻¹[perm[i]] = i.

    The default perm (reversed axes) is its own inverse."""
    perm = ctx.attr(node, "perm")
    if perm is None:
        return [ctx.op("Transpose", grads[0])]
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return [ctx.op("Transpose", grads[0], perm=inverse)]


def _axis_sizes(ctx: VjpContext, tensors: list[str], axis: int) -> str:
    """The sizes of ``tensors`` along ``axis`` as a 1-D int64 tensor (static when known)."""
    dims = []
    for name in tensors:
        shape = ctx.static_shape(name)
        dims.append(shape[axis] if shape is not None and -len(shape) <= axis < len(shape) else None)
    if all(isinstance(d, int) for d in dims):
        return ctx.ints(dims)
    parts = [ctx.op("Gather", ctx.shape(name), ctx.ints([axis])) for name in tensors]
    return parts[0] if len(parts) == 1 else ctx.op("Concat", *parts, axis=0)


@vjp("Concat")
def concat(ctx: VjpContext, node, grads):
    """y = Concat(x₁ … xₙ, axis): dxᵢ = the slice of g at xᵢ's offset, of xᵢ's size along axis.

    One Split of g with the inputs' sizes (static, or read with Shape at run time)."""
    g = grads[0]
    axis = ctx.attr(node, "axis")
    inputs = list(node.input)
    if len(inputs) == 1:
        return [g]
    parts = ctx.op_multi("Split", [g, _axis_sizes(ctx, inputs, axis)], len(inputs), axis=axis)
    return [part if ctx.wants(name) else None for part, name in zip(parts, inputs)]


@vjp("Split")
def split(ctx: VjpContext, node, grads):
    """y₁ … yₙ = Split(x, axis): dx = Concat(g₁ … gₙ, axis), zeros of yᵢ's shape where nothing
    downstream depends on yᵢ. The ``split`` sizes input gets no gradient."""
    x = node.input[0]
    axis = ctx.attr(node, "axis", 0)
    parts = []
    for grad, output in zip(grads, node.output):
        if grad is None:
            grad = ctx.op("Expand", ctx.const(0, like=x), ctx.shape(output))
        parts.append(grad)
    grad_x = parts[0] if len(parts) == 1 else ctx.op("Concat", *parts, axis=axis)
    return [grad_x] + [None] * (len(node.input) - 1)


@vjp("Expand")
def expand(ctx: VjpContext, node, grads):
    """y = Expand(x, shape) broadcasts x: dx = Σ g over the broadcast axes (ctx.unbroadcast).

    A symbolic dim of x that is not the same symbol in y may be 1 at run time, which the static
    path of ctx.unbroadcast would miss: then the axes are found at run time."""
    g, x, y = grads[0], node.input[0], node.output[0]
    x_shape, y_shape = ctx.static_shape(x), ctx.static_shape(y)
    if x_shape is not None and y_shape is not None and len(y_shape) >= len(x_shape):
        aligned = y_shape[len(y_shape) - len(x_shape):]
        if all(isinstance(d, int) or d == e for d, e in zip(x_shape, aligned)):
            return [ctx.unbroadcast(g, x, y), None]
    return [_sum_to_shape(ctx, g, x), None]


def _sum_to_shape(ctx: VjpContext, g: str, x: str) -> str:
    """Σ ``g`` over the axes where x (left-padded with 1s) is 1 and g is not, reshaped to x, all at run time."""
    g_shape, x_shape = ctx.shape(g), ctx.shape(x)
    lead = ctx.op("Sub", ctx.op("Size", g_shape), ctx.op("Size", x_shape))
    ones = ctx.op("Expand", ctx.ints([1]), ctx.op("Reshape", lead, ctx.ints([1])))
    padded = ctx.op("Concat", ones, x_shape, axis=0)
    broadcast = ctx.op("And", ctx.op("Equal", padded, ctx.ints(1)), ctx.op("Not", ctx.op("Equal", padded, g_shape)))
    axes = ctx.op("Reshape", ctx.op("NonZero", broadcast), ctx.ints([-1]))
    summed = ctx.op("ReduceSum", g, axes, keepdims=1, noop_with_empty_axes=1)
    return ctx.op("Reshape", summed, x_shape)


@vjp("Tile")
def tile(ctx: VjpContext, node, grads):
    """y = Tile(x, repeats): y[q·d + p] = x[p] per axis (d = x's dim, 0 ≤ q < r).

    dx = ReduceSum(Reshape(g, [r₀, d₀, r₁, d₁, …]), axes = 0, 2, 4, …). The interleaved shape is
    a constant when repeats and x's dims are; otherwise it is built at run time from
    ``repeats`` and ``Shape(x)``, so run-time repeats need no fallback."""
    g = grads[0]
    x, repeats = node.input[0], node.input[1]
    constant = ctx.constant_value(repeats)
    shape = ctx.static_shape(x)
    if constant is not None:
        reps = [int(r) for r in np.asarray(constant).ravel()]
        if all(r == 1 for r in reps):
            return [g, None]
        if shape is not None and all(isinstance(d, int) for d in shape):
            target = ctx.ints([v for pair in zip(reps, shape) for v in pair])
        else:
            target = _interleave(ctx, ctx.ints(reps), ctx.shape(x))
        rank = len(reps)
    else:
        target = _interleave(ctx, repeats, ctx.shape(x))
        rank = ctx.rank(x)
    if rank is not None:
        axes = ctx.ints(list(range(0, 2 * rank, 2)))
    else:
        axes = ctx.op("Range", ctx.ints(0), ctx.op("Mul", ctx.op("Size", ctx.shape(x)), ctx.ints(2)), ctx.ints(2))
    grad_x = ctx.op("ReduceSum", ctx.op("Reshape", g, target), axes, keepdims=0)
    return [grad_x, None]


def _interleave(ctx: VjpContext, repeats: str, dims: str) -> str:
    """[r₀, d₀, r₁, d₁, …] from two 1-D int64 tensors."""
    pairs = ctx.op("Concat", ctx.op("Unsqueeze", repeats, ctx.ints([1])),
                   ctx.op("Unsqueeze", dims, ctx.ints([1])), axis=1)
    return ctx.op("Reshape", pairs, ctx.ints([-1]))


@vjp("SpaceToDepth")
def space_to_depth(ctx: VjpContext, node, grads):
    """SpaceToDepth(b) moves each b×b block into channels in DCR order (channel (i·b + j)·C + c);
    its inverse, hence its (orthogonal) gradient, is DepthToSpace(b, mode=DCR)."""
    blocksize = ctx.attr(node, "blocksize")
    return [ctx.op("DepthToSpace", grads[0], blocksize=blocksize, mode="DCR")]


@vjp("DepthToSpace")
def depth_to_space(ctx: VjpContext, node, grads):
    """DepthToSpace is a permutation, so its gradient is its inverse.

    DCR (channel (i·b + j)·C′ + c → pixel block (i, j) of channel c): dx = SpaceToDepth(g, b).
    CRD (channel c·b² + i·b + j): SpaceToDepth gives the channels in DCR order [b², C′]; swap to
    [C′, b²]: Reshape to [N, b², C′, H·W], Transpose [0, 2, 1, 3], Reshape to Shape(x)."""
    g = grads[0]
    x = node.input[0]
    blocksize = ctx.attr(node, "blocksize")
    mode = text(ctx.attr(node, "mode", "DCR"))
    dcr = ctx.op("SpaceToDepth", g, blocksize=blocksize)
    if mode == "DCR":
        return [dcr]
    squared = blocksize * blocksize
    shape = ctx.static_shape(x)
    if shape is not None and len(shape) == 4 and isinstance(shape[1], int):
        target = ctx.ints([0, squared, shape[1] // squared, -1])
    else:
        channels = ctx.op("Div", ctx.op("Gather", ctx.shape(x), ctx.ints([1])), ctx.ints([squared]))
        target = ctx.op("Concat", ctx.ints([0, squared]), channels, ctx.ints([-1]), axis=0)
    grouped = ctx.op("Reshape", dcr, target)
    swapped = ctx.op("Transpose", grouped, perm=[0, 2, 1, 3])
    return [ctx.op("Reshape", swapped, ctx.shape(x))]
