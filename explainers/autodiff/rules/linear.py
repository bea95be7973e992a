"""Matrix products: Gemm, MatMul, Einsum."""

from __future__ import annotations

import numpy as np

from ..context import VjpContext
from ..errors import Declined
from ..registry import vjp
from ._common import text


@vjp("Gemm")
def gemm(ctx: VjpContext, node, grads):
    """Y = α·A'·B' + β·C with A' = Aᵀ if transA, B' = Bᵀ if transB."""
    (g,) = grads
    a, b = node.input[0], node.input[1]
    alpha, beta = ctx.attr(node, "alpha", 1.0), ctx.attr(node, "beta", 1.0)
    trans_a, trans_b = ctx.attr(node, "transA", 0), ctx.attr(node, "transB", 0)
    grad_a = grad_b = grad_c = None
    if ctx.wants(a):  # dA' = α·G·B'ᵀ
        if trans_a:
            grad_a = ctx.op("Gemm", b, g, alpha=alpha, transA=trans_b, transB=1)
        else:
            grad_a = ctx.op("Gemm", g, b, alpha=alpha, transB=0 if trans_b else 1)
    if ctx.wants(b):  # dB' = α·A'ᵀ·G
        if trans_b:
            grad_b = ctx.op("Gemm", g, a, alpha=alpha, transA=1, transB=trans_a)
        else:
            grad_b = ctx.op("Gemm", a, g, alpha=alpha, transA=0 if trans_a else 1)
    if len(node.input) > 2 and node.input[2] and ctx.wants(node.input[2]):
        scaled = g if beta == 1.0 else ctx.op("Mul", g, ctx.const(beta, like=g))
        grad_c = ctx.unbroadcast(scaled, node.input[2], node.output[0])
    return [grad_a, grad_b, grad_c]


def _swap_last(ctx: VjpContext, t: str, rank: int) -> str:
    """Transpose the last two axes (matrix transpose of each batch element)."""
    return ctx.op("Transpose", t, perm=list(range(rank - 2)) + [rank - 1, rank - 2])


@vjp("MatMul")
def matmul(ctx: VjpContext, node, grads):
    """Y = A @ B with numpy semantics: batch axes broadcast; a 1-D A is a row [1, K] whose axis is
    dropped from Y, a 1-D B a column [K, 1] likewise.

    dA = g @ Bᵀ, dB = Aᵀ @ g (transposing the last two axes), each summed over the batch axes it
    was broadcast along; 1-D operands are handled by re-inserting the dropped axis into g and
    summing the batch axes away. Both operands may depend on the input (attention's q·kᵀ).
    """
    (g,) = grads
    a, b = node.input
    y = node.output[0]
    want_a, want_b = ctx.wants(a), ctx.wants(b)
    rank_a, rank_b = ctx.rank(a), ctx.rank(b)
    if rank_a is None or rank_b is None:
        raise Declined(f"operand ranks are unknown ({rank_a}, {rank_b})")
    grad_a = grad_b = None
    if rank_a == 1 and rank_b == 1:  # a dot product: g is a scalar
        return [ctx.op("Mul", g, b) if want_a else None, ctx.op("Mul", g, a) if want_b else None]
    if rank_a == 1:  # Y [..., N] = a [K] @ B [..., K, N]
        rows = ctx.op("Unsqueeze", g, ctx.ints([-2]))  # [..., 1, N]
        if want_a:
            full = ctx.op("MatMul", rows, _swap_last(ctx, b, rank_b))  # [..., 1, K]
            grad_a = ctx.op("ReduceSum", full, ctx.ints(list(range(rank_b - 1))), keepdims=0)
        if want_b:
            grad_b = ctx.op("MatMul", ctx.op("Unsqueeze", a, ctx.ints([-1])), rows)  # [..., K, N]
        return [grad_a, grad_b]
    if rank_b == 1:  # Y [..., M] = A [..., M, K] @ b [K]
        columns = ctx.op("Unsqueeze", g, ctx.ints([-1]))  # [..., M, 1]
        if want_a:
            grad_a = ctx.op("MatMul", columns, ctx.op("Unsqueeze", b, ctx.ints([0])))  # [..., M, K]
        if want_b:
            full = ctx.op("MatMul", _swap_last(ctx, a, rank_a), columns)  # [..., K, 1]
            axes = list(range(rank_a - 2)) + [rank_a - 1]
            grad_b = ctx.op("ReduceSum", full, ctx.ints(axes), keepdims=0)
        return [grad_a, grad_b]
    if want_a:
        grad_a = ctx.unbroadcast(ctx.op("MatMul", g, _swap_last(ctx, b, rank_b)), a, y)
    if want_b:
        grad_b = ctx.unbroadcast(ctx.op("MatMul", _swap_last(ctx, a, rank_a), g), b, y)
    return [grad_a, grad_b]


