"""Softmax and LogSoftmax along an axis (opset ≥ 13 semantics: one axis, default −1).

The builder upgrades every model to opset ≥ 16, so the pre-13 "coerce to 2-D" semantics never
reach these rules (the version converter rewrites them). Both rules reuse the forward output.
"""

from __future__ import annotations

from ..context import VjpContext
from ..registry import vjp


def _axis(ctx: VjpContext, node) -> str:
    return ctx.ints([ctx.attr(node, "axis", -1)])


@vjp("Softmax")
def softmax(ctx: VjpContext, node, grads):
    """Y = softmax(X) along ``axis``: dX = Y ⊙ (g − Σ_axis g ⊙ Y)."""
    (g,) = grads
    y = node.output[0]
    weighted = ctx.op("ReduceSum", ctx.op("Mul", g, y), _axis(ctx, node), keepdims=1)
    return [ctx.op("Mul", y, ctx.op("Sub", g, weighted))]


@vjp("LogSoftmax")
def log_softmax(ctx: VjpContext, node, grads):
    """Y = log softmax(X) along ``axis``: dX = g − exp(Y) ⊙ Σ_axis g."""
    (g,) = grads
    y = node.output[0]
    total = ctx.op("ReduceSum", g, _axis(ctx, node), keepdims=1)
    return [ctx.op("Sub", g, ctx.op("Mul", ctx.op("Exp", y), total))]
