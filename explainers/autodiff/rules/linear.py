"""Matrix products: Gemm, MatMul, Einsum."""

from __future__ import annotations

from ..context import VjpContext
from ..registry import vjp


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
