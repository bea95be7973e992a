"""Integrated Gradients (Sundararajan, Taly & Yan 2017, [62] in the survey), on the batched
gradient-attribution engine of :mod:`.attribution`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..autodiff.builder import FINAL_ACTIVATIONS
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
    return objective.space == "probability" or objective.cross_entropy or model.signature.output_producer not in FINAL_ACTIVATIONS


FIRST_ORDER = 8
"""The adaptive mode's first path size; each next one doubles (8, 16, 32, …), the last is ``steps``."""


def refinement_orders(steps: int, tolerance: float) -> list[int]:
    """Path sizes tried in turn: ``[steps]`` without a tolerance (the paper's fixed budget); with one,
    8, 16, 32, … below ``steps``, then ``steps`` itself (the budget: the largest path evaluated)."""
    orders, n = [], FIRST_ORDER
    while tolerance > 0 and n < steps:
        orders.append(n)
        n *= 2
    return [*orders, steps]


@dataclass(frozen=True, kw_only=True)
class IntegratedGradientsParams(BaselineParams):
    steps: int = param(50, low=2, high=1024, doc="path points m (model evaluations per target); with a "
                       "completeness_tolerance, the largest path tried")
    rule: str = param("gauss_legendre", choices=QUADRATURE, doc="quadrature of the path integral")
    completeness_tolerance: float = param(
        0.0, low=0.0, high=1.0,
        doc="adaptive steps: try 8, 16, 32, … then `steps` points, stopping at the first path whose completeness "
            "gap |Σ attr − (f(x) − f(x′))| / |f(x) − f(x′)| is at most this; 0 = exactly `steps` points (the paper)")


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
    for target 0 and as ``name[t]`` per target; ``steps`` (points of the path returned) and
    ``steps_evaluated`` (points of every path tried, per target).

    Adaptive steps (``completeness_tolerance`` τ > 0): the paper asks for enough steps that the gap is
    within 5% (its §4 and 5 mention 20–300); here paths of 8, 16, 32, … points and finally ``steps``
    are evaluated in turn until the relative gap of every target is ≤ τ. The path ends f(x), f(x′)
    are measured once, first (2 forwards, or 2 F + 1 B in logits), and serve every path. Gauss–Legendre
    with n nodes integrates polynomials of degree 2n − 1 exactly, so a smooth integrand stops at 8.
    Reuse between paths: Gauss–Legendre nodes of n and 2n points are disjoint (they share only the
    midpoint, and only for odd n), so each path costs its full n F+B — a trial at 8, 16 and 32 costs 56,
    not 32. A nested rule would reuse them (the trapezoid rule at 2ᵏ + 1 points keeps every earlier
    point, Gauss–Kronrod keeps the n Gauss nodes among its 2n + 1) but converges more slowly on the
    piecewise-linear integrands of ReLU networks; not done here. Extra ``converged``: 1 when the gap
    reached τ, 0 when the budget ran out first (the gap is then reported, never hidden).
    """
    baseline = params.baseline_input(model, image, rng)
    tolerance = params.completeness_tolerance
    orders, targets = refinement_orders(params.steps, tolerance), objective.num_targets
    paths = [integrated(quadrature(params.rule, n), baseline) for n in orders]
    if not forward_scores_differentiated(model, objective):  # logits: one gradient pass with a baseline pass
        nodes, missing = {}, None
        planned = Planned(forward=(sum(orders) + 2) * targets, backward=(sum(orders) + 1) * targets)
    else:  # a single path finds the ends it has among its nodes; adaptive paths share two forwards
        has = {} if tolerance else {alpha: paths[0].path.index_of(alpha) for alpha in (0.0, 1.0)}
        nodes = {alpha: node for alpha, node in has.items() if node is not None}
        missing = [alpha for alpha in (1.0, 0.0) if alpha not in nodes]
        planned = Planned(forward=sum(orders) * targets + len(missing), backward=sum(orders) * targets)
    yield planned

    ends: dict[float, NDArray[np.float32]] = {}
    known = path_ends(model, image, baseline, objective, ends, missing) if tolerance else None
    evaluated = 0  # path points of every path tried
    for ig in paths:
        evaluated += len(ig.path)
        for step in attribute(model, ig, 1, lambda a, b: image[None], objective, partial=True):
            for alpha, node in nodes.items():
                for row in np.flatnonzero(step.nodes == node):
                    ends[alpha] = step.scores[row]
            attribution = step.attributions[0] if step.inputs else step.partial
            yield Progress(done=model.context.forward + model.context.backward, total=planned.total,
                           heatmaps=ig.reduce(attribution))
        scores, delta = known or path_ends(model, image, baseline, objective, ends, missing)
        gap = attribution.sum(axis=(1, 2, 3)) - delta
        relative = np.abs(gap) / np.maximum(np.abs(delta), np.finfo(np.float32).tiny)
        if tolerance and np.all(relative <= tolerance):
            break
    extras = {"steps": float(len(ig.path)), "steps_evaluated": float(evaluated)}
    if tolerance:
        extras["converged"] = float(np.all(relative <= tolerance))
    for name, values in (("completeness_gap", gap), ("completeness_gap_relative", relative),
                         ("score_difference", delta)):
        extras[name] = float(values[0])
        extras.update({f"{name}[{t}]": float(value) for t, value in enumerate(values)})
    yield Explanation(heatmaps=ig.reduce(attribution), scores=scores.astype(np.float32),
                      forward=model.context.forward, backward=model.context.backward, extras=extras)


def path_ends(
    model: Evaluator, image: NDArray[np.float32], baseline: NDArray[np.float32], objective: Objective,
    ends: dict[float, NDArray[np.float32]], missing: list[float] | None,
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """f(x) [T] and f(x) − f(x′) [T] (float64): from ``ends`` (scores at α = 1, 0 found among the path's
    nodes) plus one forward for each α in ``missing``; ``missing=None``: in logits, by one gradient pass
    with a baseline pass (the graph cuts a final Softmax/Sigmoid the plain forward keeps)."""
    if missing is None:
        (batch,) = model.gradients(1, lambda a, b: image[None], objective, baseline=baseline)
        return batch.scores[0], batch.score_delta[0].astype(np.float64)
    if missing:
        images = np.stack([image if alpha else baseline for alpha in missing])
        ends.update(zip(missing, objective_values(model, images, objective)))
    return ends[1.0], ends[1.0].astype(np.float64) - ends[0.0]
