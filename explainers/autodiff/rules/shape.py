"""Shape-only ops: the gradient is the output gradient reshaped or permuted back.

Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Split, Expand, Tile.
"""

from __future__ import annotations

from ..context import VjpContext
from ..registry import vjp


@vjp("Reshape", "Flatten")
def reshape_back(ctx: VjpContext, node, grads):
    """Any op that only reinterprets the shape: reshape the gradient to the input's shape."""
    x = node.input[0]
    return [ctx.op("Reshape", grads[0], ctx.shape(x))] + [None] * (len(node.input) - 1)
