"""Normalisation layers: BatchNormalization (inference), LayerNormalization, InstanceNormalization,
GroupNormalization.

All but BatchNormalization standardise groups of elements with statistics computed from the input
itself. Exports do not output those statistics, so the rules recompute them in-graph: the input is
reshaped so that each group is one row of the last axis (Flatten for LayerNormalization,
[N, C, −1] for InstanceNormalization, [N, G, −1] for GroupNormalization — rank-agnostic, and the
batch stays dynamic), then with x̂ = (x − μ)·σ⁻¹, σ⁻¹ = 1/√(var + ε), D elements per row and
ĝ = g ⊙ scale (the output gradient scaled back to x̂):

    dx = σ⁻¹ · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂))        (means over the row)

which includes the paths through μ and var. Scale and bias gradients are Σ g ⊙ x̂ and Σ g over
the axes they are broadcast along, emitted only when they depend on the input.
"""

from __future__ import annotations

from ..context import VjpContext
from ..errors import Declined
from ..registry import vjp


def _mean_last(ctx: VjpContext, t: str) -> str:
    """ReduceMean over the last axis, keepdims (axes: attribute before opset 18, input from 18)."""
    if ctx.opset >= 18:
        return ctx.op("ReduceMean", t, ctx.ints([-1]), keepdims=1)
    return ctx.op("ReduceMean", t, axes=[-1], keepdims=1)


def _standardized(ctx: VjpContext, rows: str, epsilon: float) -> tuple[str, str, str]:
    """(x − μ, σ⁻¹, x̂) of each row (the last axis) of ``rows``."""
    centered = ctx.op("Sub", rows, _mean_last(ctx, rows))
    variance = _mean_last(ctx, ctx.op("Mul", centered, centered))
    inverse_std = ctx.op("Reciprocal", ctx.op("Sqrt", ctx.op("Add", variance, ctx.const(epsilon, like=rows))))
    return centered, inverse_std, ctx.op("Mul", centered, inverse_std)


def _standardized_backward(ctx: VjpContext, scaled_grad: str, inverse_std: str, normalized: str) -> str:
    """dx = σ⁻¹ · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂)), row-wise."""
    centered = ctx.op("Sub", scaled_grad, _mean_last(ctx, scaled_grad))
    projection = ctx.op("Mul", normalized, _mean_last(ctx, ctx.op("Mul", scaled_grad, normalized)))
    return ctx.op("Mul", inverse_std, ctx.op("Sub", centered, projection))


def _per_channel(ctx: VjpContext, t: str, vector: str, like: str) -> str:
    """t ⊙ vector along axis 1 of ``like`` [N, C, ...] (vector [C])."""
    rank = ctx.rank(like)
    if rank is not None:
        return ctx.op("Mul", t, ctx.op("Reshape", vector, ctx.ints([-1] + [1] * (rank - 2))))
    rows = ctx.op("Reshape", t, ctx.ints([0, 0, -1]))
    return ctx.op("Reshape", ctx.op("Mul", rows, ctx.op("Unsqueeze", vector, ctx.ints([1]))), ctx.shape(like))


def _channel_sum(ctx: VjpContext, t: str) -> str:
    """Σ over every axis but 1 of t [N, C, ...] → [C]."""
    return ctx.op("ReduceSum", ctx.op("Reshape", t, ctx.ints([0, 0, -1])), ctx.ints([0, 2]), keepdims=0)


