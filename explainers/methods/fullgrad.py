"""FullGrad (Srinivas & Fleuret 2019, [61] in the survey)."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from ..events import Event, Explanation, Planned
from ..graph.bias_layers import bias_terms
from ..model import Evaluator
from ..objectives import Objective
from ..params import NoParams
from .registry import Family, register

_EPS = 1e-6  # the authors' implementation's guard in the min-max normalisation


def normalised(maps: NDArray[np.floating]) -> NDArray[np.float32]:
    """The authors' implementation's post-processing of [T, ...] maps: abs, then min-max to [0, 1] per target."""
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
    """Bilinear resize of [T, h, w] to [T, H, W] with aligned corners (the authors' implementation's)."""
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

    Each term is post-processed as in the authors' implementation — abs, min-max normalised per
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
