"""DeepLIFT's rescale rule (Shrikumar, Greenside & Kundaje, ICML 2017) as the rule set "deeplift_rescale".

DeepLIFT propagates *multipliers* m = Δy/Δx (Δ: the difference between the input x and a reference
input x′, the paper's *reference* and onnxplain's baseline) instead of derivatives. The graph must be built with ``baseline_pass=True`` so that a
rule can read ``ctx.baseline(t)``, tensor t evaluated on x′. The input "gradient" of the model is
then the multiplier of the score, and the summation-to-delta property (completeness)

    Σ_i (x_i − x′_i) · m_i = f(x) − f(x′)

holds *exactly* when every op on the path is one of:

* linear (Conv, Gemm, MatMul/Mul/Div by a constant, Add, BatchNormalization, pooling by averages,
  reshapes, ...): the multiplier of a linear map is its transpose, i.e. the vanilla rule (kept);
* elementwise with one input-dependent operand (Relu, Clip, Sigmoid, Tanh, Softplus, Elu, Selu,
  LeakyRelu, PRelu, HardSwish, HardSigmoid, Gelu, Mish, Erf, Exp, Log, Sqrt, Reciprocal, Abs,
  Pow with a constant exponent): the paper's rescale rule m = (y − y′)/(x − x′);
* MaxPool: Captum's DeepLIFT rule (``captum/attr/_core/deep_lift.py``, ``maxpool``): with
  ŷ = max(y, y′), the output difference is split as (ŷ − y′) + (y − ŷ), the first part routed to
  the element x selects, the second to the element x′ selects, and the routed sum divided by Δx.
  Whatever each window routes is bounded by |Δx| of the element it lands on, so the quotient is
  well defined everywhere except at Δx = 0 (where the gradient is used: it contributes 0);
* bilinear in two input-dependent operands (Mul, MatMul, Gemm, two-operand Einsum — e.g. SiLU's
  x·σ(x), squeeze-excitation gates, attention's q·kᵀ and p·v): Δ(a·b) = Δa·½(b + b′) + ½(a + a′)·Δb
  exactly, so each operand's multiplier is the vanilla rule evaluated at the midpoints — the
  symmetric (Shapley) split of the interaction term Δa·Δb. (Captum keeps the gradient for such
  products, so its completeness is approximate on gated nets.) Div by an input-dependent
  denominator: Δ(a/b) = Δa·½(1/b + 1/b′) − ½(a + a′)·Δb/(b·b′);
* LayerNormalization and Softmax, decomposed into the above (centre, mean of squares, rescaled
  inverse square root, product; a shared per-row shift, rescaled exp, sum, reciprocal, product).

Elsewhere the vanilla gradient is used and completeness becomes approximate: ops with several
input-dependent operands that are not bilinear (Pow with an input-dependent exponent, Max/Min,
Where on an input-dependent condition, Einsum of three operands), ReduceMax/GlobalMaxPool,
Instance/GroupNormalization, and an input-dependent Clip bound or PRelu slope. A final
Softmax/Sigmoid is cut by the builder (the logits are explained).

Numerics. Relu, Clip and Abs return x itself (or a constant) on each linear piece, so y − y′ is
computed exactly and Δy/Δx needs a guard only at Δx = 0 (vanilla rule there; the term Δx·m is 0
anyway). For the other elementwise ops the quotient of two float differences loses precision when
|Δx| is small; where |Δx| < √ε·(1 + |x| + |x′|) (ε the dtype's machine epsilon) the rule uses the
derivative at the midpoint (x + x′)/2 instead — it differs from the secant by O(Δx²), so each
element's contribution is still Δy up to O(|Δx|³). A multiplier replaced where Δx = 0 exactly
does not change completeness (its own term is 0), only how the multipliers of earlier layers are
shared out; the gradient there is the secant's limit, as in Captum.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from ..context import VjpContext
from ..registry import default_rule, vjp
from ._common import node_attributes
from .normalization import _standardized
from .pooling import _scatter_add, max_pool_indices

RULE_SET = "deeplift_rescale"

_EXACT_PIECEWISE = ("Relu", "Clip", "Abs")
_SMOOTH_UNARY = ("Sigmoid", "Tanh", "Softplus", "Elu", "Selu", "LeakyRelu", "PRelu", "HardSwish", "HardSigmoid",
                 "Gelu", "Mish", "Erf", "Exp", "Log", "Sqrt", "Reciprocal", "Pow")


def _vanilla(node):
    """The vanilla rule of ``node``'s op: exact where the op is linear in its input-dependent operands."""
    return default_rule(node.op_type)


def _approximate(ctx: VjpContext, node, grads, why: str):
    """The vanilla gradient where no rescale rule applies (``why``): recorded in
    ``ctx.approximations``, since summation-to-delta becomes approximate at this node."""
    ctx.approximate(node, why)
    return _vanilla(node)(ctx, node, grads)


