"""FullGrad (Srinivas & Fleuret 2019, [61] in the survey)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import numpy_helper

from ..events import Event, Explanation, Planned
from ..model import Evaluator
from ..objectives import Objective
from ..params import NoParams
from .registry import Family, register

_EPS = 1e-6  # the reference implementation's guard in the min-max normalisation


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


def bias_terms(graph: onnx.GraphProto, input_name: str, output_name: str) -> list[BiasTerm]:
    """The biased layers on the input → output path: Conv with a bias, Gemm with C (times beta),
    inference BatchNormalization (bias B − mean·scale/√(var + ε)), and Add of a constant to a
    MatMul of a constant weight. Biases must be constants (initializers or Constant nodes)."""
    constants = {init.name: init for init in graph.initializer}
    constants.update({node.output[0]: node.attribute[0].t for node in graph.node
                      if node.op_type == "Constant" and node.attribute[0].name == "value"})

    def value(name: str) -> NDArray[np.float64]:
        return numpy_helper.to_array(constants[name]).astype(np.float64)

    producers = {name: node for node in graph.node for name in node.output}
    reached = {input_name}
    for node in graph.node:
        if any(name in reached for name in node.input):
            reached.update(node.output)
    upstream, stack = {output_name}, [output_name]
    while stack:
        for name in getattr(producers.get(stack.pop()), "input", ()):
            if name and name not in upstream:
                upstream.add(name)
                stack.append(name)
    terms = []
    for node in graph.node:
        z, inputs = node.output[0], list(node.input)
        if z not in reached or z not in upstream:
            continue
        if node.op_type == "Conv" and len(inputs) > 2 and inputs[2] in constants:
            terms.append(BiasTerm(z, value(inputs[2]), True))
        elif node.op_type == "Gemm" and len(inputs) > 2 and inputs[2] in constants:
            beta = next((a.f for a in node.attribute if a.name == "beta"), 1.0)
            terms.append(BiasTerm(z, beta * value(inputs[2]), False))
        elif node.op_type == "BatchNormalization" and all(name in constants for name in inputs[1:5]):
            scale, shift, mean, var = (value(name) for name in inputs[1:5])
            epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
            terms.append(BiasTerm(z, shift - mean * scale / np.sqrt(var + epsilon), True))
        elif node.op_type == "Add" and sum(name in constants for name in inputs) == 1:
            bias, other = (inputs[0], inputs[1]) if inputs[0] in constants else (inputs[1], inputs[0])
            matmul = producers.get(other)
            if matmul is not None and matmul.op_type == "MatMul" and matmul.input[1] in constants:
                terms.append(BiasTerm(z, value(bias), False))
    return terms


def normalised(maps: NDArray[np.floating]) -> NDArray[np.float32]:
    """The reference implementation's post-processing of [T, ...] maps: abs, then min-max to [0, 1] per target."""
    flat = np.abs(maps.astype(np.float32)).reshape(len(maps), -1)
    flat -= flat.min(axis=1, keepdims=True)
    flat /= flat.max(axis=1, keepdims=True) + _EPS
    return flat.reshape(maps.shape)


@functools.lru_cache(maxsize=64)
def _aligned_corners(source: int, target: int) -> NDArray[np.float32]:
    """[target, source] weights of a 1-D linear resize with aligned corners."""
    position = np.linspace(0, source - 1, target) if target > 1 else np.zeros(1)
    low = np.minimum(np.floor(position).astype(int), source - 1)
    high = np.minimum(low + 1, source - 1)
    matrix = np.zeros((target, source))
    np.add.at(matrix, (np.arange(target), low), 1 - (position - low))
    np.add.at(matrix, (np.arange(target), high), position - low)
    return matrix.astype(np.float32)


def upsampled(maps: NDArray[np.floating], size: tuple[int, int]) -> NDArray[np.float32]:
    """Bilinear resize of [T, h, w] to [T, H, W] with aligned corners (the reference implementation's)."""
    rows, cols = _aligned_corners(maps.shape[1], size[0]), _aligned_corners(maps.shape[2], size[1])
    return np.stack([rows @ m.astype(np.float32) @ cols.T for m in maps])


@register(
    "fullgrad",
    family=Family.GRADIENT,
    black_box=False,
    params=NoParams,
    citation="Srinivas & Fleuret, Full-Gradient Representation for Neural Network Visualization, NeurIPS 2019",
)
def fullgrad(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, params: NoParams, *, rng
) -> Iterator[Event]:
    """Input-gradient ⊙ input plus the bias-gradients ∂s/∂z ⊙ b of every biased layer.

    Each term is post-processed as in the reference implementation — abs, min-max normalised per
    target over (channels, h, w), summed over channels; bias-gradients of 4-D layers upsampled
    bilinearly (aligned corners) to the input — and the maps are summed (unsigned). Before
    post-processing the terms satisfy completeness, s(x) = Σ x ⊙ ∂s/∂x + Σ_layers Σ b ⊙ ∂s/∂z,
    exactly for piecewise-linear nets (ReLU, MaxPool, linear layers) with all biases counted;
    extras report the number of bias terms and, when the model outputs logits, the gap. Passes:
    1 F + 1 B per target.
    """
    terms = bias_terms(model.introspection.simplified_model().graph, model.signature.input_name,
                       model.signature.output_name)
    targets = objective.num_targets
    yield Planned(forward=targets, backward=targets)
    (batch,) = model.gradients(1, lambda start, stop: image[None], objective, layers=[t.layer for t in terms])
    input_terms = image[None] * batch.input_grad[0]  # [T, C, H, W]
    heatmaps = normalised(input_terms).sum(axis=1)
    total = input_terms.reshape(targets, -1).sum(axis=1, dtype=np.float64)
    by_size: dict[tuple[int, int], NDArray[np.float32]] = {}  # upsampling is linear: once per map size
    for term in terms:
        gradient = batch.layers[term.layer][1][0]  # [T, *z]
        bias_gradient = gradient * term.broadcast(gradient.ndim - 1).astype(np.float32)
        total += bias_gradient.reshape(targets, -1).sum(axis=1, dtype=np.float64)
        if bias_gradient.ndim == 4:  # [T, K, h, w]: a spatial map
            maps = normalised(bias_gradient).sum(axis=1)
            by_size[maps.shape[1:]] = by_size.get(maps.shape[1:], 0) + maps
    for maps in by_size.values():
        heatmaps += upsampled(maps, image.shape[1:])
    extras = {"bias_terms": float(len(terms))}
    if not model.outputs_are_probabilities:
        gaps = total - batch.scores[0]
        extras["completeness_gap"] = float(gaps[np.argmax(np.abs(gaps))])
    yield Explanation(heatmaps=heatmaps.astype(np.float32), scores=batch.scores[0], forward=model.context.forward,
                      backward=model.context.backward, extras=extras)
