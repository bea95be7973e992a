"""Convolutions: Conv and ConvTranspose, each the other's data gradient.

Notation (one spatial axis shown; every spatial axis behaves alike): X [N, C, H], kernel size k,
stride s, dilation d, pads (p₀, p₁), G groups; dk = d·(k − 1) + 1 is the dilated kernel's extent.

* Conv: Y[n, m, o] = Σ_{c ∈ group(m), j} X_pad[n, c, o·s + j·d] · W[m, c, j] (+ B[m]), with
  O = ⌊(H + p₀ + p₁ − dk) / s⌋ + 1. Its data gradient is ConvTranspose with the same weights,
  strides, dilations, groups and pads, plus the ``output_padding`` r = (H + p₀ + p₁ − dk) mod s
  that restores the input size (the last r input positions lie in no window: zero gradient).
* ConvTranspose is the adjoint of that Conv: its data gradient is the Conv with the same
  attributes. Its crop of the full output (``pads``, or the pads implied by ``output_shape`` or
  ``auto_pad``) becomes the Conv's padding.

``auto_pad`` SAME_* is converted to explicit pads from the static input size. Where the spatial
size is only known at run time (explicit pads), the Conv gradient pads the ConvTranspose result
with zeros to ``Shape(X)`` instead of using a static ``output_padding``.

Weight and bias gradients are emitted only when W or B depends on the input (rare: dynamic
kernels). dW is itself a convolution, of Xᵀ [C, N, H] with Gᵀ [M, N, O] for Conv (strides and
dilations swapped); with G > 1 groups that convolution computes every (input, output) channel
pair and the block diagonal is kept.
"""

from __future__ import annotations

import numpy as np

from ..context import VjpContext
from ..errors import Declined
from ..registry import vjp
from ._common import text

_BIG = 2**62  # "to the end" for Slice


def explicit_pads(ctx: VjpContext, node, x: str, kernel: list[int], strides: list[int],
                  dilations: list[int]) -> list[int]:
    """The forward's pads as [begin..., end...], resolving ``auto_pad`` from the static input size.

    SAME_UPPER puts the odd padding at the end, SAME_LOWER at the beginning (Conv and pooling)."""
    spatial = len(kernel)
    auto_pad = text(ctx.attr(node, "auto_pad", "NOTSET"))
    if auto_pad in ("NOTSET", ""):
        return list(ctx.attr(node, "pads", [0] * (2 * spatial)))
    if auto_pad == "VALID":
        return [0] * (2 * spatial)
    sizes = spatial_size(ctx, node, x)
    begins, ends = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    return begins + ends


def static_spatial(ctx: VjpContext, x: str) -> list[int] | None:
    """The spatial dims of ``x`` [N, C, ...] when all are static ints, else None."""
    shape = ctx.static_shape(x)
    if shape is None or any(not isinstance(d, int) for d in shape[2:]):
        return None
    return list(shape[2:])


def spatial_size(ctx: VjpContext, node, x: str) -> list[int]:
    """The static spatial dims of ``x``; declines when unknown."""
    sizes = static_spatial(ctx, x)
    if sizes is None:
        raise Declined(
            f"needs a static spatial input size to be differentiated; got "
            f"{ctx.static_shape(x)} (pass input_shape= to build_gradient_model)"
        )
    return sizes


def kernel_shape(ctx: VjpContext, node, weights: str) -> list[int]:
    kernel = ctx.attr(node, "kernel_shape")
    if kernel is None:
        shape = ctx.static_shape(weights)
        if shape is None or any(not isinstance(d, int) for d in shape[2:]):
            raise Declined("the kernel size is unknown")
        kernel = shape[2:]
    return list(kernel)


def _geometry(ctx: VjpContext, node, kernel: list[int]) -> tuple[list[int], list[int], int]:
    spatial = len(kernel)
    strides = list(ctx.attr(node, "strides", None) or [1] * spatial)
    dilations = list(ctx.attr(node, "dilations", None) or [1] * spatial)
    return strides, dilations, int(ctx.attr(node, "group", 1))