class _Renamed:
    """``ctx`` seen by a vanilla rule applied to a stand-in node whose inputs are new tensors
    (midpoints): ``wants`` answers for the original tensor each stand-in replaces."""

    def __init__(self, ctx: VjpContext, originals: dict[str, str]):
        self._ctx, self._originals = ctx, originals

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    def wants(self, name: str) -> bool:
        return self._ctx.wants(self._originals.get(name, name))


def _like(ctx: VjpContext, new: str, old: str) -> None:
    """Give tensor ``new`` the static shape and dtype of ``old`` (rules consult them)."""
    if old in ctx.shapes:
        ctx.shapes[new] = ctx.shapes[old]
    ctx.dtypes[new] = ctx.dtype(old)


def _midpoint(ctx: VjpContext, name: str) -> str:
    """(t + t′)/2 for an input-dependent tensor, t itself for a constant one."""
    if not name or not ctx.wants(name):
        return name
    mid = ctx.op("Mul", ctx.op("Add", name, ctx.baseline(name)), ctx.const(0.5, like=name))
    _like(ctx, mid, name)
    return mid


def _vanilla_at(ctx: VjpContext, node, grads, inputs: list[str], *, forward: bool) -> list:
    """The vanilla rule of ``node`` applied to a copy evaluated on ``inputs`` (with the copy's
    forward outputs recomputed in-graph when ``forward``: rules may read them)."""
    attributes = node_attributes(node)
    if forward:
        outputs = ctx.op_multi(node.op_type, inputs, len(node.output), **attributes)
        for new, old in zip(outputs, node.output):
            _like(ctx, new, old)
    else:
        outputs = list(node.output)
    stand_in = helper.make_node(node.op_type, inputs, outputs, **attributes)
    renamed = _Renamed(ctx, {new: old for new, old in zip(inputs, node.input) if new != old})
    return list(_vanilla(node)(renamed, stand_in, grads))


def _safe_quotient(ctx: VjpContext, numerator: str, dx: str, small: str) -> str:
    """numerator / dx where not ``small`` (the divisor is made 1 where it is, to avoid 0/0)."""
    return ctx.op("Div", numerator, ctx.op("Add", dx, ctx.op("CastLike", small, dx)))


# ---------------------------------------------------------------------- elementwise nonlinearities
@vjp(*_EXACT_PIECEWISE, rule_set=RULE_SET)
def rescale_piecewise(ctx: VjpContext, node, grads):
    """m = (y − y′)/(x − x′), exact in floating point for ops that return x or a constant on each
    piece; the vanilla derivative where x = x′ (the term Δx·m is 0 there)."""
    if any(name and ctx.wants(name) for name in node.input[1:]):
        return _approximate(ctx, node, grads, "an input-dependent bound")
    (g,) = grads
    x, y = node.input[0], node.output[0]
    dx = ctx.op("Sub", x, ctx.baseline(x))
    dy = ctx.op("Sub", y, ctx.baseline(y))
    small = ctx.op("Equal", dx, ctx.const(0, like=x))
    rescaled = ctx.op("Mul", g, _safe_quotient(ctx, dy, dx, small))
    fallback = _vanilla(node)(ctx, node, grads)[0]
    return [ctx.op("Where", small, fallback, rescaled)] + [None] * (len(node.input) - 1)


def _secant(ctx: VjpContext, x: str, x_ref: str, y: str, y_ref: str, derivative_at_midpoint) -> str:
    """(y − y′)/(x − x′) for a smooth elementwise y = f(x); where |Δx| < √ε·(1 + |x| + |x′|)
    ``derivative_at_midpoint()`` (f′ at (x + x′)/2, emitted only then) instead."""
    dx = ctx.op("Sub", x, x_ref)
    tolerance = float(np.sqrt(np.finfo(ctx.dtype(x)).eps))
    scale = ctx.op("Add", ctx.op("Add", ctx.op("Abs", x), ctx.op("Abs", x_ref)), ctx.const(1, like=x))
    small = ctx.op("Less", ctx.op("Abs", dx), ctx.op("Mul", scale, ctx.const(tolerance, like=x)))
    quotient = _safe_quotient(ctx, ctx.op("Sub", y, y_ref), dx, small)
    return ctx.op("Where", small, derivative_at_midpoint(), quotient)


