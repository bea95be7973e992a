"""ROAD: RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci 2022, A Consistent and Efficient
Evaluation Strategy for Attribution Methods, ICML).

Plain deletion replaces pixels with a constant, and the *shape* of the removed region then leaks
class information (the paper's §3). ROAD instead fills the removed pixels by noisy linear
imputation (:mod:`explainers.perturb.imputation`): each removed pixel becomes the weighted average
of its 8 neighbours (one sparse linear solve per image, every channel at once) plus N(0, σ²) noise.

With the pixels ranked by the map (MoRF or LeRF, ties broken at random) and the fractions
``s/S`` for s = 0 … S − 1 (the paper: 0%, 10%, …, 90%), the curve is ``y_t(s) = f_t(x̃ₛ)``, x̃ₛ the
image with the first ``round(s·H·W/S)`` pixels of target t's order imputed, and the value is its
area (trapezoid) over [0, (S − 1)/S]. MoRF: lower is better; LeRF: higher is better. The images are
built in numpy (the imputation is not a mask) and batched through the Evaluator's loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..events import Planned, Progress
from ..params import param
from ..perturb.imputation import impute
from ..perturb.masks.ranked import pixel_ranks
from .registry import PlanInput, register_metric
from .removal import RemovalParams, scored, y_label_of
from .result import Curve, MetricResult, area_under_curve
from .subject import Subject


@dataclass(frozen=True, kw_only=True)
class RoadParams(RemovalParams):
    steps: int = param(10, low=2, high=1_000_000,
                       doc="number of fractions S: 0, 1/S, …, (S − 1)/S of the pixels imputed (the paper: 10)")
    noise: float = param(0.01, low=0.0, high=10.0,
                         doc="σ of the noise added to imputed values, model input units (the paper's code: 0.01)")


def plan_road(params: RoadParams, given: PlanInput) -> Planned:
    """T · S forward passes."""
    _, height, width = given.shape
    if params.steps > height * width:
        params.fail("steps", f"{params.steps} exceeds the {height * width} pixels; allowed: [1, {height * width}]")
    return Planned(forward=given.objective.num_targets * params.steps)


@register_metric("road", params=RoadParams, higher_is_better=False, reexplains=False, plan=plan_road,
                 citation="Rong, Leemann, Borisov, Kasneci & Kasneci, A Consistent and Efficient Evaluation "
                          "Strategy for Attribution Methods, ICML 2022")
def road(subject: Subject, params: RoadParams, *, rng: np.random.Generator
         ) -> Iterator[Planned | Progress | MetricResult]:
    """Area under the score curve as pixels are removed in the map's order and imputed from their neighbours (MoRF: lower is better).

    ``AUC_t = ∫ f_t(x̃ₛ)`` over the fractions s/S, s < S, x̃ₛ = x with the first kₛ pixels replaced by
    noisy linear imputation (module doc). Passes: T · S forward.
    """
    image, model = subject.image, subject.model
    targets = subject.objective.num_targets
    _, height, width = image.shape
    moved = np.rint(np.arange(params.steps) * height * width / params.steps).astype(np.int64)
    steps, total = params.steps, targets * params.steps
    yield Planned(forward=total)
    ranks = pixel_ranks(subject.heatmaps, params.order, rng)
    seeds = rng.integers(0, 2**63, size=total)  # one generator per sample: the same images whatever the batching

    def make_images(start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *image.shape), np.float32)
        for i in range(start, stop):
            target, step = divmod(i, steps)
            out[i - start] = impute(image, ranks[target] < moved[step], params.noise, np.random.default_rng(seeds[i]))
        return out

    curve = np.empty(total, np.float64)
    sample_target = np.repeat(np.arange(targets), steps)
    for start, stop, values in model.objective_values(total, make_images, scored(subject.objective, params.score)):
        curve[start:stop] = values[np.arange(stop - start), sample_target[start:stop]]
        yield Progress(done=stop, total=total)
    x = (moved / (height * width)).astype(np.float32)
    y = curve.reshape(targets, steps).astype(np.float32)
    yield MetricResult(
        "road", area_under_curve(x, y), higher_is_better=params.order == "lerf",
        curves=(Curve("score", x, y, f"fraction of pixels imputed ({params.order.upper()})",
                      y_label=y_label_of(subject, params)),),
        extras={"steps": float(params.steps), "noise": params.noise},
    )
