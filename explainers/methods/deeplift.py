"""DeepLIFT with the rescale rule (Shrikumar, Greenside & Kundaje 2017, [54] in the survey)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..autodiff.rules.deeplift import RULE_SET
from ..events import Event, Explanation, Planned
from ..model import Evaluator
from ..objectives import Objective
from .attribution import GradientAttribution, times_difference
from .baseline_input import BaselineParams
from .registry import Family, register


@dataclass(frozen=True, kw_only=True)
class DeepLiftParams(BaselineParams):
    """DeepLIFT's parameters: its reference input (the baseline x′)."""


@register(
    "deeplift",
    family=Family.GRADIENT,
    black_box=False,
    params=DeepLiftParams,
    citation="Shrikumar, Greenside & Kundaje, Learning Important Features Through Propagating Activation "
    "Differences, ICML 2017",
    attribution=lambda params, baseline: GradientAttribution(finish=times_difference, baseline=baseline,
                                                             rules=RULE_SET, baseline_pass=True),
)
def deeplift(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, params: DeepLiftParams, *, rng
) -> Iterator[Event]:
    """Differences from a reference input times DeepLIFT multipliers, summed over channels (rescale rule).

    heatmap_t = Σ_c (x − x′)_c ⊙ m_c with m the multipliers of target t's score (rescale rule at
    nonlinearities, linear ops unchanged; rules in ``explainers.autodiff.rules.deeplift``).
    Summation-to-delta: Σ heatmap_t = s_t(x) − s_t(x′) of the differentiated scores (the logits of
    a Softmax model), exactly for nets of linear ops, elementwise nonlinearities, MaxPool,
    products, LayerNorm and Softmax; extras report the gap (worst target, signed, and relative to
    |s_t(x) − s_t(x′)|). Passes: 2 F + 1 B per target (x and x′ forward in the same graph).
    """
    baseline = params.baseline_input(model, image, rng)
    targets = objective.num_targets
    yield Planned(forward=2 * targets, backward=targets)
    (batch,) = model.gradients(1, lambda start, stop: image[None], objective, rules=RULE_SET, baseline=baseline)
    contributions = times_difference(image[None], baseline[None], batch.input_grad)[0]  # [T, C, H, W]
    totals = contributions.reshape(targets, -1).sum(axis=1, dtype=np.float64)
    deltas = batch.score_delta[0].astype(np.float64)
    gaps = totals - deltas
    worst = int(np.argmax(np.abs(gaps)))
    relative = np.abs(gaps) / np.maximum(np.abs(deltas), np.finfo(np.float32).tiny)
    yield Explanation(
        heatmaps=np.ascontiguousarray(contributions.sum(axis=1), dtype=np.float32), scores=batch.scores[0],
        forward=model.context.forward, backward=model.context.backward,
        extras={"completeness_gap": float(gaps[worst]), "completeness_gap_relative": float(relative.max())},
    )