@vjp("BatchNormalization")
def batch_normalization(ctx: VjpContext, node, grads):
    """Inference mode: Y = (X − mean)·f + B with f = scale/√(var + ε) per channel (axis 1).

    dX = g·f; dscale = Σ g·(X − mean)/√(var + ε); dB = Σ g; dmean = −Σ g·f;
    dvar = −½·Σ g·(X − mean)·scale·(var + ε)^(−3/2) (sums over every axis but 1).
    Training mode (batch statistics) is refused: exported classifiers run in inference mode.
    """
    if ctx.attr(node, "training_mode", 0) or any(name for name in node.output[1:]):
        raise Declined("is in training mode; export the model in eval mode")
    g = grads[0]
    x, scale, bias, mean, var = node.input[:5]
    epsilon = ctx.attr(node, "epsilon", 1e-5)
    inverse_std = ctx.op("Reciprocal", ctx.op("Sqrt", ctx.op("Add", var, ctx.const(epsilon, like=var))))
    factor = ctx.op("Mul", scale, inverse_std)
    result = [None] * 5
    if ctx.wants(x):
        result[0] = _per_channel(ctx, g, factor, x)
    if ctx.wants(bias) or ctx.wants(mean):
        total = _channel_sum(ctx, g)
        result[2] = total if ctx.wants(bias) else None
        result[3] = ctx.op("Neg", ctx.op("Mul", total, factor)) if ctx.wants(mean) else None
    if ctx.wants(scale) or ctx.wants(var):
        rows = ctx.ints([0, 0, -1])
        centered = ctx.op("Sub", ctx.op("Reshape", x, rows), ctx.op("Unsqueeze", mean, ctx.ints([1])))
        moment = ctx.op("ReduceSum", ctx.op("Mul", ctx.op("Reshape", g, rows), centered), ctx.ints([0, 2]),
                        keepdims=0)  # Σ g·(X − mean)
        if ctx.wants(scale):
            result[1] = ctx.op("Mul", moment, inverse_std)
        if ctx.wants(var):
            cube = ctx.op("Mul", inverse_std, ctx.op("Mul", inverse_std, inverse_std))
            result[4] = ctx.op("Mul", ctx.op("Mul", moment, scale), ctx.op("Mul", cube, ctx.const(-0.5, like=var)))
    return result[: len(node.input)]


@vjp("LayerNormalization")
def layer_normalization(ctx: VjpContext, node, grads):
    """Y = x̂ ⊙ scale + B over the trailing axes from ``axis`` (negative allowed); outputs Mean
    and InvStdDev are optional.

    dX = σ⁻¹·(ĝ − mean(ĝ) − x̂·mean(ĝ ⊙ x̂)) with ĝ = g ⊙ scale, computed on Flatten(·, axis);
    gradients reaching the Mean output add g_μ/D, those reaching InvStdDev add −g_σ·σ⁻³·(x − μ)/D.
    dscale = Σ g ⊙ x̂, dB = Σ g, each summed back to its (broadcast) shape.
    """
    x, scale = node.input[0], node.input[1]
    bias = node.input[2] if len(node.input) > 2 else ""
    y = node.output[0]
    grads = list(grads) + [None] * (3 - len(grads))
    g, g_mean, g_inverse = grads[:3]
    axis = ctx.attr(node, "axis", -1)
    epsilon = ctx.attr(node, "epsilon", 1e-5)
    rows = ctx.op("Flatten", x, axis=axis)
    centered, inverse_std, normalized = _standardized(ctx, rows, epsilon)
    result = [None] * len(node.input)
    if ctx.wants(x):
        parts = []
        if g is not None:
            scaled = ctx.op("Flatten", ctx.op("Mul", g, scale), axis=axis)
            parts.append(_standardized_backward(ctx, scaled, inverse_std, normalized))
        if g_mean is not None or g_inverse is not None:
            count = ctx.op("CastLike", ctx.op("Gather", ctx.shape(rows), ctx.ints(1)), x)
            if g_mean is not None:
                share = ctx.op("Div", ctx.op("Flatten", g_mean, axis=axis), count)
                parts.append(ctx.op("Expand", share, ctx.shape(rows)))
            if g_inverse is not None:
                cube = ctx.op("Mul", inverse_std, ctx.op("Mul", inverse_std, inverse_std))
                weight = ctx.op("Div", ctx.op("Mul", ctx.op("Flatten", g_inverse, axis=axis), cube), count)
                parts.append(ctx.op("Neg", ctx.op("Mul", weight, centered)))
        total = parts[0] if len(parts) == 1 else ctx.op("Sum", *parts)
        result[0] = ctx.op("Reshape", total, ctx.shape(x))
    if g is not None and ctx.wants(scale):
        shaped = ctx.op("Reshape", normalized, ctx.shape(x))
        result[1] = ctx.unbroadcast(ctx.op("Mul", g, shaped), scale, y)
    if g is not None and bias and ctx.wants(bias):
        result[2] = ctx.unbroadcast(g, bias, y)
    return result


