"""Activations: Relu, LeakyRelu, PRelu, Elu, Softplus, Gelu, Sigmoid, Tanh, Erf, Clip,
HardSwish, HardSigmoid — and the guided-backprop / DeconvNet overrides of the ReLU-like rules.

Kinks follow torch's conventions so results match its autograd: Relu passes where x > 0.
"""

from __future__ import annotations

from ..context import VjpContext
from ..registry import vjp


def _positive_mask(ctx: VjpContext, x: str) -> str:
    """Where(x > 0): a boolean tensor."""
    return ctx.op("Greater", x, ctx.const(0, like=x))


@vjp("Relu")
def relu(ctx: VjpContext, node, grads):
    (g,) = grads
    x = node.input[0]
    return [ctx.op("Where", _positive_mask(ctx, x), g, ctx.const(0, like=g))]


@vjp("Relu", rule_set="guided_backprop")
def guided_relu(ctx: VjpContext, node, grads):
    """Springenberg et al. 2015: pass only positive gradient where the input was positive."""
    (g,) = grads
    x = node.input[0]
    keep = ctx.op("And", _positive_mask(ctx, x), _positive_mask(ctx, g))
    return [ctx.op("Where", keep, g, ctx.const(0, like=g))]


@vjp("Relu", rule_set="deconvnet")
def deconv_relu(ctx: VjpContext, node, grads):
    """Zeiler & Fergus 2014: the backward ReLU rectifies the gradient, ignoring the input."""
    return [ctx.op("Relu", grads[0])]
