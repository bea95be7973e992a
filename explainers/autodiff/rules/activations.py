"""Activations: Relu, LeakyRelu, PRelu, Elu, Selu, Softplus, Gelu, Mish, Sigmoid, Tanh, HardSigmoid,
HardSwish, Clip — and the guided-backprop / DeconvNet overrides of the ReLU-like rules (Relu, and
Clip acting as ReLU6).

Kinks follow torch's conventions so results match its autograd:

* Relu, LeakyRelu, PRelu, Elu, Selu: the positive branch where x > 0 (x = 0 takes the other one).
* Clip passes the gradient strictly inside min < x < max, like ``hardtanh``/``relu6`` (what
  MobileNet's ReLU6 exports from). Note that ``torch.clamp`` itself passes it on the closed
  interval; the two agree everywhere except exactly on a bound.
* HardSigmoid: alpha strictly inside the linear region 0 < alpha·x + beta < 1 (``hardsigmoid``).
* HardSwish: 0 for x ≤ −3, (2x + 3)/6 for −3 < x < 3, 1 for x ≥ 3 (torch ≥ 2.7, after
  pytorch/pytorch#148049; earlier releases used the closed interval [−3, 3] for the middle piece).

Notation in the docstrings: ``g`` is the output gradient, ``y`` the forward output; rules reuse
``y`` instead of recomputing it where the formula allows.
"""

from __future__ import annotations

import math

import numpy as np

from ..context import VjpContext
from ..registry import vjp


def _positive_mask(ctx: VjpContext, x: str) -> str:
    """Where(x > 0): a boolean tensor."""
    return ctx.op("Greater", x, ctx.const(0, like=x))


def _scale(ctx: VjpContext, tensor: str, factor: float, like: str) -> str:
    return tensor if factor == 1.0 else ctx.op("Mul", tensor, ctx.const(factor, like=like))


def _keep(ctx: VjpContext, mask: str, g: str, like: str) -> str:
    """g where ``mask``, else 0 — as g · Cast(mask): onnxruntime's Where with a scalar operand is
    ~10x slower than Cast + Mul, and these masks run on every activation of a CNN."""
    return ctx.op("Mul", g, ctx.op("CastLike", mask, like))


def _affine_clip(ctx: VjpContext, y: str, scale: float, offset: float) -> str:
    """clip(scale·y + offset, 0, 1) as one HardSigmoid, which onnxruntime runs in its blocked (NCHWc)
    layout next to the forward's Conv outputs (no reorder), at the cost of one elementwise pass."""
    return ctx.op("HardSigmoid", y, alpha=float(scale), beta=float(offset))


def _blocked_window_mask(ctx: VjpContext, y: str, high: float | None) -> str | None:
    """The float indicator [0 < Y < high] (``high`` None: [Y > 0]) of a ReLU / ReLU6 output Y ∈ [0, high],
    from HardSigmoids that onnxruntime keeps in its blocked NCHWc layout, or None where that does not
    apply (not a float32 tensor, or ``high`` not a finite number ≥ 2⁻¹⁰⁰).

    Replaces Greater/Less/And/Cast: those ops are not NCHWc, so each mask forced the forward's Y and
    the backward's g out of the blocked layout and back (ReorderOutput/ReorderInput) — on the bundled
    EfficientNet-Lite0 the masks and reorders took ~40% of the gradient graph's time. A 1×1 depthwise
    Conv + Clip (also NCHWc) measured 2–2.5× slower than HardSigmoid.

    Exact (the same 0/1 values as the comparisons) for every normal float32 Y:
    [Y > 0] = clip(2¹²⁶·Y, 0, 1): 2¹²⁶·Y is exact (a power of two) and ≥ 1 for every Y ≥ 2⁻¹²⁶ (above 4
    it overflows to +inf, which the clip maps to 1); −0 and 0 give 0.
    [Y < h] = clip(2ᵏ·h − 2ᵏ·Y, 0, 1) with 2ᵏ = 2²⁴⁻ᵉ, h ∈ [2ᵉ, 2ᵉ⁺¹): the floats in [2ᵉ⁻¹, h) are
    multiples of 2ᵉ⁻²⁴, so h − Y ≥ 2ᵉ⁻²⁴ whenever Y < h, and the scaled difference, however rounded
    (fused or not), is ≥ 1; it is 0 at Y = h.
    Denormal Y (< 2⁻¹²⁶) would give a fraction; onnxplain's sessions flush denormals to zero
    (``session.set_denormal_as_zero``), so the forward never produces one. The argument needs IEEE float32
    HardSigmoid, which onnxruntime's CPU provider computes; OpenVINO's provider does not (gradients off by
    10⁶): gradient graphs run only on providers that pass a check of these masks (model/provider_check.py).
    """
    if ctx.dtype(y) != np.float32:
        return None
    if high is not None and not (math.isfinite(high) and high >= 2.0**-100):
        return None
    positive = _affine_clip(ctx, y, 2.0**126, 0.0)
    if high is None:
        return positive
    exponent = math.floor(math.log2(high))
    scale = 2.0 ** (24 - exponent)
    below = _affine_clip(ctx, y, -scale, scale * high)
    return ctx.op("Mul", positive, below)