def spatial_shape(ctx: VjpContext, x: str) -> str:
    """Shape(x)[2:] as a run-time 1-D int64 tensor."""
    return ctx.op("Slice", ctx.shape(x), ctx.ints([2]), ctx.ints([_BIG]))


def transpose_conv_to(ctx: VjpContext, g: str, w: str, *, sizes: list[int] | None, target: str | None,
                      kernel: list[int], strides: list[int], pads: list[int], dilations: list[int],
                      group: int = 1) -> str:
    """ConvTranspose(g, w) grown to the forward input's spatial size H.

    With static ``sizes`` the exact ``output_padding`` r = (H + p₀ + p₁ − dk) mod s is set (the
    last r padded positions lie in no window). Otherwise ``target`` is H at run time (1-D int64):
    the ConvTranspose keeps its end (end pads 0), then is cut to H and zero-padded up to H — the
    same result, as r is added before the end crop."""
    spatial = len(kernel)
    weights = ctx.constant_value(w)
    if sizes is not None and weights is not None and all(s == 1 for s in strides):
        return _adjoint_as_conv(ctx, g, weights, sizes=sizes, kernel=kernel, pads=pads, dilations=dilations,
                                group=group)
    if sizes is not None and weights is not None and len(kernel) == 2 and group > 1 and weights.shape[1] == 1:
        return _adjoint_zero_stuffed(ctx, g, weights, sizes=sizes, kernel=kernel, strides=strides, pads=pads,
                                     dilations=dilations, group=group)
    if sizes is not None:
        output_padding = [
            (size + pads[i] + pads[i + spatial] - d * (k - 1) - 1) % s
            for i, (size, k, s, d) in enumerate(zip(sizes, kernel, strides, dilations))
        ]
        return ctx.op("ConvTranspose", g, w, strides=strides, pads=pads, dilations=dilations, group=group,
                      kernel_shape=kernel, output_padding=output_padding if any(output_padding) else None)
    uncropped = ctx.op("ConvTranspose", g, w, strides=strides, pads=pads[:spatial] + [0] * spatial,
                       dilations=dilations, group=group, kernel_shape=kernel)
    axes = ctx.ints(list(range(2, 2 + spatial)))
    cut = ctx.op("Slice", uncropped, ctx.ints([0] * spatial), target, axes)
    missing = ctx.op("Sub", target, spatial_shape(ctx, cut))
    amounts = ctx.op("Concat", ctx.ints([0] * (2 + spatial) + [0, 0]), missing, axis=0)
    return ctx.op("Pad", cut, amounts)


