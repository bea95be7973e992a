"""Arithmetic and unary math: Add, Sub, Mul, Div, Neg, Abs, Exp, Log, Pow, Sqrt, Reciprocal, Erf,
Where, Sum, Mean, Max, Min, Cast, CastLike, Dropout, Identity, and the piecewise-constant
Sign, Floor, Ceil, Round.

Binary and variadic ops broadcast: each operand's gradient is summed back to its own shape
(:meth:`VjpContext.unbroadcast`). Notation in the docstrings: ``g`` is the output gradient,
``y`` the forward output; rules reuse ``y`` (the forward tensor) instead of recomputing it.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper

from ..context import VjpContext
from ..errors import Declined
from ..registry import vjp

_FLOAT_DTYPES = {"float16", "bfloat16", "float32", "float64"}
_FLOAT_TENSOR_TYPES = {onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.FLOAT,
                       onnx.TensorProto.DOUBLE}


def _is_float(ctx: VjpContext, name: str) -> bool:
    return np.dtype(ctx.dtype(name)).name in _FLOAT_DTYPES


def _zero_like(ctx: VjpContext, name: str) -> str:
    return ctx.const(0, like=name)


@vjp("Add")
def add(ctx: VjpContext, node, grads):
    """dA = g, dB = g (each summed back to its operand's shape)."""
    (g,) = grads
    a, b = node.input
    return [
        ctx.unbroadcast(g, a, node.output[0]) if ctx.wants(a) else None,
        ctx.unbroadcast(g, b, node.output[0]) if ctx.wants(b) else None,
    ]


@vjp("Sub")
def sub(ctx: VjpContext, node, grads):
    """dA = g, dB = −g."""
    (g,) = grads
    a, b = node.input
    return [
        ctx.unbroadcast(g, a, node.output[0]) if ctx.wants(a) else None,
        ctx.unbroadcast(ctx.op("Neg", g), b, node.output[0]) if ctx.wants(b) else None,
    ]


@vjp("Mul")
def mul(ctx: VjpContext, node, grads):
    """dA = g·B, dB = g·A."""
    (g,) = grads
    a, b = node.input
    return [
        ctx.unbroadcast(ctx.op("Mul", g, b), a, node.output[0]) if ctx.wants(a) else None,
        ctx.unbroadcast(ctx.op("Mul", g, a), b, node.output[0]) if ctx.wants(b) else None,
    ]


@vjp("Div")
def div(ctx: VjpContext, node, grads):
    """Y = A / B: dA = g / B, dB = −g·A/B² = −(g / B)·Y."""
    (g,) = grads
    a, b = node.input
    y = node.output[0]
    if not (ctx.wants(a) or ctx.wants(b)):
        return [None, None]
    quotient = ctx.op("Div", g, b)
    return [
        ctx.unbroadcast(quotient, a, y) if ctx.wants(a) else None,
        ctx.unbroadcast(ctx.op("Neg", ctx.op("Mul", quotient, y)), b, y) if ctx.wants(b) else None,
    ]


@vjp("Identity")
def identity(ctx: VjpContext, node, grads):
    """dX = g."""
    return [grads[0]]


@vjp("Neg")
def neg(ctx: VjpContext, node, grads):
    """dX = −g."""
    return [ctx.op("Neg", grads[0])]


@vjp("Abs")
def abs_(ctx: VjpContext, node, grads):
    """dX = g·sign(X) (0 at X = 0, as torch)."""
    return [ctx.op("Mul", grads[0], ctx.op("Sign", node.input[0]))]


@vjp("Exp")
def exp(ctx: VjpContext, node, grads):
    """dX = g·Y."""
    return [ctx.op("Mul", grads[0], node.output[0])]


@vjp("Log")
def log(ctx: VjpContext, node, grads):
    """dX = g / X."""
    return [ctx.op("Div", grads[0], node.input[0])]


@vjp("Sqrt")
def sqrt(ctx: VjpContext, node, grads):
    """dX = g / (2·Y) = (g·½) / Y."""
    y = node.output[0]
    return [ctx.op("Div", ctx.op("Mul", grads[0], ctx.const(0.5, like=y)), y)]


@vjp("Reciprocal")
def reciprocal(ctx: VjpContext, node, grads):
    """Y = 1/X: dX = −g·Y²."""
    y = node.output[0]
    return [ctx.op("Neg", ctx.op("Mul", grads[0], ctx.op("Mul", y, y)))]


@vjp("Erf")
def erf(ctx: VjpContext, node, grads):
    """dX = g·(2/√π)·exp(−X²)."""
    x = node.input[0]
    bump = ctx.op("Exp", ctx.op("Neg", ctx.op("Mul", x, x)))
    return [ctx.op("Mul", grads[0], ctx.op("Mul", bump, ctx.const(2 / math.sqrt(math.pi), like=x)))]


@vjp("Pow")
def pow_(ctx: VjpContext, node, grads):
    """Y = A^B: dA = g·B·A^(B−1), dB = g·Y·ln(A) (meaningful for A > 0).

    A constant exponent is folded (B = 1: dA = g; B = 2: dA = 2·g·A); an integer exponent tensor is
    cast to A's dtype first (Pow allows T2 ≠ T1).
    """
    (g,) = grads
    a, b = node.input
    y = node.output[0]
    grad_a = grad_b = None
    if ctx.wants(a):
        exponent = ctx.constant_value(b)
        if exponent is not None and exponent.size == 1 and float(exponent) == 1.0:
            local = g
        elif exponent is not None and exponent.size == 1 and float(exponent) == 2.0:
            local = ctx.op("Mul", g, ctx.op("Mul", a, ctx.const(2.0, like=a)))
        elif exponent is not None:
            exponent = np.asarray(exponent, np.float64)
            power = ctx.op("Pow", a, ctx.const(exponent - 1, like=a))
            local = ctx.op("Mul", g, ctx.op("Mul", power, ctx.const(exponent, like=a)))
        else:
            b_float = b if ctx.dtype(b) == ctx.dtype(a) else ctx.op("CastLike", b, a)
            power = ctx.op("Pow", a, ctx.op("Sub", b_float, ctx.const(1, like=a)))
            local = ctx.op("Mul", g, ctx.op("Mul", power, b_float))
        grad_a = ctx.unbroadcast(local, a, y)
    if ctx.wants(b) and _is_float(ctx, b):
        local = ctx.op("Mul", g, ctx.op("Mul", y, ctx.op("Log", a)))
        grad_b = ctx.unbroadcast(local, b, y)
        if ctx.dtype(b) != ctx.dtype(y):
            grad_b = ctx.op("CastLike", grad_b, b)
    return [grad_a, grad_b]


@vjp("Where")
def where(ctx: VjpContext, node, grads):
    """Y = Where(C, X1, X2): dX1 = Where(C, g, 0), dX2 = Where(C, 0, g); C gets no gradient."""
    (g,) = grads
    cond, x1, x2 = node.input
    y = node.output[0]
    grad_1 = grad_2 = None
    if ctx.wants(x1):
        grad_1 = ctx.unbroadcast(ctx.op("Where", cond, g, _zero_like(ctx, y)), x1, y)
    if ctx.wants(x2):
        grad_2 = ctx.unbroadcast(ctx.op("Where", cond, _zero_like(ctx, y), g), x2, y)
    return [None, grad_1, grad_2]


@vjp("Sum")
def sum_(ctx: VjpContext, node, grads):
    """Y = Σ Xi: dXi = g (each summed back to its own shape)."""
    (g,) = grads
    y = node.output[0]
    return [ctx.unbroadcast(g, x, y) if x and ctx.wants(x) else None for x in node.input]


@vjp("Mean")
def mean(ctx: VjpContext, node, grads):
    """Y = (1/n)·Σ Xi: dXi = g / n."""
    (g,) = grads
    y = node.output[0]
    share = ctx.op("Mul", g, ctx.const(1 / len(node.input), like=y)) if len(node.input) > 1 else g
    return [ctx.unbroadcast(share, x, y) if x and ctx.wants(x) else None for x in node.input]


@vjp("Max", "Min")
def max_min(ctx: VjpContext, node, grads):
    """Y = Max(X1, …, Xn) (or Min): the gradient goes to the argument(s) equal to Y.

    Ties split the gradient evenly among the tied arguments: dXi = g·[Xi = Y] / Σj [Xj = Y] —
    torch's convention for ``maximum``/``minimum`` (it halves the gradient on a tie). The
    gradient is therefore the same whichever order the arguments come in.
    """
    (g,) = grads
    y = node.output[0]
    inputs = list(node.input)
    if len(inputs) == 1:
        return [g]
    wins = [ctx.op("CastLike", ctx.op("Equal", x, y), y) for x in inputs]
    count = ctx.op("Sum", *wins)
    share = ctx.op("Div", g, count)
    return [ctx.unbroadcast(ctx.op("Mul", share, win), x, y) if ctx.wants(x) else None
            for x, win in zip(inputs, wins)]


@vjp("Cast")
def cast(ctx: VjpContext, node, grads):
    """Float → float: dX = CastLike(g, X) (g itself when the dtype does not change).

    Any other Cast (to or from an integer or bool type) is non-differentiable: no gradient.
    """
    x = node.input[0]
    to = ctx.attr(node, "to")
    if to not in _FLOAT_TENSOR_TYPES or not _is_float(ctx, x):
        return [None]
    same = np.dtype(helper.tensor_dtype_to_np_dtype(to)) == ctx.dtype(x)
    return [grads[0] if same else ctx.op("CastLike", grads[0], x)]


@vjp("CastLike")
def cast_like(ctx: VjpContext, node, grads):
    """As Cast (float → float passes the gradient, cast back to X's dtype); the target gets none."""
    x, target = node.input
    if not (_is_float(ctx, x) and _is_float(ctx, target)):
        return [None, None]
    same = ctx.dtype(target) == ctx.dtype(x)
    return [grads[0] if same else ctx.op("CastLike", grads[0], x), None]


@vjp("Dropout")
def dropout(ctx: VjpContext, node, grads):
    """Inference Dropout is the identity: dX = g. The optional mask output carries no gradient;
    ratio and training_mode get none.

    A Dropout whose ``training_mode`` is not known to be false (a graph input, or constant true)
    is random: the rule declines rather than differentiating noise.
    """
    training = node.input[2] if len(node.input) > 2 else ""
    if training:
        value = ctx.constant_value(training)
        if value is None or bool(np.asarray(value).any()):
            raise Declined(
                f"may run in training mode "
                f"(training_mode={training!r}); export the model in eval mode"
            )
    return [grads[0]] + [None] * (len(node.input) - 1)


@vjp("Sign", "Floor", "Ceil", "Round")
def piecewise_constant(ctx: VjpContext, node, grads):
    """Zero almost everywhere: no gradient flows (as torch, whose derivative is 0)."""
    return [None]