# ---------------------------------------------------------------------- ReLU family
@vjp("Relu")
def relu(ctx: VjpContext, node, grads):
    """dX = g·[X > 0] = g·[Y > 0]: reading Y lets onnxruntime keep the forward Conv + Relu fused."""
    (g,) = grads
    x = node.input[0]
    mask = _blocked_window_mask(ctx, node.output[0], None)
    if mask is not None:
        return [ctx.op("Mul", g, mask)]
    return [_keep(ctx, _positive_mask(ctx, node.output[0]), g, x)]


@vjp("Relu", rule_set="guided_backprop")
def guided_relu(ctx: VjpContext, node, grads):
    """Springenberg et al. 2015: pass only positive gradient where the input was positive."""
    (g,) = grads
    x = node.input[0]
    keep = ctx.op("And", _positive_mask(ctx, node.output[0]), _positive_mask(ctx, g))
    return [_keep(ctx, keep, g, x)]


@vjp("Relu", rule_set="deconvnet")
def deconv_relu(ctx: VjpContext, node, grads):
    """Zeiler & Fergus 2014: the backward ReLU rectifies the gradient, ignoring the input."""
    return [ctx.op("Relu", grads[0])]


@vjp("LeakyRelu")
def leaky_relu(ctx: VjpContext, node, grads):
    """dX = g for X > 0, alpha·g otherwise (alpha defaults to 0.01)."""
    (g,) = grads
    x = node.input[0]
    alpha = ctx.attr(node, "alpha", 0.01)
    return [ctx.op("Where", _positive_mask(ctx, x), g, _scale(ctx, g, alpha, x))]


@vjp("PRelu")
def prelu(ctx: VjpContext, node, grads):
    """Y = X for X > 0, slope·X otherwise (slope broadcasts to X).

    dX = g for X > 0, g·slope otherwise; dslope = g·X where X ≤ 0, summed back to slope's shape
    (emitted only when the slope depends on the input, which is rare).
    """
    (g,) = grads
    x, slope = node.input
    y = node.output[0]
    positive = _positive_mask(ctx, x)
    grad_x = ctx.op("Where", positive, g, ctx.op("Mul", g, slope)) if ctx.wants(x) else None
    grad_slope = None
    if ctx.wants(slope):
        negative_part = ctx.op("Where", positive, ctx.const(0, like=x), ctx.op("Mul", g, x))
        grad_slope = ctx.unbroadcast(negative_part, slope, y)
    return [grad_x, grad_slope]