@vjp(*_SMOOTH_UNARY, rule_set=RULE_SET)
def rescale_smooth(ctx: VjpContext, node, grads):
    """m = (y − y′)/(x − x′); where |Δx| < √ε·(1 + |x| + |x′|) the derivative at (x + x′)/2."""
    if any(name and ctx.wants(name) for name in node.input[1:]):
        return _approximate(ctx, node, grads, "an input-dependent slope or exponent")
    (g,) = grads
    x, y = node.input[0], node.output[0]
    inputs = [_midpoint(ctx, x), *node.input[1:]]

    def derivative():  # the vanilla rule seeded with ones gives f′ itself
        return _vanilla_at(ctx, node, [ctx.op("Expand", ctx.const(1, like=y), ctx.shape(y))], inputs, forward=True)[0]

    multiplier = _secant(ctx, x, ctx.baseline(x), y, ctx.baseline(y), derivative)
    return [ctx.op("Mul", g, multiplier)] + [None] * (len(node.input) - 1)


# ---------------------------------------------------------------------- max pooling
@vjp("MaxPool", rule_set=RULE_SET)
def rescale_max_pool(ctx: VjpContext, node, grads):
    """Captum's DeepLIFT MaxPool: with ŷ = max(y, y′), route g·(ŷ − y′) to the elements x selects
    and g·(y − ŷ) to those x′ selects (adding over overlapping windows), divide by Δx; the
    vanilla gradient where Δx = 0."""
    (g,) = grads[:1]
    x, y = node.input[0], node.output[0]
    x_ref, y_ref = ctx.baseline(x), ctx.baseline(y)
    top = ctx.op("Max", y, y_ref)
    indices = max_pool_indices(ctx, node, x)
    via_x = _scatter_add(ctx, x, indices, ctx.op("Mul", g, ctx.op("Sub", top, y_ref)))
    via_ref = _scatter_add(ctx, x, max_pool_indices(ctx, node, x_ref), ctx.op("Mul", g, ctx.op("Sub", y, top)))
    dx = ctx.op("Sub", x, x_ref)
    small = ctx.op("Equal", dx, ctx.const(0, like=x))
    rescaled = _safe_quotient(ctx, ctx.op("Add", via_x, via_ref), dx, small)
    return [ctx.op("Where", small, _scatter_add(ctx, x, indices, g), rescaled)]


# ---------------------------------------------------------------------- products
@vjp("Mul", "MatMul", "Gemm", "Einsum", rule_set=RULE_SET)
def midpoint_bilinear(ctx: VjpContext, node, grads):
    """Bilinear in two input-dependent operands: the vanilla rule at the midpoints (a + a′)/2,
    (b + b′)/2, exact for Δ(a·b). With at most one input-dependent operand the op is linear in it
    (vanilla rule); three or more (Einsum) keep the vanilla rule (approximate)."""
    dependent = [name for name in node.input[:2 if node.op_type == "Gemm" else None] if name and ctx.wants(name)]
    if len(dependent) < 2:
        return _vanilla(node)(ctx, node, grads)  # linear in its one input-dependent operand: exact
    if node.op_type == "Einsum" and len(node.input) != 2:
        return _approximate(ctx, node, grads, "an Einsum of three or more operands")
    inputs = [_midpoint(ctx, name) if i < 2 else name for i, name in enumerate(node.input)]
    return _vanilla_at(ctx, node, grads, inputs, forward=False)


@vjp("Div", rule_set=RULE_SET)
def rescale_div(ctx: VjpContext, node, grads):
    """y = a/b: m_a = ½(1/b + 1/b′), m_b = −ā/(b·b′) with ā = (a + a′)/2 (a if constant); a
    constant b keeps the vanilla (linear) rule."""
    a, b = node.input
    if not ctx.wants(b):
        return _vanilla(node)(ctx, node, grads)  # linear in a: exact
    (g,) = grads
    y = node.output[0]
    b_ref = ctx.baseline(b)
    grad_a = None
    if ctx.wants(a):
        one = ctx.const(1, like=b)
        half_sum = ctx.op("Mul", ctx.op("Add", ctx.op("Div", one, b), ctx.op("Div", one, b_ref)),
                          ctx.const(0.5, like=b))
        grad_a = ctx.unbroadcast(ctx.op("Mul", g, half_sum), a, y)
    product = ctx.op("Mul", b, b_ref)
    grad_b = ctx.op("Neg", ctx.op("Div", ctx.op("Mul", g, _midpoint(ctx, a)), product))
    return [grad_a, ctx.unbroadcast(grad_b, b, y)]


# ---------------------------------------------------------------------- normalisation and softmax
def _reduce(ctx: VjpContext, op_type: str, t: str, axis: int) -> str:
    """ReduceSum/ReduceMax/ReduceMean over one axis, keepdims (axes an input from opset 18; ReduceSum's from 13)."""
    if op_type == "ReduceSum" or ctx.opset >= 18:
        return ctx.op(op_type, t, ctx.ints([axis]), keepdims=1)
    return ctx.op(op_type, t, axes=[axis], keepdims=1)


