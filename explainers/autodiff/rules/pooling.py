"""Pooling: MaxPool (through its Indices output), AveragePool, GlobalAveragePool, GlobalMaxPool."""

from __future__ import annotations

import numpy as np

from ..context import VjpContext
from ..registry import vjp


def spatial_count(ctx: VjpContext, x: str) -> str:
    """Number of spatial positions of ``x`` [N, C, ...] as a scalar of x's dtype."""
    shape = ctx.static_shape(x)
    if shape is not None and all(isinstance(d, int) for d in shape[2:]):
        return ctx.const(float(np.prod(shape[2:])), like=x)
    spatial = ctx.op("Slice", ctx.shape(x), ctx.ints([2]), ctx.ints([2**62]))
    count = ctx.op("ReduceProd", spatial, keepdims=0)
    return ctx.op("CastLike", count, x)


@vjp("GlobalAveragePool")
def global_average_pool(ctx: VjpContext, node, grads):
    x = node.input[0]
    share = ctx.op("Div", grads[0], spatial_count(ctx, x))
    return [ctx.op("Expand", share, ctx.shape(x))]