def _adjoint_as_conv(ctx: VjpContext, g: str, weights: np.ndarray, *, sizes: list[int], kernel: list[int],
                     pads: list[int], dilations: list[int], group: int) -> str:
    """ConvTranspose(g, W) of a stride-1 Conv computed as a Conv, for constant weights and static sizes.

    With stride 1, dX[i] = Σ_{j} g[i + p₀ − j·d]·W[j]: a correlation of g with the spatially flipped,
    group-transposed kernel W′ [C, M/G, k...], padded by d·(k − 1) − p₀ at the start and
    d·(k − 1) − p₁ at the end (a negative pad crops g instead). onnxruntime's Conv kernels (NCHWc,
    depthwise) are several times faster than its ConvTranspose, which dominated the backward time
    of MobileNet/EfficientNet-style nets. (Strided depthwise convs: :func:`_adjoint_zero_stuffed`;
    other strided convs keep ConvTranspose, which is a GEMM for dense kernels.)
    """
    spatial = len(kernel)
    m, c_per_group = weights.shape[:2]
    transposed = weights.reshape(group, m // group, c_per_group, *kernel).swapaxes(1, 2)
    flipped = np.flip(transposed.reshape(group * c_per_group, m // group, *kernel), axis=tuple(range(2, 2 + spatial)))
    begins = [d * (k - 1) - pads[i] for i, (k, d) in enumerate(zip(kernel, dilations))]
    ends = [d * (k - 1) - pads[i + spatial] for i, (k, d) in enumerate(zip(kernel, dilations))]
    if any(p < 0 for p in begins + ends):
        outputs = [size + pads[i] + pads[i + spatial] - d * (k - 1) for i, (size, k, d) in
                   enumerate(zip(sizes, kernel, dilations))]
        starts = [max(-b, 0) for b in begins]
        stops = [o + min(e, 0) for o, e in zip(outputs, ends)]
        g = ctx.op("Slice", g, ctx.ints(starts), ctx.ints(stops), ctx.ints(list(range(2, 2 + spatial))))
        begins, ends = [max(b, 0) for b in begins], [max(e, 0) for e in ends]
    return ctx.op("Conv", g, ctx.const(np.ascontiguousarray(flipped), like=g), pads=begins + ends,
                  dilations=dilations, group=group, kernel_shape=kernel)


def _adjoint_zero_stuffed(ctx: VjpContext, g: str, weights: np.ndarray, *, sizes: list[int], kernel: list[int],
                          strides: list[int], pads: list[int], dilations: list[int], group: int) -> str:
    """ConvTranspose(g, W) of a strided depthwise 2-D Conv (one input channel per group) as its stride-1
    adjoint applied to g zero-stuffed to the stride: Z[s·o] = g[o], Z = 0 between, length s·O.

    A stride-s Conv is the stride-1 Conv sampled every s positions, so its adjoint is the stride-1 adjoint
    (:func:`_adjoint_as_conv`) of the zero-stuffed gradient, with the end pad p₁′ = s·O − H − p₀ + d·(k − 1)
    that makes the stride-1 output s·O long. Z is a 1×1 depthwise ConvTranspose of g with unit weights
    (stride s, output_padding s − 1): a pure scatter, no arithmetic. onnxruntime's grouped ConvTranspose
    is a slow generic kernel for real k×k depthwise kernels, and it forced reorders out of and back into
    the blocked (NCHWc) layout around it; here the k×k work is a blocked depthwise Conv. On the bundled
    EfficientNet-Lite0 the four strided depthwise layers' backward fell from ~6.7 ms (ConvTranspose 4.4,
    the reorders it forced 2.3) to ~3 ms per batch-1 run (bench/README.md, "Gradient graph"). Tried and
    slower: Resize(×s, nearest) ⊙ a 0/1 pattern (the Mul with a constant is not blocked, so the upsampled
    tensor was reordered out and back), and the polyphase form — s² small Convs interleaved by
    DepthToSpace (onnxruntime's DepthToSpace is a generic transpose, slower than the ConvTranspose it
    replaced).
    """
    spatial = len(kernel)
    channels = weights.shape[0]  # of g: the forward's outputs
    outputs = [(size + pads[i] + pads[i + spatial] - d * (k - 1) - 1) // s + 1
               for i, (size, k, s, d) in enumerate(zip(sizes, kernel, strides, dilations))]
    unit = ctx.const(np.ones((channels, 1) + (1,) * spatial, np.float32), like=g)
    stuffed = ctx.op("ConvTranspose", g, unit, strides=strides, group=channels, kernel_shape=[1] * spatial,
                     output_padding=[s - 1 for s in strides])
    stuffed_end = [s * o - size - pads[i] + d * (k - 1)
                   for i, (size, k, s, d, o) in enumerate(zip(sizes, kernel, strides, dilations, outputs))]
    return _adjoint_as_conv(ctx, stuffed, weights, sizes=sizes, kernel=kernel, pads=pads[:spatial] + stuffed_end,
                            dilations=dilations, group=group)


def _channels_first(ctx: VjpContext, t: str, rank: int) -> str:
    """Swap the two leading axes: [A, B, ...] → [B, A, ...]."""
    return ctx.op("Transpose", t, perm=[1, 0] + list(range(2, rank)))


def _kernel_crop(ctx: VjpContext, t: str, kernel: list[int]) -> str:
    """t[:, :, :k₁, :k₂, ...]."""
    spatial = len(kernel)
    return ctx.op("Slice", t, ctx.ints([0] * spatial), ctx.ints(kernel), ctx.ints(list(range(2, 2 + spatial))))


def _block_diagonal(ctx: VjpContext, t: str, node, w: str, group: int) -> str:
    """From t [A, B, k...] holding every channel pair, keep the pairs inside a group.

    A = G·a rows, B = G·b columns; returns [A, b, k...] reshaped like W. Needs W's static shape."""
    if group == 1:
        return t
    shape = ctx.static_shape(w)
    if shape is None or not all(isinstance(d, int) for d in shape):
        raise Declined("the weight gradient with group > 1 needs the weight's static shape")
    per_group = shape[1]
    kernel_size = int(np.prod(shape[2:]))
    blocks = ctx.op("Reshape", t, ctx.ints([group, -1, group, per_group, kernel_size]))
    mask = np.eye(group).reshape(group, 1, group, 1, 1)
    diagonal = ctx.op("ReduceSum", ctx.op("Mul", blocks, ctx.const(mask, like=t)), ctx.ints([2]), keepdims=0)
    return ctx.op("Reshape", diagonal, ctx.shape(w))


def _bias_grad(ctx: VjpContext, g: str) -> str:
    """dB[m] = Σ_{n, o} g[n, m, o]."""
    flat = ctx.op("Reshape", g, ctx.ints([0, 0, -1]))
    return ctx.op("ReduceSum", flat, ctx.ints([0, 2]), keepdims=0)


@vjp("Conv")
def conv(ctx: VjpContext, node, grads):
    """Y = Conv(X, W, B) with W [M, C/G, k...].

    dX = ConvTranspose(g, W; strides, pads, dilations, group, output_padding = (H + p₀ + p₁ − dk) mod s).
    dW[m, c, j] = Σ_{n, o} g[n, m, o]·X_pad[n, c, o·s + j·d] = Conv(Xᵀ, gᵀ; pads, strides = d,
    dilations = s)ᵀ cropped to k (block diagonal when G > 1).
    dB[m] = Σ_{n, o} g[n, m, o].
    """
    (g,) = grads
    x, w = node.input[0], node.input[1]
    b = node.input[2] if len(node.input) > 2 else ""
    kernel = kernel_shape(ctx, node, w)
    strides, dilations, group = _geometry(ctx, node, kernel)
    pads = explicit_pads(ctx, node, x, kernel, strides, dilations)
    grad_x = grad_w = grad_b = None
    if ctx.wants(x):
        sizes = static_spatial(ctx, x)
        target = None if sizes is not None else spatial_shape(ctx, x)
        grad_x = transpose_conv_to(ctx, g, w, sizes=sizes, target=target, kernel=kernel, strides=strides,
                                   pads=pads, dilations=dilations, group=group)
    if ctx.wants(w):
        grad_w = _weight_grad(ctx, node, w, x, g, pads=pads, kernel=kernel, strides=strides, dilations=dilations,
                              group=group)
    if b and ctx.wants(b):
        grad_b = _bias_grad(ctx, g)
    return [grad_x, grad_w, grad_b][: len(node.input)]


def _weight_grad(ctx: VjpContext, node, w: str, data: str, other: str, *, pads, kernel, strides, dilations,
                 group: int) -> str:
    """A weight gradient as a convolution over the batch: Conv(dataᵀ, otherᵀ; pads, strides = the
    dilations, dilations = the strides) [A, B, ≥k...], cropped to the kernel, transposed to
    [B, A, k...] and made block diagonal for ``group`` groups. Conv: data = X, other = g
    (→ [M, C/G, k]); ConvTranspose: data = g_F, other = X (→ [C, M/G, k])."""
    rank = 2 + len(kernel)
    pairs = ctx.op("Conv", _channels_first(ctx, data, rank), _channels_first(ctx, other, rank), pads=pads,
                   strides=dilations, dilations=strides)
    pairs = _channels_first(ctx, _kernel_crop(ctx, pairs, kernel), rank)
    return _block_diagonal(ctx, pairs, node, w, group)


def _transpose_pads(ctx: VjpContext, node, x: str, kernel, strides, dilations) -> list[int]:
    """ConvTranspose's crop of its full output F (length s·(H − 1) + output_padding + dk) as
    [begin..., end...]: Y = F[p₀ : len(F) − p₁]. A negative value means Y extends past F.

    With ``output_shape`` or ``auto_pad`` SAME_* the total crop is len(F) − out (out = output_shape,
    or H·s for SAME); SAME_UPPER crops the odd unit at the end, SAME_LOWER and NOTSET at the
    beginning — what onnxruntime and onnx.reference do."""
    spatial = len(kernel)
    auto_pad = text(ctx.attr(node, "auto_pad", "NOTSET"))
    output_shape = ctx.attr(node, "output_shape")
    if auto_pad == "VALID":
        return [0] * (2 * spatial)
    if output_shape is None and auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        return list(ctx.attr(node, "pads", None) or [0] * (2 * spatial))
    sizes = spatial_size(ctx, node, x)
    output_padding = list(ctx.attr(node, "output_padding", None) or [0] * spatial)
    wanted = list(output_shape)[-spatial:] if output_shape is not None else [h * s for h, s in zip(sizes, strides)]
    begins, ends = [], []
    for h, k, s, d, extra, out in zip(sizes, kernel, strides, dilations, output_padding, wanted):
        total = s * (h - 1) + extra + d * (k - 1) + 1 - out
        begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        begins.append(begin)
        ends.append(total - begin)
    return begins + ends


def _crop_negative_pads(ctx: VjpContext, g: str, pads: list[int]) -> tuple[str, list[int]]:
    """Where Y extends past the full output (negative pads), drop those positions of g."""
    spatial = len(pads) // 2
    if all(p >= 0 for p in pads):
        return g, pads
    starts = [max(-p, 0) for p in pads[:spatial]]
    ends = [min(p, 0) or _BIG for p in pads[spatial:]]
    cropped = ctx.op("Slice", g, ctx.ints(starts), ctx.ints(ends), ctx.ints(list(range(2, 2 + spatial))))
    return cropped, [max(p, 0) for p in pads]


@vjp("ConvTranspose")
def conv_transpose(ctx: VjpContext, node, grads):
    """Y = ConvTranspose(X, W, B) with W [C, M/G, k...]: F[n, m, i·s + j·d] += X[n, c, i]·W[c, m, j],
    Y = F cropped by the pads (explicit, or implied by output_shape / auto_pad), + B[m].

    dX = Conv(g, W; strides, dilations, group, pads = the crop) — positions of Y outside F are
    sliced off g first.
    dW[c, m, j] = Σ_{n, i} X[n, c, i]·g_F[n, m, i·s + j·d] = Conv(g_Fᵀ, Xᵀ; strides = d,
    dilations = s)ᵀ cropped to k (block diagonal when G > 1).
    dB[m] = Σ_{n, o} g[n, m, o].
    """
    (g,) = grads
    x, w = node.input[0], node.input[1]
    b = node.input[2] if len(node.input) > 2 else ""
    kernel = kernel_shape(ctx, node, w)
    strides, dilations, group = _geometry(ctx, node, kernel)
    pads = _transpose_pads(ctx, node, x, kernel, strides, dilations)
    g_full, conv_pads = _crop_negative_pads(ctx, g, pads)
    grad_x = grad_w = grad_b = None
    if ctx.wants(x):
        grad_x = ctx.op("Conv", g_full, w, strides=strides, pads=conv_pads, dilations=dilations, group=group,
                        kernel_shape=kernel)
        if any(extra >= s for extra, s in zip(ctx.attr(node, "output_padding", None) or [], strides)):
            grad_x = ctx.op("Slice", grad_x, ctx.ints([0] * len(kernel)), spatial_shape(ctx, x),
                            ctx.ints(list(range(2, 2 + len(kernel)))))
    if ctx.wants(w):
        grad_w = _weight_grad(ctx, node, w, g_full, x, pads=conv_pads, kernel=kernel, strides=strides,
                              dilations=dilations, group=group)
    if b and ctx.wants(b):
        grad_b = _bias_grad(ctx, g)
    return [grad_x, grad_w, grad_b][: len(node.input)]