def _half_sum(ctx: VjpContext, a: str, b: str) -> str:
    return ctx.op("Mul", ctx.op("Add", a, b), ctx.const(0.5, like=a))


@vjp("LayerNormalization", rule_set=RULE_SET)
def rescale_layer_normalization(ctx: VjpContext, node, grads):
    """Y = (c·s)·scale + B per row (the trailing axes from ``axis``), c = x − mean(x),
    s = (v + ε)^(−½), v = mean(c²). Each step has an exact multiplier:

    * Δ(c·s) = Δc·½(s + s′) + ½(c + c′)·Δs            (product, s broadcast over the row);
    * Δs = m_s·Δv with m_s = −(s·s′)²/(s + s′)       (the secant of u^(−½), no cancellation);
    * Δv = mean(Δc·(c + c′))                         (difference of squares);
    * c is linear in x: dX = g_c − mean(g_c).

    An input-dependent scale or bias, or gradients reaching the Mean/InvStdDev outputs, keep the
    vanilla rule (approximate)."""
    x, scale = node.input[0], node.input[1]
    bias = node.input[2] if len(node.input) > 2 else ""
    if ctx.wants(scale) or (bias and ctx.wants(bias)) or any(g is not None for g in grads[1:]):
        return _approximate(ctx, node, grads, "an input-dependent scale or bias, or a gradient of Mean/InvStdDev")
    g = grads[0]
    axis = ctx.attr(node, "axis", -1)
    epsilon = ctx.attr(node, "epsilon", 1e-5)
    centered, inverse_std, _ = _standardized(ctx, ctx.op("Flatten", x, axis=axis), epsilon)
    centered_ref, inverse_std_ref, _ = _standardized(ctx, ctx.op("Flatten", ctx.baseline(x), axis=axis), epsilon)
    g_hat = ctx.op("Flatten", ctx.op("Mul", g, scale), axis=axis)
    both = ctx.op("Mul", inverse_std, inverse_std_ref)
    m_s = ctx.op("Neg", ctx.op("Div", ctx.op("Mul", both, both), ctx.op("Add", inverse_std, inverse_std_ref)))
    sum_c = ctx.op("Add", centered, centered_ref)
    g_s_over_d = ctx.op("Mul", _reduce(ctx, "ReduceMean", ctx.op("Mul", g_hat, sum_c), -1), ctx.const(0.5, like=x))
    g_c = ctx.op("Add", ctx.op("Mul", g_hat, _half_sum(ctx, inverse_std, inverse_std_ref)),
                 ctx.op("Mul", ctx.op("Mul", g_s_over_d, m_s), sum_c))
    g_rows = ctx.op("Sub", g_c, _reduce(ctx, "ReduceMean", g_c, -1))
    return [ctx.op("Reshape", g_rows, ctx.shape(x))] + [None] * (len(node.input) - 1)


@vjp("Softmax", rule_set=RULE_SET)
def rescale_softmax(ctx: VjpContext, node, grads):
    """Y = e·r along ``axis``, e = exp(x − k), r = 1/S, S = Σ e, with a shift k = max(x, x′) per
    row shared by x and x′ (softmax does not depend on it, and sharing it keeps exp one function):

    * Δ(e·r) = Δe·½(r + r′) + ½(e + e′)·Δr;  Δr = −r·r′·ΔS;  ΔS = Σ Δe;
    * Δe = m·Δx, m the secant of exp (its derivative at the midpoint where Δx is tiny)."""
    (g,) = grads
    x = node.input[0]
    x_ref = ctx.baseline(x)
    axis = ctx.attr(node, "axis", -1)
    shift = _reduce(ctx, "ReduceMax", ctx.op("Max", x, x_ref), axis)
    shifted, shifted_ref = ctx.op("Sub", x, shift), ctx.op("Sub", x_ref, shift)
    e, e_ref = ctx.op("Exp", shifted), ctx.op("Exp", shifted_ref)
    r = ctx.op("Reciprocal", _reduce(ctx, "ReduceSum", e, axis))
    r_ref = ctx.op("Reciprocal", _reduce(ctx, "ReduceSum", e_ref, axis))
    g_r = _reduce(ctx, "ReduceSum", ctx.op("Mul", g, _half_sum(ctx, e, e_ref)), axis)
    g_e = ctx.op("Sub", ctx.op("Mul", g, _half_sum(ctx, r, r_ref)), ctx.op("Mul", g_r, ctx.op("Mul", r, r_ref)))
    for name, like in ((shifted, x), (shifted_ref, x), (e, x), (e_ref, x)):
        _like(ctx, name, like)

    def derivative():
        return ctx.op("Exp", _half_sum(ctx, shifted, shifted_ref))

    return [ctx.op("Mul", g_e, _secant(ctx, shifted, shifted_ref, e, e_ref, derivative))]
