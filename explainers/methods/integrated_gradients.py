"""Integrated Gradients (Sundararajan, Taly & Yan 2017, [62] in the survey), on the batched
gradient-attribution engine of :mod:`.attribution`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..events import Event, Explanation, Planned, Progress
from ..model import Evaluator
from ..objectives import Objective
from ..params import param
from ..perturb.paths import QUADRATURE, Quadrature, quadrature
from .attribution import GradientAttribution, attribute, objective_values, times_difference
from .baseline_input import BaselineParams
from .registry import Family, register


def integrated(path: Quadrature, baseline: NDArray[np.float32] | None = None) -> GradientAttribution:
    """Integrated Gradients as a :class:`GradientAttribution`: (x − x′) ⊙ Σᵢ wᵢ ∇f(x′ + αᵢ(x − x′)),
    with x′ = ``baseline`` [C, H, W] (None = 0)."""
    return GradientAttribution(finish=times_difference, path=path, baseline=baseline)


def forward_scores_differentiated(model: Evaluator, objective: Objective) -> bool:
    """Whether plain forwards give the objective on the scores the gradient graph differentiates.
    Not so when the evaluator cuts a final Softmax/Sigmoid to differentiate the logits (it does
    unless the objective asks for probabilities): then only its baseline pass measures them. A
    cross-entropy objective is computed from the model's outputs either way."""
    return objective.space == "probability" or objective.cross_entropy or model.signature.output_producer not in ("Softmax", "Sigmoid")


@dataclass(frozen=True, kw_only=True)
class IntegratedGradientsParams(BaselineParams):
    steps: int = param(50, low=2, high=1024, doc="path points m (model evaluations per target)")
    rule: str = param("gauss_legendre", choices=QUADRATURE, doc="quadrature of the path integral")


@register(
    "integrated_gradients",
    family=Family.GRADIENT,
    black_box=False,
    params=IntegratedGradientsParams,
    citation="Sundararajan, Taly & Yan, Axiomatic Attribution for Deep Networks, ICML 2017",
    attribution=lambda params, baseline: integrated(quadrature(params.rule, params.steps), baseline),
)
def integrated_gradients(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, params: IntegratedGradientsParams, *, rng
) -> Iterator[Event]:
    """(x − x′) ⊙ ∫₀¹ ∇f(x′ + α(x − x′)) dα summed over channels (signed); the paper's eq. 1 by quadrature.

    Passes: m F+B per target, batched, plus one forward for each path end the rule lacks (f(x′)
    and f(x): Gauss–Legendre and the midpoint rule have neither) — or, when the gradient graph
    differentiates logits the model does not output (a final Softmax/Sigmoid), 2 F + 1 B per
    target for f(x) − f(x′) in logits. Extras: ``completeness_gap`` Σ attr − (f(x) − f(x′)) (the
    paper's completeness axiom; Captum's ``compute_convergence_delta``),
    ``completeness_gap_relative`` = |gap| / |f(x) − f(x′)| and ``score_difference`` f(x) − f(x′),
    for target 0 and as ``name[t]`` per target.
    """
    baseline = params.baseline_input(model, image, rng)
    ig = integrated(quadrature(params.rule, params.steps), baseline)
    targets, m = objective.num_targets, len(ig.path)
    if forward_scores_differentiated(model, objective):  # path ends from the path, else one forward each
        nodes = {alpha: node for alpha in (0.0, 1.0) if (node := ig.path.index_of(alpha)) is not None}
        missing = [alpha for alpha in (1.0, 0.0) if alpha not in nodes]
        planned = Planned(forward=m * targets + len(missing), backward=m * targets)
    else:  # logits: f(x) − f(x′) from one gradient pass with a baseline pass (2 F + 1 B per target)
        nodes, missing = {}, None
        planned = Planned(forward=(m + 2) * targets, backward=(m + 1) * targets)
    yield planned

    ends: dict[float, NDArray[np.float32]] = {}
    for step in attribute(model, ig, 1, lambda a, b: image[None], objective, partial=True):
        for alpha, node in nodes.items():
            for row in np.flatnonzero(step.nodes == node):
                ends[alpha] = step.scores[row]
        attribution = step.attributions[0] if step.inputs else step.partial
        yield Progress(done=model.context.forward + model.context.backward, total=planned.total,
                       heatmaps=ig.reduce(attribution))
    if missing is None:
        (batch,) = model.gradients(1, lambda a, b: image[None], objective, baseline=baseline)
        scores, delta = batch.scores[0], batch.score_delta[0].astype(np.float64)
    else:
        if missing:
            images = np.stack([image if alpha else baseline for alpha in missing])
            ends.update(zip(missing, objective_values(model, images, objective)))
        scores, delta = ends[1.0], ends[1.0].astype(np.float64) - ends[0.0]
    gap = attribution.sum(axis=(1, 2, 3)) - delta
    relative = np.abs(gap) / np.maximum(np.abs(delta), np.finfo(np.float32).tiny)
    extras = {}
    for name, values in (("completeness_gap", gap), ("completeness_gap_relative", relative),
                         ("score_difference", delta)):
        extras[name] = float(values[0])
        extras.update({f"{name}[{t}]": float(value) for t, value in enumerate(values)})
    yield Explanation(heatmaps=ig.reduce(attribution), scores=scores.astype(np.float32),
                      forward=model.context.forward, backward=model.context.backward, extras=extras)
