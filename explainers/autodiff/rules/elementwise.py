"""Arithmetic and unary math: Add, Sub, Mul, Div, Neg, Abs, Exp, Log, Pow, Sqrt, Reciprocal, …

Binary ops broadcast: each operand's gradient is summed back to its own shape
(:meth:`VjpContext.unbroadcast`).
"""

from __future__ import annotations

from ..context import VjpContext
from ..registry import vjp


@vjp("Add")
def add(ctx: VjpContext, node, grads):
    (g,) = grads
    a, b = node.input
    return [
        ctx.unbroadcast(g, a, node.output[0]) if ctx.wants(a) else None,
        ctx.unbroadcast(g, b, node.output[0]) if ctx.wants(b) else None,
    ]


@vjp("Sub")
def sub(ctx: VjpContext, node, grads):
    (g,) = grads
    a, b = node.input
    return [
        ctx.unbroadcast(g, a, node.output[0]) if ctx.wants(a) else None,
        ctx.unbroadcast(ctx.op("Neg", g), b, node.output[0]) if ctx.wants(b) else None,
    ]


@vjp("Mul")
def mul(ctx: VjpContext, node, grads):
    (g,) = grads
    a, b = node.input
    return [
        ctx.unbroadcast(ctx.op("Mul", g, b), a, node.output[0]) if ctx.wants(a) else None,
        ctx.unbroadcast(ctx.op("Mul", g, a), b, node.output[0]) if ctx.wants(b) else None,
    ]


@vjp("Identity")
def identity(ctx: VjpContext, node, grads):
    return [grads[0]]
