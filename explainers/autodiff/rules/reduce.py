"""Reductions: ReduceMean, ReduceSum, ReduceMax (axes as attribute before opset 18, input after)."""