# ---------------------------------------------------------------------- Einsum
_ELLIPSIS = "..."


def _labels(term: str) -> list[str]:
    """'b...ij' → ['b', '...', 'i', 'j']."""
    labels, i = [], 0
    while i < len(term):
        if term.startswith(_ELLIPSIS, i):
            labels.append(_ELLIPSIS)
            i += 3
        else:
            labels.append(term[i])
            i += 1
    return labels


def parse_einsum(equation: str) -> tuple[list[list[str]], list[str]]:
    """The input terms and the output term of an Einsum equation, as label lists.

    Implicit output (no ``->``): the ellipsis (if any) then the labels used once, sorted."""
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    inputs = [_labels(term) for term in lhs.split(",")]
    if arrow:
        return inputs, _labels(rhs)
    counts: dict[str, int] = {}
    for term in inputs:
        for label in term:
            counts[label] = counts.get(label, 0) + 1
    single = sorted(label for label, n in counts.items() if n == 1 and label != _ELLIPSIS)
    return inputs, ([_ELLIPSIS] if _ELLIPSIS in counts else []) + single


def _ellipsis_dims(term: list[str], shape) -> tuple | None:
    if shape is None or _ELLIPSIS not in term:
        return None
    count = len(shape) - (len(term) - 1)
    start = term.index(_ELLIPSIS)
    return tuple(shape[start:start + count])


@vjp("Einsum")
def einsum(ctx: VjpContext, node, grads):
    """Y = Einsum(equation, X₁ … Xₙ): each operand's gradient is an Einsum of g with the other
    operands, contracting to the operand's own labels: dXᵢ = Einsum(out, {terms j ≠ i} → termᵢ).

    Labels of Xᵢ that appear nowhere else (summed over Xᵢ alone) are re-inserted as size-1 axes and
    expanded to Xᵢ's shape. A label repeated within Xᵢ (a diagonal, e.g. ``ii->i``) is computed once
    and multiplied by an identity mask over its positions (needs that dim static). When the
    ellipsis of Xᵢ may broadcast against other operands, it must lead Xᵢ's term and the result
    is summed back to Xᵢ's shape; other layouts decline, naming the equation.
    """
    (g,) = grads
    equation = text(ctx.attr(node, "equation"))
    terms, out = parse_einsum(equation)
    operands = list(node.input)
    if len(terms) != len(operands):
        raise Declined(f"{equation!r} has {len(terms)} "
                            f"terms for {len(operands)} operands")
    return [_einsum_operand_grad(ctx, node, equation, g, operands, terms, out, i) if ctx.wants(name) else None
            for i, name in enumerate(operands)]