@vjp("Elu")
def elu(ctx: VjpContext, node, grads):
    """Y = X for X > 0, alpha·(eˣ − 1) otherwise: dX = g for X > 0, g·(Y + alpha) otherwise."""
    (g,) = grads
    x, y = node.input[0], node.output[0]
    alpha = ctx.attr(node, "alpha", 1.0)
    negative = ctx.op("Mul", g, ctx.op("Add", y, ctx.const(alpha, like=y)))
    return [ctx.op("Where", _positive_mask(ctx, x), g, negative)]


_SELU_ALPHA = 1.67326319217681884765625
_SELU_GAMMA = 1.05070102214813232421875


@vjp("Selu")
def selu(ctx: VjpContext, node, grads):
    """Y = gamma·X for X > 0, gamma·alpha·(eˣ − 1) otherwise:
    dX = gamma·g for X > 0, g·(Y + gamma·alpha) otherwise."""
    (g,) = grads
    x, y = node.input[0], node.output[0]
    alpha = ctx.attr(node, "alpha", _SELU_ALPHA)
    gamma = ctx.attr(node, "gamma", _SELU_GAMMA)
    negative = ctx.op("Mul", g, ctx.op("Add", y, ctx.const(gamma * alpha, like=y)))
    return [ctx.op("Where", _positive_mask(ctx, x), _scale(ctx, g, gamma, x), negative)]


# ---------------------------------------------------------------------- smooth activations
@vjp("Sigmoid")
def sigmoid(ctx: VjpContext, node, grads):
    """dX = g·Y·(1 − Y)."""
    y = node.output[0]
    local = ctx.op("Mul", y, ctx.op("Sub", ctx.const(1, like=y), y))
    return [ctx.op("Mul", grads[0], local)]


@vjp("Tanh")
def tanh(ctx: VjpContext, node, grads):
    """dX = g·(1 − Y²)."""
    y = node.output[0]
    local = ctx.op("Sub", ctx.const(1, like=y), ctx.op("Mul", y, y))
    return [ctx.op("Mul", grads[0], local)]


@vjp("Softplus")
def softplus(ctx: VjpContext, node, grads):
    """Y = ln(1 + eˣ): dX = g·sigmoid(X)."""
    return [ctx.op("Mul", grads[0], ctx.op("Sigmoid", node.input[0]))]


_GELU_KAPPA = 0.044715


@vjp("Gelu")
def gelu(ctx: VjpContext, node, grads):
    """Gelu (opset 20).

    approximate="none": Y = X·Φ(X), dX = g·(Φ(X) + X·φ(X)), Φ(X) = ½(1 + erf(X/√2)),
    φ(X) = exp(−X²/2)/√(2π).
    approximate="tanh": Y = ½X(1 + T), T = tanh(k(X + κX³)), k = √(2/π), κ = 0.044715;
    dX = g·(½(1 + T) + ½X(1 − T²)·k(1 + 3κX²)).
    """
    (g,) = grads
    x = node.input[0]
    approximate = ctx.attr(node, "approximate", "none")
    if isinstance(approximate, bytes):
        approximate = approximate.decode()
    half = ctx.const(0.5, like=x)
    one = ctx.const(1, like=x)
    square = ctx.op("Mul", x, x)
    if approximate == "tanh":
        k = math.sqrt(2 / math.pi)
        cubic = ctx.op("Add", one, ctx.op("Mul", square, ctx.const(_GELU_KAPPA, like=x)))  # 1 + κX²
        t = ctx.op("Tanh", ctx.op("Mul", ctx.op("Mul", x, cubic), ctx.const(k, like=x)))
        slope = ctx.op("Add", one, ctx.op("Mul", square, ctx.const(3 * _GELU_KAPPA, like=x)))  # 1 + 3κX²
        sech2 = ctx.op("Sub", one, ctx.op("Mul", t, t))
        inner = ctx.op("Mul", ctx.op("Mul", x, sech2), ctx.op("Mul", slope, ctx.const(k, like=x)))
        local = ctx.op("Mul", half, ctx.op("Add", ctx.op("Add", one, t), inner))
    else:
        cdf = ctx.op("Mul", half, ctx.op("Add", one, ctx.op("Erf", ctx.op("Mul", x, ctx.const(math.sqrt(0.5), like=x)))))
        pdf = ctx.op("Mul", ctx.op("Exp", ctx.op("Mul", square, ctx.const(-0.5, like=x))),
                     ctx.const(1 / math.sqrt(2 * math.pi), like=x))
        local = ctx.op("Add", cdf, ctx.op("Mul", x, pdf))
    return [ctx.op("Mul", g, local)]


