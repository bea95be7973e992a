"""Data movement with indices: Gather, GatherElements, GatherND, Slice, Pad — and the generic
index rule that other data-movement ops (Resize nearest with run-time scales, …) fall back on.

The generic rule. A data-movement op ``f`` copies elements of ``x`` into its output, or fills a
position with a constant (padding): ``y[o] = x[src(o)]``. Its vector-Jacobian product is the
scatter-add ::

    dx[i] = Σ_{o : src(o) = i} g[o]

``src`` is learnt by running ``f`` itself, with the same attributes and other inputs, on an
integer index tensor ``I = Reshape(Range(0, Size(x)), Shape(x))``: ``f(I)[o] = src(o)``. Then ::

    dx = Reshape(ScatterElements(zeros[Size(x)], flat f(I), flat g, reduction="add"), Shape(x))

Duplicated sources (Gather with repeated indices, reflect padding, overlapping windows) add up,
which is why the scatter uses ``reduction="add"`` (onnxruntime needs opset ≥ 16; the builder
upgrades every model to that). Padding positions, which come from no input element, are
handled by running ``f`` on ``I + 1`` with pad value 0: every padding position then points at
slot 0 of a scatter into ``Size(x) + 1`` slots, which is dropped afterwards — and whose content
is exactly the gradient of the pad value itself.

Every other input of these ops (indices, starts/ends/axes/steps, pads) is integer and gets no
gradient. Hot cases are specialised when it is cheap: Slice with constant step-1 bounds is a
Pad of the gradient, constant-mode Pad with constant non-negative pads is a Slice of it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from onnx import TensorProto

from ..context import VjpContext
from ..registry import vjp
from ._common import node_attributes, text

INT64_MAX = 2**63 - 1


def scatter_through_indices(
    ctx: VjpContext, node, grad: str, *, replace: Mapping[int, str] | None = None, padded: bool = False,
    attributes: Mapping | None = None, index_type: int = TensorProto.INT64,
) -> tuple[str, str | None]:
    """The generic data-movement rule for input 0 of ``node`` (see the module docstring).

    Args:
        grad: gradient of the node's output 0.
        replace: node inputs to substitute when the op runs on the index tensor (e.g. the pad value).
        padded: some output positions come from no input element: shift the indices by one and
            make the op's fill value 0 (through ``replace``/``attributes``).
        attributes: attribute overrides for the index run.
        index_type: element type the op runs on (int64, or int32 for ops onnxruntime only
            implements on int32 such as Resize); the indices are cast back to int64.

    Returns:
        (gradient of input 0, gradient of the fill value as a 1-element tensor when ``padded`` else None).
    """
    x = node.input[0]
    size = ctx.op("Size", x)
    index = ctx.op("Reshape", ctx.op("Range", ctx.ints(0), size, ctx.ints(1)), ctx.shape(x))
    if padded:
        index = ctx.op("Add", index, ctx.ints(1))
    if index_type != TensorProto.INT64:
        index = ctx.op("Cast", index, to=index_type)
    inputs = [index] + list(node.input[1:])
    for position, name in (replace or {}).items():
        inputs[position] = name
    while inputs and not inputs[-1]:
        inputs.pop()
    source = ctx.op(node.op_type, *inputs, **(attributes if attributes is not None else node_attributes(node)))
    if index_type != TensorProto.INT64:
        source = ctx.op("Cast", source, to=TensorProto.INT64)
    slots = ctx.op("Add", size, ctx.ints(1)) if padded else size
    zeros = ctx.op("Expand", ctx.const(0, like=x), ctx.op("Reshape", slots, ctx.ints([1])))
    flat = ctx.op("ScatterElements", zeros, ctx.op("Reshape", source, ctx.ints([-1])),
                  ctx.op("Reshape", grad, ctx.ints([-1])), axis=0, reduction="add")
    fill_grad = None
    if padded:
        fill_grad = ctx.op("Slice", flat, ctx.ints([0]), ctx.ints([1]))
        flat = ctx.op("Slice", flat, ctx.ints([1]), ctx.ints([INT64_MAX]))
    return ctx.op("Reshape", flat, ctx.shape(x)), fill_grad


def _constant_ints(ctx: VjpContext, node, index: int) -> list[int] | None:
    """The values of optional input ``index`` when it is a constant (``[]`` when absent)."""
    if len(node.input) <= index or not node.input[index]:
        return []
    value = ctx.constant_value(node.input[index])
    return None if value is None else [int(v) for v in np.asarray(value).ravel()]


def _none_for_rest(node, first: str | None) -> list[str | None]:
    return [first] + [None] * (len(node.input) - 1)


@vjp("Gather", "GatherElements", "GatherND")
def gather(ctx: VjpContext, node, grads):
    """y = x[indices] (along ``axis``, per element, or by index tuples): scatter-add g back to
    where each element came from (repeated indices accumulate); the indices get no gradient."""
    grad_x, _ = scatter_through_indices(ctx, node, grads[0])
    return _none_for_rest(node, grad_x)


def _slice_as_pad(ctx: VjpContext, node) -> list[int] | None:
    """Pads that put a step-1 Slice's gradient back in place, or None when not static."""
    x = node.input[0]
    shape = ctx.static_shape(x)
    starts, ends = _constant_ints(ctx, node, 1), _constant_ints(ctx, node, 2)
    axes, steps = _constant_ints(ctx, node, 3), _constant_ints(ctx, node, 4)
    if shape is None or None in (starts, ends, axes, steps) or any(s != 1 for s in steps):
        return None
    rank = len(shape)
    axes = axes or list(range(len(starts)))
    pads = [0] * (2 * rank)
    for axis, start, end in zip(axes, starts, ends):
        axis = axis + rank if axis < 0 else axis
        dim = shape[axis]
        if not isinstance(dim, int):
            return None
        start = min(max(start + dim if start < 0 else start, 0), dim)
        end = min(max(end + dim if end < 0 else end, 0), dim)
        if end <= start:  # an empty slice: leave it to the generic rule
            return None
        pads[axis], pads[axis + rank] = start, dim - end
    return pads


