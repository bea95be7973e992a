"""The biased layers of a classifier (FullGrad's bias terms, Srinivas & Fleuret 2019).

A layer's output z = (linear map of its input) + b; FullGrad adds ∂s/∂z ⊙ b over every such layer
on the input → output path to the input-gradient term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from numpy.typing import NDArray

from .index import GraphIndex


@dataclass(frozen=True)
class BiasTerm:
    """Layer output z = (linear map of its input) + b. ``bias`` broadcasts against one sample of z:
    along the channel axis (``per_channel``: Conv, BatchNormalization) or from the right (Gemm, Add)."""

    layer: str
    bias: NDArray[np.float64]
    per_channel: bool

    def broadcast(self, rank: int) -> NDArray[np.float64]:
        """The bias shaped to broadcast against a per-sample z of ``rank`` axes."""
        if self.per_channel:
            return self.bias.reshape(-1, *[1] * (rank - 1))
        return self.bias.reshape(self.bias.shape[max(0, self.bias.ndim - rank):])


def bias_terms(model: onnx.ModelProto | onnx.GraphProto | GraphIndex, input_name: str,
               output_name: str) -> list[BiasTerm]:
    """The biased layers on the input → output path: Conv with a bias, Gemm with C (times beta),
    inference BatchNormalization (bias B − mean·scale/√(var + ε)), and Add of a constant to a
    MatMul of a constant weight. Biases must be constants (initializers or Constant nodes)."""
    index = GraphIndex.of(model)

    def value(name: str) -> NDArray[np.float64]:
        return index.constant(name).astype(np.float64)

    def is_constant(name: str) -> bool:
        return index.constant(name) is not None

    on_path = index.downstream([input_name]) & index.upstream([output_name])
    terms = []
    for node in index.nodes:
        z, inputs = node.output[0], list(node.input)
        if z not in on_path:
            continue
        if node.op_type == "Conv" and len(inputs) > 2 and is_constant(inputs[2]):
            terms.append(BiasTerm(z, value(inputs[2]), True))
        elif node.op_type == "Gemm" and len(inputs) > 2 and is_constant(inputs[2]):
            beta = next((a.f for a in node.attribute if a.name == "beta"), 1.0)
            terms.append(BiasTerm(z, beta * value(inputs[2]), False))
        elif node.op_type == "BatchNormalization" and all(is_constant(name) for name in inputs[1:5]):
            scale, shift, mean, var = (value(name) for name in inputs[1:5])
            epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
            terms.append(BiasTerm(z, shift - mean * scale / np.sqrt(var + epsilon), True))
        elif node.op_type == "Add" and sum(is_constant(name) for name in inputs) == 1:
            bias, other = (inputs[0], inputs[1]) if is_constant(inputs[0]) else (inputs[1], inputs[0])
            matmul = index.producer(other)
            if matmul is not None and matmul.op_type == "MatMul" and is_constant(matmul.input[1]):
                terms.append(BiasTerm(z, value(bias), False))
    return terms
