"""Convolutions: Conv and ConvTranspose, each the other's data gradient.

Conv's data gradient is ConvTranspose with the same weights, strides, dilations and groups, the
forward's explicit pads (``auto_pad`` SAME_* converted from static shapes) and the exact
``output_padding`` = (H + pads − dilation·(k − 1) − 1) mod stride that restores the input size.
"""

from __future__ import annotations

from ..builder import GradientError
from ..context import VjpContext
from ..registry import vjp


def explicit_pads(ctx: VjpContext, node, x: str, kernel: list[int], strides: list[int],
                  dilations: list[int]) -> list[int]:
    """The forward's pads as [begin..., end...], resolving ``auto_pad`` from the static input size."""
    spatial = len(kernel)
    auto_pad = ctx.attr(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
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


def spatial_size(ctx: VjpContext, node, x: str) -> list[int]:
    shape = ctx.static_shape(x)
    if shape is None or any(not isinstance(d, int) for d in shape[2:]):
        raise GradientError(
            f"{node.op_type} node {node.name or node.output[0]!r} needs a static spatial input size to be "
            f"differentiated; got {shape}"
        )
    return list(shape[2:])


def kernel_shape(ctx: VjpContext, node, weights: str) -> list[int]:
    kernel = ctx.attr(node, "kernel_shape")
    if kernel is None:
        shape = ctx.static_shape(weights)
        if shape is None or any(not isinstance(d, int) for d in shape[2:]):
            raise GradientError(f"{node.op_type} node {node.name or node.output[0]!r} has an unknown kernel size")
        kernel = shape[2:]
    return list(kernel)


@vjp("Conv")
def conv(ctx: VjpContext, node, grads):
    (g,) = grads
    x, w = node.input[0], node.input[1]
    if not ctx.wants(x):
        return [None] * len(node.input)
    kernel = kernel_shape(ctx, node, w)
    spatial = len(kernel)
    strides = list(ctx.attr(node, "strides", [1] * spatial))
    dilations = list(ctx.attr(node, "dilations", [1] * spatial))
    pads = explicit_pads(ctx, node, x, kernel, strides, dilations)
    sizes = spatial_size(ctx, node, x)
    output_padding = [
        (size + pads[i] + pads[i + spatial] - d * (k - 1) - 1) % s
        for i, (size, k, s, d) in enumerate(zip(sizes, kernel, strides, dilations))
    ]
    grad_x = ctx.op(
        "ConvTranspose", g, w, strides=strides, pads=pads, dilations=dilations, group=ctx.attr(node, "group", 1),
        kernel_shape=kernel, output_padding=output_padding,
    )
    return [grad_x] + [None] * (len(node.input) - 1)