@vjp("Slice")
def slice_(ctx: VjpContext, node, grads):
    """y = x[starts:ends:steps] along ``axes``.

    Constant step-1 bounds on static dims: dx = Pad(g, [start, dim − end]) with zeros. Otherwise
    (negative or strided steps, run-time bounds) the generic index rule."""
    pads = _slice_as_pad(ctx, node)
    if pads is not None:
        grad_x = ctx.op("Pad", grads[0], ctx.ints(pads)) if any(pads) else grads[0]
    else:
        grad_x, _ = scatter_through_indices(ctx, node, grads[0])
    return _none_for_rest(node, grad_x)


def _pad_as_slice(ctx: VjpContext, node) -> tuple[list[int], list[int], list[int]] | None:
    """(starts, ends, axes) cropping constant non-negative pads back off, or None."""
    pads, axes = _constant_ints(ctx, node, 1), _constant_ints(ctx, node, 3)
    if pads is None or axes is None or any(p < 0 for p in pads) or len(pads) % 2:
        return None
    count = len(pads) // 2
    axes = axes or list(range(count))
    starts = pads[:count]
    ends = [-p if p else INT64_MAX for p in pads[count:]]
    return starts, ends, axes


@vjp("Pad")
def pad(ctx: VjpContext, node, grads):
    """y = Pad(x, pads, value, axes) in modes constant, reflect, edge, wrap.

    constant: dx = g cropped back (Slice) when the pads are constant and ≥ 0, else the generic
    rule with the padding positions scattered into a dropped extra slot. reflect/edge/wrap: the
    generic rule (mirrored or repeated border elements accumulate). The pad value, when it
    depends on the input, gets Σ g over the padding positions; pads and axes get nothing."""
    g = grads[0]
    mode = text(ctx.attr(node, "mode", "constant"))
    value = node.input[2] if len(node.input) > 2 and node.input[2] else None
    want_value = value is not None and ctx.wants(value)
    grad_value = None
    crop = _pad_as_slice(ctx, node) if mode == "constant" and not want_value else None
    if crop is not None:
        starts, ends, axes = crop
        if any(starts) or any(e != INT64_MAX for e in ends):
            grad_x = ctx.op("Slice", g, ctx.ints(starts), ctx.ints(ends), ctx.ints(axes))
        else:
            grad_x = g
    else:  # the pad value must have the index tensor's type (and be 0 for the sentinel slot)
        replace = {2: ctx.ints(0)} if value is not None else {}
        grad_x, fill = scatter_through_indices(ctx, node, g, replace=replace, padded=mode == "constant")
        if want_value and mode == "constant":
            grad_value = ctx.op("Reshape", fill, ctx.shape(value))
    result = _none_for_rest(node, grad_x)
    if grad_value is not None:
        result[2] = grad_value
    return result
