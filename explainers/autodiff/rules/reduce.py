"""Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceL1, ReduceL2, ReduceSumSquare,
ReduceLogSum, ReduceLogSumExp.

``axes`` is an attribute before opset 13 (ReduceSum) or 18 (the others) and an optional input
from then on; a constant input is read at build time, a run-time one is used as is. With no
axes every axis is reduced, unless ``noop_with_empty_axes`` = 1, when the reduction runs over
the empty set of axes (elementwise). Every rule first brings the output gradient g (and, where
needed, the output y) back to the keepdims layout, where it broadcasts against x:

* keepdims = 1: as is;
* constant axes: Unsqueeze at the (normalised, sorted) axes; reduce-all gives a scalar, which
  broadcasts already;
* otherwise: Reshape to ``Shape(ReduceSum(x, axes, keepdims=1))`` computed at run time.

Ties in ReduceMax/ReduceMin follow torch's ``amax``/``amin``: the gradient is shared evenly among
the tied elements (an equality mask divided by the tie count).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..context import VjpContext
from ..registry import vjp


@dataclass(frozen=True)
class _Reduction:
    x: str
    y: str
    keepdims: bool
    noop: bool
    axes: list[int] | None  # constant axes ([] = none given); None when a run-time input
    axes_input: str | None  # the run-time axes tensor

    @property
    def identity(self) -> bool:
        """Reduces over no axis at all (empty axes with noop_with_empty_axes = 1)."""
        return self.axes == [] and self.noop


def _reduction(ctx: VjpContext, node) -> _Reduction:
    axes, axes_input = ctx.attr(node, "axes"), None
    if axes is not None:
        axes = [int(a) for a in axes]
    elif len(node.input) > 1 and node.input[1]:
        value = ctx.constant_value(node.input[1])
        if value is not None:
            axes = [int(a) for a in np.asarray(value).ravel()]
        else:
            axes_input = node.input[1]
    else:
        axes = []
    return _Reduction(node.input[0], node.output[0], bool(ctx.attr(node, "keepdims", 1)),
                      bool(ctx.attr(node, "noop_with_empty_axes", 0)), axes, axes_input)


def _axes_tensor(ctx: VjpContext, r: _Reduction) -> str:
    return ctx.ints(r.axes) if r.axes_input is None else r.axes_input


def _keep(ctx: VjpContext, r: _Reduction, t: str) -> str:
    """``t`` shaped like the reduction's output, brought to the keepdims layout."""
    if r.keepdims or r.identity:
        return t
    if r.axes is not None:
        if not r.axes:  # reduce-all without keepdims: a scalar
            return t
        rank = ctx.rank(r.x)
        if rank is not None:
            return ctx.op("Unsqueeze", t, ctx.ints(sorted(a % rank for a in r.axes)))
        if all(a >= 0 for a in r.axes):
            return ctx.op("Unsqueeze", t, ctx.ints(sorted(r.axes)))
    kept = _sum_keepdims(ctx, r, r.x)
    return ctx.op("Reshape", t, ctx.shape(kept))


def _sum_keepdims(ctx: VjpContext, r: _Reduction, t: str) -> str:
    """ReduceSum of ``t`` (shaped like x) over the node's axes, keeping dims."""
    if r.identity:
        return t
    if r.axes == []:
        return ctx.op("ReduceSum", t, keepdims=1)
    return ctx.op("ReduceSum", t, _axes_tensor(ctx, r), keepdims=1, noop_with_empty_axes=int(r.noop))


def _count(ctx: VjpContext, r: _Reduction) -> str:
    """The number of elements averaged per output, as a scalar of x's dtype."""
    shape = ctx.static_shape(r.x)
    if r.axes is not None and shape is not None:
        axes = range(len(shape)) if not r.axes else [a % len(shape) for a in r.axes]
        dims = [] if r.identity else [shape[a] for a in axes]
        if all(isinstance(d, int) for d in dims):
            return ctx.const(float(np.prod(dims)), like=r.x)
    count = ctx.op("Div", ctx.op("Size", r.x), ctx.op("Size", r.y))
    return ctx.op("CastLike", count, r.x)


def _expand(ctx: VjpContext, r: _Reduction, t: str) -> str:
    return ctx.op("Expand", t, ctx.shape(r.x))


