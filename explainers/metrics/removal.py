"""Deletion and insertion (Petsiuk, Das & Saenko 2018, RISE, BMVC, §4.1): remove or insert pixels in
the order a map ranks them and watch the score.

With the H·W pixels ranked by the map (:func:`~explainers.perturb.masks.ranked.pixel_ranks`) and
``kₛ = round(s · H·W / S)`` pixels moved at step s = 0 … S, the perturbed inputs are

* deletion:  ``xₛ = mₛ ⊙ x + (1 − mₛ) ⊙ b``, with ``b`` the baseline (zero, mean, blur);
* insertion: ``xₛ = mₛ ⊙ c + (1 − mₛ) ⊙ x``, with ``c`` the canvas (a blurred copy by default);

where ``mₛ = [rank ≥ kₛ]`` keeps the pixels not yet moved. Each step is a mask built inside the
graph from two numbers (:func:`~explainers.perturb.masks.ranked.ranked_masks`), not a copied image.
The curve ``y_t(s) = f_t(xₛ)`` is read for each target t with its own map's order, and the headline
value is its area over the fraction moved, ``AUC_t = ∫₀¹ y_t`` (trapezoid rule).

MoRF (most relevant first, the paper's order): a faithful map makes deletion fall fast (low AUC)
and insertion rise fast (high AUC). LeRF reverses the order and with it the reading (deletion LeRF:
higher is better), which each :class:`~.result.MetricResult` states in ``higher_is_better``.

Scores are probabilities by default (the paper's; softmax over the classes of the model's output,
then the objective's weights), or the objective's own space (``score="objective"``: logits for a
logit model). The curve's ``y_label`` says which.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..events import Planned, Progress
from ..objectives import Objective
from ..params import param
from ..perturb.baselines import BASELINES, make_baseline
from ..perturb.masks.ranked import ORDERS, pixel_ranks, ranked_masks
from .registry import MetricParams, PlanInput, register_metric
from .result import Curve, MetricResult, area_under_curve
from .subject import Subject

SCORES = ("probability", "objective")
CITATION = "Petsiuk, Das & Saenko, RISE: Randomized Input Sampling for Explanation of Black-box Models, BMVC 2018, §4.1"


@dataclass(frozen=True, kw_only=True)
class RemovalParams(MetricParams):
    steps: int = param(100, low=1, high=1_000_000,
                       doc="number of steps S; each moves ~H·W/S pixels (the paper: 224 on 224×224); at most H·W")
    order: str = param("morf", choices=ORDERS, doc="morf: most relevant pixels first (the paper); lerf: least first")
    score: str = param("probability", choices=SCORES,
                       doc="probability: softmax of the model's output, weighted by the objective (the paper); "
                           "objective: the objective's own space (logits for a logit model)")


@dataclass(frozen=True, kw_only=True)
class DeletionParams(RemovalParams):
    baseline: str = param("zero", choices=BASELINES,
                          doc="what removed pixels become: zero (0 in the model's normalised space, the paper's "
                              "code), mean (the image's channel means), blur (Gaussian, σ = 10% of the shorter side)")


@dataclass(frozen=True, kw_only=True)
class InsertionParams(RemovalParams):
    baseline: str = param("blur", choices=BASELINES,
                          doc="the canvas pixels are inserted into: blur (the paper: a blurred copy), zero, mean")


def plan_removal(params: RemovalParams, given: PlanInput) -> Planned:
    """T · (S + 1) forward passes: one per target and step (each target follows its own map)."""
    _, height, width = given.shape
    if params.steps > height * width:
        params.fail("steps", f"{params.steps} exceeds the {height * width} pixels of the input; "
                             f"allowed: [1, {height * width}]")
    return Planned(forward=given.objective.num_targets * (params.steps + 1))


def scored(objective: Objective, score: str) -> Objective:
    """The objective evaluated in the requested score space."""
    return dataclasses.replace(objective, space="probability") if score == "probability" else objective


def y_label_of(subject: Subject, params: RemovalParams) -> str:
    """What the curve's y measures."""
    if params.score == "probability" or subject.objective.space == "probability":
        return "probability of the target"
    return "objective score (model output space)"