@vjp("Mish")
def mish(ctx: VjpContext, node, grads):
    """Y = X·tanh(softplus(X)): dX = g·(T + X·sigmoid(X)·(1 − T²)), T = tanh(softplus(X))."""
    x = node.input[0]
    t = ctx.op("Tanh", ctx.op("Softplus", x))
    sech2 = ctx.op("Sub", ctx.const(1, like=x), ctx.op("Mul", t, t))
    local = ctx.op("Add", t, ctx.op("Mul", ctx.op("Mul", x, ctx.op("Sigmoid", x)), sech2))
    return [ctx.op("Mul", grads[0], local)]


# ---------------------------------------------------------------------- piecewise-linear "hard" ops
@vjp("HardSigmoid")
def hard_sigmoid(ctx: VjpContext, node, grads):
    """Y = clamp(alpha·X + beta, 0, 1): dX = alpha·g where 0 < Y < 1 (strictly), 0 elsewhere.

    Defaults alpha = 0.2, beta = 0.5; torch's hardsigmoid is alpha = 1/6, beta = ½, whose
    backward passes g/6 strictly inside −3 < x < 3 — the same open region.
    """
    (g,) = grads
    y = node.output[0]
    alpha = ctx.attr(node, "alpha", 0.2)
    inside = ctx.op("And", ctx.op("Greater", y, ctx.const(0, like=y)), ctx.op("Less", y, ctx.const(1, like=y)))
    return [_keep(ctx, inside, _scale(ctx, g, alpha, y), y)]


@vjp("HardSwish")
def hard_swish(ctx: VjpContext, node, grads):
    """Y = X·clamp(X/6 + ½, 0, 1) (= x·relu6(x + 3)/6):
    dX = 0 for X ≤ −3, g·(2X + 3)/6 for −3 < X < 3, g for X ≥ 3 (torch's current convention)."""
    (g,) = grads
    x = node.input[0]
    middle = ctx.op("Add", ctx.op("Mul", x, ctx.const(1 / 3, like=x)), ctx.const(0.5, like=x))  # (2x + 3)/6
    upper = ctx.op("Where", ctx.op("Less", x, ctx.const(3, like=x)), middle, ctx.const(1, like=x))
    local = ctx.op("Where", ctx.op("Greater", x, ctx.const(-3, like=x)), upper, ctx.const(0, like=x))
    return [ctx.op("Mul", g, local)]


def _clip_bounds(node) -> tuple[str, str]:
    """Clip's (min, max) input names; ``""`` for an omitted bound (opset ≥ 11 takes them as inputs)."""
    inputs = list(node.input) + ["", ""]
    return inputs[1], inputs[2]


def _mask_source(ctx: VjpContext, node) -> str:
    """What Clip's pass-through mask is computed from. With constant bounds lo < hi, lo < X < hi
    exactly when lo < Y < hi (Y = clip(X)), and reading Y rather than X lets onnxruntime keep the
    forward Conv + Clip fused (X would otherwise have to be materialised for the backward)."""
    low, high = _clip_bounds(node)
    values = [ctx.constant_value(b) if b else None for b in (low, high)]
    if all(v is None or np.size(v) == 1 for v in values) and all(
        b == "" or v is not None for b, v in zip((low, high), values)
    ):
        if not (low and high) or float(np.asarray(values[0])) < float(np.asarray(values[1])):
            return node.output[0]
    return node.input[0]