@vjp("InstanceNormalization")
def instance_normalization(ctx: VjpContext, node, grads):
    """Y[n, c] = x̂[n, c]·scale[c] + B[c], statistics over the spatial axes of each (n, c).

    dX = σ⁻¹·(ĝ − mean(ĝ) − x̂·mean(ĝ ⊙ x̂)) with ĝ = g·scale[c], on [N, C, −1];
    dscale[c] = Σ g ⊙ x̂, dB[c] = Σ g (over n and the spatial axes)."""
    g = grads[0]
    x, scale, bias = node.input
    epsilon = ctx.attr(node, "epsilon", 1e-5)
    per_channel = ctx.ints([0, 0, -1])
    _, inverse_std, normalized = _standardized(ctx, ctx.op("Reshape", x, per_channel), epsilon)
    g_rows = ctx.op("Reshape", g, per_channel)
    result = [None, None, None]
    if ctx.wants(x):
        scaled = ctx.op("Mul", g_rows, ctx.op("Unsqueeze", scale, ctx.ints([1])))
        result[0] = ctx.op("Reshape", _standardized_backward(ctx, scaled, inverse_std, normalized), ctx.shape(x))
    if ctx.wants(scale):
        result[1] = ctx.op("ReduceSum", ctx.op("Mul", g_rows, normalized), ctx.ints([0, 2]), keepdims=0)
    if ctx.wants(bias):
        result[2] = ctx.op("ReduceSum", g_rows, ctx.ints([0, 2]), keepdims=0)
    return result


@vjp("GroupNormalization")
def group_normalization(ctx: VjpContext, node, grads):
    """Opset 21: Y = x̂·scale[c] + B[c], statistics per sample over each of ``num_groups`` groups of
    channels (and the spatial axes).

    dX = σ⁻¹·(ĝ − mean(ĝ) − x̂·mean(ĝ ⊙ x̂)) on [N, G, −1] with ĝ = g·scale[c];
    dscale[c] = Σ g ⊙ x̂, dB[c] = Σ g over every axis but the channel axis.
    The statistics are recomputed in X's dtype whatever ``stash_type`` says.

    GroupNormalization-18 (scale and bias per group) is deprecated and rejected by onnx.checker;
    the rule declines it.
    """
    if ctx.opset < 21:
        raise Declined(f"opset {ctx.opset} "
                       f"(per-group scale) is deprecated by ONNX; convert the model to opset 21")
    g = grads[0]
    x, scale, bias = node.input
    groups = ctx.attr(node, "num_groups")
    epsilon = ctx.attr(node, "epsilon", 1e-5)
    _, inverse_std, normalized = _standardized(ctx, ctx.op("Reshape", x, ctx.ints([0, groups, -1])), epsilon)
    result = [None, None, None]
    if ctx.wants(x):
        scaled = ctx.op("Reshape", _per_channel(ctx, g, scale, x), ctx.ints([0, groups, -1]))
        result[0] = ctx.op("Reshape", _standardized_backward(ctx, scaled, inverse_std, normalized), ctx.shape(x))
    if ctx.wants(scale):
        result[1] = _channel_sum(ctx, ctx.op("Mul", g, ctx.op("Reshape", normalized, ctx.shape(x))))
    if ctx.wants(bias):
        result[2] = _channel_sum(ctx, g)
    return result