def _einsum_operand_grad(ctx: VjpContext, node, equation: str, g: str, operands: list[str],
                         terms: list[list[str]], out: list[str], i: int) -> str:
    name, term = operands[i], terms[i]
    others = [j for j in range(len(operands)) if j != i]
    available = set(out).union(*(terms[j] for j in others))
    unique = list(dict.fromkeys(term))
    kept = [label for label in unique if label in available]
    shape = ctx.static_shape(name)

    def fail(why: str) -> Declined:
        return Declined(f"{equation!r}: {why}")

    # the ellipsis's axis count, needed when axes have to be placed around it
    ellipsis_rank = None
    if _ELLIPSIS in term and shape is not None:
        ellipsis_rank = len(shape) - (len(term) - 1)
    repeated = len(unique) != len(term)
    missing = [label for label in unique if label not in available]
    if _ELLIPSIS in term and (repeated or missing) and ellipsis_rank is None:
        raise fail("the operand's rank must be known to place its axes around the ellipsis")

    # may the ellipsis broadcast (operand's ellipsis dims smaller than the others')?
    broadcast = False
    if _ELLIPSIS in kept:
        mine = _ellipsis_dims(term, shape)
        theirs = [_ellipsis_dims(terms[j], ctx.static_shape(operands[j])) for j in others if _ELLIPSIS in terms[j]]
        known = mine is not None and all(t is not None for t in theirs)
        if known and all(isinstance(d, int) for d in mine) and all(isinstance(d, int) for t in theirs for d in t):
            try:
                broadcast = tuple(np.broadcast_shapes(mine, *theirs)) != tuple(mine)
            except ValueError:
                broadcast = True
        else:
            broadcast = bool(theirs)
        if broadcast and (term[0] != _ELLIPSIS or repeated or missing):
            raise fail("a broadcast ellipsis must lead the operand's term (with no repeated or lone labels)")

    inputs = [g] + [operands[j] for j in others]
    spec = ",".join("".join(t) for t in [out] + [terms[j] for j in others]) + "->" + "".join(kept)
    grad = ctx.op("Einsum", *inputs, equation=spec)
    if broadcast:
        return ctx.unbroadcast(grad, name, grad)  # the result's shape is unknown: run-time reduction
    if not repeated and not missing:
        return grad

    # axis position of each label occurrence once the ellipsis is expanded
    def width(label: str) -> int:
        return ellipsis_rank if label == _ELLIPSIS else 1

    def start_of(position: int, labels: list[str]) -> int:
        return sum(width(label) for label in labels[:position])

    # 1) insert size-1 axes for the lone labels: the tensor then follows `unique`
    lone_axes = [start_of(k, unique) + w for k, label in enumerate(unique) if label in missing
                 for w in range(width(label))]
    if lone_axes:
        grad = ctx.op("Unsqueeze", grad, ctx.ints(lone_axes))
    # 2) insert size-1 axes for the repeated occurrences: the tensor then follows `term`
    seen: set[str] = set()
    repeat_axes = []
    for k, label in enumerate(term):
        if label in seen:
            repeat_axes.append(start_of(k, term))
        seen.add(label)
    if repeat_axes:
        grad = ctx.op("Unsqueeze", grad, ctx.ints(repeat_axes))
        grad = ctx.op("Mul", grad, ctx.const(_diagonal_mask(term, shape, ellipsis_rank, fail), like=name))
    # 3) broadcast the size-1 axes to the operand's shape
    return ctx.op("Expand", grad, ctx.shape(name))


def _diagonal_mask(term: list[str], shape, ellipsis_rank: int | None, fail):
    """1 where every repeated label takes equal indices, 0 elsewhere; size 1 along other axes."""
    width = {label: (ellipsis_rank if label == _ELLIPSIS else 1) for label in term}
    rank = sum(width[label] for label in term)
    mask = np.ones([1] * rank)
    positions: dict[str, list[int]] = {}
    axis = 0
    for label in term:
        positions.setdefault(label, []).append(axis)
        axis += width[label]
    for label, axes in positions.items():
        if len(axes) < 2:
            continue
        size = shape[axes[0]] if shape is not None else None
        if not isinstance(size, int):
            raise fail(f"the repeated label {label!r} needs a static dimension")
        coordinates = []
        for a in axes:
            along = [1] * rank
            along[a] = size
            coordinates.append(np.arange(size).reshape(along))
        for coordinate in coordinates[1:]:
            mask = mask * (coordinate == coordinates[0])
    return mask