def removal_curve(subject: Subject, params: RemovalParams, *, insert: bool, rng: np.random.Generator,
                  metric: str, higher_is_better: bool) -> Iterator[Planned | Progress | MetricResult]:
    """Deletion (``insert=False``) or insertion: see the module doc. Yields Planned, Progress, MetricResult."""
    image, model = subject.image, subject.model
    targets = subject.objective.num_targets
    _, height, width = image.shape
    pixels = height * width
    moved = np.rint(np.arange(params.steps + 1) * pixels / params.steps).astype(np.int64)  # kₛ [K]
    steps = len(moved)
    total = targets * steps
    yield Planned(forward=total)

    ranks = pixel_ranks(subject.heatmaps, params.order, rng)
    fill = make_baseline(image, params.baseline)
    source_image, baseline = (fill, image) if insert else (image, fill)
    sample_target = np.repeat(np.arange(targets, dtype=np.int64), steps)  # sample i: target i // K, step i % K
    sample_moved = np.tile(moved.astype(np.float32), targets)
    curve = np.empty(total, np.float64)
    values_of = model.perturbed_values(
        total, lambda a, b: {"rank_target": sample_target[a:b], "removed": sample_moved[a:b]},
        scored(subject.objective, params.score), source=ranked_masks(height, width), image=source_image,
        baseline=baseline, per_request={"pixel_ranks": ranks},
    )
    for start, stop, values in values_of:
        rows = np.arange(start, stop)
        curve[start:stop] = values[rows - start, sample_target[start:stop]]
        yield Progress(done=stop, total=total)
    x = (moved / pixels).astype(np.float32)
    y = curve.reshape(targets, steps).astype(np.float32)
    flipped = params.order == "lerf"
    yield MetricResult(
        metric=metric, values=area_under_curve(x, y), higher_is_better=higher_is_better != flipped,
        curves=(Curve("score", x, y, f"fraction of pixels {'inserted' if insert else 'removed'}"
                      f" ({params.order.upper()}, {'canvas' if insert else 'baseline'} {params.baseline})", y_label=y_label_of(subject, params)),),
        extras={"steps": float(params.steps), "pixels_per_step": pixels / params.steps},
    )


@register_metric("deletion", params=DeletionParams, higher_is_better=False, citation=CITATION, reexplains=False,
                 plan=plan_removal)
def deletion(subject: Subject, params: DeletionParams, *, rng: np.random.Generator
             ) -> Iterator[Planned | Progress | MetricResult]:
    """Area under the score curve as pixels are removed in the map's order (MoRF: lower is better).

    See the module doc: ``xₛ = mₛ ⊙ x + (1 − mₛ) ⊙ b``, ``AUC_t = ∫₀¹ f_t(xₛ) d(kₛ/HW)``.
    Passes: T · (S + 1) forward.
    """
    yield from removal_curve(subject, params, insert=False, rng=rng, metric="deletion", higher_is_better=False)


@register_metric("insertion", params=InsertionParams, higher_is_better=True, citation=CITATION, reexplains=False,
                 plan=plan_removal)
def insertion(subject: Subject, params: InsertionParams, *, rng: np.random.Generator
              ) -> Iterator[Planned | Progress | MetricResult]:
    """Area under the score curve as pixels are inserted into a blurred canvas in the map's order (MoRF: higher is better).

    See the module doc: ``xₛ = mₛ ⊙ c + (1 − mₛ) ⊙ x``, ``AUC_t = ∫₀¹ f_t(xₛ) d(kₛ/HW)``.
    Passes: T · (S + 1) forward.
    """
    yield from removal_curve(subject, params, insert=True, rng=rng, metric="insertion", higher_is_better=True)