@vjp("ReduceSum")
def reduce_sum(ctx: VjpContext, node, grads):
    """y = Σ_axes x: dx = Expand(keep(g), Shape(x))."""
    r = _reduction(ctx, node)
    grad_x = grads[0] if r.identity else _expand(ctx, r, _keep(ctx, r, grads[0]))
    return [grad_x] + [None] * (len(node.input) - 1)


@vjp("ReduceMean")
def reduce_mean(ctx: VjpContext, node, grads):
    """y = Σ_axes x / n: dx = Expand(keep(g) / n, Shape(x)), n static when the reduced dims are,
    else Size(x) / Size(y) at run time."""
    r = _reduction(ctx, node)
    if r.identity:
        return [grads[0]] + [None] * (len(node.input) - 1)
    share = ctx.op("Div", _keep(ctx, r, grads[0]), _count(ctx, r))
    return [_expand(ctx, r, share)] + [None] * (len(node.input) - 1)


@vjp("ReduceMax", "ReduceMin")
def reduce_extremum(ctx: VjpContext, node, grads):
    """y = max_axes x (or min): dx = m ⊙ keep(g) / Σ_axes m with m = (x == keep(y)).

    Ties share the gradient evenly, as torch's amax/amin do (torch.max(dim) instead routes it
    to one index); with a single extremum this is the usual one-hot routing."""
    r = _reduction(ctx, node)
    if r.identity:
        return [grads[0]] + [None] * (len(node.input) - 1)
    mask = ctx.op("CastLike", ctx.op("Equal", r.x, _keep(ctx, r, r.y)), r.x)
    share = ctx.op("Div", _keep(ctx, r, grads[0]), _sum_keepdims(ctx, r, mask))
    return [ctx.op("Mul", mask, share)] + [None] * (len(node.input) - 1)


@vjp("ReduceL1")
def reduce_l1(ctx: VjpContext, node, grads):
    """y = Σ |x|: dx = sign(x) ⊙ keep(g) (0 at x = 0, as torch)."""
    r = _reduction(ctx, node)
    return [ctx.op("Mul", ctx.op("Sign", r.x), _keep(ctx, r, grads[0]))] + [None] * (len(node.input) - 1)


@vjp("ReduceL2")
def reduce_l2(ctx: VjpContext, node, grads):
    """y = √(Σ x²): dx = x ⊙ keep(g) / keep(y), and 0 where y = 0 (torch's convention)."""
    r = _reduction(ctx, node)
    y = _keep(ctx, r, r.y)
    ratio = ctx.op("Div", ctx.op("Mul", r.x, _keep(ctx, r, grads[0])), y)
    grad_x = ctx.op("Where", ctx.op("Equal", y, ctx.const(0, like=r.x)), ctx.const(0, like=r.x), ratio)
    return [grad_x] + [None] * (len(node.input) - 1)


@vjp("ReduceSumSquare")
def reduce_sum_square(ctx: VjpContext, node, grads):
    """y = Σ x²: dx = 2 x ⊙ keep(g)."""
    r = _reduction(ctx, node)
    twice = ctx.op("Mul", r.x, ctx.const(2, like=r.x))
    return [ctx.op("Mul", twice, _keep(ctx, r, grads[0]))] + [None] * (len(node.input) - 1)


@vjp("ReduceLogSum")
def reduce_log_sum(ctx: VjpContext, node, grads):
    """y = log Σ x: dx = Expand(keep(g) / Σ_axes x, Shape(x))."""
    r = _reduction(ctx, node)
    share = ctx.op("Div", _keep(ctx, r, grads[0]), _sum_keepdims(ctx, r, r.x))
    return [_expand(ctx, r, share)] + [None] * (len(node.input) - 1)


@vjp("ReduceLogSumExp")
def reduce_log_sum_exp(ctx: VjpContext, node, grads):
    """y = log Σ exp x: dx = keep(g) ⊙ exp(x − keep(y)) (the softmax over the reduced axes)."""
    r = _reduction(ctx, node)
    weights = ctx.op("Exp", ctx.op("Sub", r.x, _keep(ctx, r, r.y)))
    return [ctx.op("Mul", weights, _keep(ctx, r, grads[0]))] + [None] * (len(node.input) - 1)