def _inside_clip(ctx: VjpContext, x: str, low: str, high: str) -> str | None:
    """low < x < high as a boolean tensor (None when both bounds are omitted)."""
    parts = []
    if low:
        parts.append(ctx.op("Greater", x, low))
    if high:
        parts.append(ctx.op("Less", x, high))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else ctx.op("And", *parts)


def _relu6_mask(ctx: VjpContext, node) -> str | None:
    """[0 < X < hi] for a Clip with constant bounds 0 < hi, read from its output (see
    ``_blocked_window_mask``); None for other Clips."""
    low, high = _clip_bounds(node)
    if not (high and _is_relu6_like(ctx, node)) or _mask_source(ctx, node) != node.output[0]:
        return None
    return _blocked_window_mask(ctx, node.output[0], float(np.asarray(ctx.constant_value(high))))


@vjp("Clip")
def clip(ctx: VjpContext, node, grads):
    """Y = min(max(X, lo), hi): dX = g where lo < X < hi strictly (as torch's hardtanh/relu6).

    The bounds are scalars; when one depends on the input (rare), it gets the gradient summed
    over the clipped elements: dlo = Σ g·[X < lo], dhi = Σ g·[X > hi].
    """
    (g,) = grads
    x = node.input[0]
    low, high = _clip_bounds(node)
    result: list[str | None] = [None, None, None]
    if ctx.wants(x) and (mask := _relu6_mask(ctx, node)) is not None:
        result[0] = ctx.op("Mul", g, mask)
    elif ctx.wants(x):
        inside = _inside_clip(ctx, _mask_source(ctx, node), low, high)
        result[0] = g if inside is None else _keep(ctx, inside, g, x)
    for index, bound, compare in ((1, low, "Less"), (2, high, "Greater")):
        if bound and ctx.wants(bound):
            clipped = _keep(ctx, ctx.op(compare, x, bound), g, x)
            result[index] = ctx.unbroadcast(clipped, bound, node.output[0])
    return result[: len(node.input)]


def _is_relu6_like(ctx: VjpContext, node) -> bool:
    """A Clip with a constant lower bound 0 (ReLU6 when the upper bound is 6, or a plain ReLU)."""
    low, _ = _clip_bounds(node)
    value = ctx.constant_value(low) if low else None
    return value is not None and np.asarray(value).size == 1 and float(np.asarray(value)) == 0.0


@vjp("Clip", rule_set="guided_backprop")
def guided_clip(ctx: VjpContext, node, grads):
    """Guided backprop through ReLU6 (Clip with min = 0): pass only positive gradient, and only
    where the forward passed it (0 < x < max): dX = g·[0 < X < max]·[g > 0].

    As guided backprop's ReLU, this is the vanilla gradient with negative gradients also
    rectified; above ``max`` the unit is saturated so nothing flows, as in the vanilla rule.
    Other Clips (min ≠ 0 or not constant) are not ReLU-like and keep the vanilla rule.
    """
    if not _is_relu6_like(ctx, node):
        return clip(ctx, node, grads)
    (g,) = grads
    x = node.input[0]
    low, high = _clip_bounds(node)
    keep = ctx.op("And", _inside_clip(ctx, _mask_source(ctx, node), low, high), _positive_mask(ctx, g))
    return [_keep(ctx, keep, g, x), None, None][: len(node.input)]


@vjp("Clip", rule_set="deconvnet")
def deconv_clip(ctx: VjpContext, node, grads):
    """DeconvNet through ReLU6 (Clip with min = 0): like its ReLU, rectify the gradient and ignore
    the forward input entirely: dX = relu(g). (The upper bound is a forward saturation, which
    DeconvNet's backward ReLU does not look at.) Other Clips keep the vanilla rule."""
    if not _is_relu6_like(ctx, node):
        return clip(ctx, node, grads)
    return [ctx.op("Relu", grads[0]), None, None][: len(node.input)]
