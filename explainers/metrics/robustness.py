"""Robustness of an explanation (Yeh et al. 2019, On the (In)fidelity and Sensitivity of
Explanations, NeurIPS): max-sensitivity and infidelity, as Captum's ``captum.metrics`` define them,
for pixel maps.

Max-sensitivity (Yeh et al. Def. 3.1, Captum ``sensitivity_max``): with δⱼ uniform in the L∞ ball
of radius r (in the model's normalised input space), j = 1 … n,

    SENS_t = maxⱼ ‖Φ_t(x + δⱼ) − Φ_t(x)‖_F / ‖Φ_t(x)‖_F,

where Φ is the method re-run (same parameters, objective and seed) on the perturbed input.

Infidelity (Yeh et al. Def. 2.1, Captum ``infidelity``): ``INFD = E_I[(Iᵀ Φ − (f(x) − f(x − I)))²]``.
A map here has one value per pixel (channels summed), so the perturbation is expressed per pixel in
the map's coordinates: pixel p moves a Gaussian fraction zₚ ~ N(0, σ²) of the way to the baseline b,

    x − I = x − z ⊙ (x − b),    Iᵀ Φ := Σₚ zₚ Φₚ,

the "baseline" perturbation semantics of Yeh et al. §3 (Captum: perturbations of the input times
(input − baseline), for attributions multiplied by the inputs). For a linear model f = w·x the
exact attribution Φ = Σ_c w ⊙ (x − b) (occlusion with 1-pixel windows, gradient × (x − b)) has
infidelity 0. With ``normalize`` (Captum's ``normalize=True``) Φ is first scaled by the best
β = E[IᵀΦ · Δf] / E[(IᵀΦ)²], so the value does not depend on the map's units (β = 0 for a map
whose projections all vanish). The expectation is a mean over n seeded samples, batched in one
loop through the in-graph perturbation prefix.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import FailedPrecondition
from ..events import Planned, Progress
from ..params import param
from ..perturb.baselines import BASELINES, make_baseline
from ..perturb.masks.dense import dense_masks
from .registry import MetricParams, PlanInput, register_metric
from .result import MetricResult
from .subject import Subject

CITATION = "Yeh, Hsieh, Suggala, Inouye & Ravikumar, On the (In)fidelity and Sensitivity of Explanations, NeurIPS 2019"


@dataclass(frozen=True, kw_only=True)
class MaxSensitivityParams(MetricParams):
    perturbations: int = param(10, low=1, high=1000, doc="number n of perturbed inputs (Captum's default 10)")
    radius: float = param(0.02, low=0.0, high=100.0,
                          doc="L∞ radius r of the uniform perturbations, in the model's normalised input units "
                              "(Captum's default 0.02)")


@dataclass(frozen=True, kw_only=True)
class InfidelityParams(MetricParams):
    perturbations: int = param(64, low=1, high=100_000, doc="number n of Gaussian perturbations averaged")
    noise: float = param(0.1, low=0.0, high=10.0,
                         doc="σ of the per-pixel fraction z moved towards the baseline (x − z ⊙ (x − b))")
    baseline: str = param("zero", choices=BASELINES, doc="the baseline b the perturbations move pixels towards")
    normalize: bool = param(True, doc="scale the map by the least-squares β first (Captum's normalize=True), so "
                                      "the value does not depend on the map's units")


def plan_max_sensitivity(params: MaxSensitivityParams, given: PlanInput) -> Planned:
    """n re-explanations, each costing what the method planned."""
    return Planned(forward=params.perturbations * given.method_planned.forward,
                   backward=params.perturbations * given.method_planned.backward)


def plan_infidelity(params: InfidelityParams, given: PlanInput) -> Planned:
    """n + 1 forward passes (the extra one scores x)."""
    return Planned(forward=params.perturbations + 1)


def frobenius(maps: np.ndarray) -> np.ndarray:
    """‖Φ_t‖_F of maps [T, H, W] → [T] (float64)."""
    return np.sqrt((np.asarray(maps, np.float64) ** 2).sum(axis=(1, 2)))


@register_metric("max_sensitivity", params=MaxSensitivityParams, higher_is_better=False, citation=CITATION,
                 reexplains=True, plan=plan_max_sensitivity)
def max_sensitivity(subject: Subject, params: MaxSensitivityParams, *, rng: np.random.Generator
                    ) -> Iterator[Planned | Progress | MetricResult]:
    """Largest relative change of the map when the input moves by at most r per value (lower is better).

    ``SENS_t = maxⱼ ‖Φ_t(x + δⱼ) − Φ_t(x)‖_F / ‖Φ_t(x)‖_F``, δⱼ ~ U([−r, r]^{C×H×W}), j = 1 … n; the
    method is re-run n times (its own batching inside each run). Extras: ``mean_sensitivity``
    (the mean over j and targets). Raises FailedPrecondition for an all-zero map (no relative change).
    """
    reference = subject.heatmaps
    norms = frobenius(reference)
    if np.any(norms == 0):
        raise FailedPrecondition("max_sensitivity divides by the map's norm, and the map of a target is all zeros")
    changes = np.empty((params.perturbations, len(norms)), np.float64)
    for j in range(params.perturbations):
        delta = rng.uniform(-params.radius, params.radius, subject.image.shape).astype(np.float32)
        events = subject.reexplain(image=subject.image + delta)
        planned = next(events)  # a method plans before any pass: n runs like this one
        if j == 0:
            yield Planned(forward=params.perturbations * planned.forward,
                          backward=params.perturbations * planned.backward)
        *_, explanation = events
        changes[j] = frobenius(explanation.heatmaps - reference) / norms
        yield Progress(done=j + 1, total=params.perturbations)
    yield MetricResult("max_sensitivity", changes.max(axis=0).astype(np.float32), higher_is_better=False,
                       extras={"mean_sensitivity": float(changes.mean()), "radius": params.radius})


@register_metric("infidelity", params=InfidelityParams, higher_is_better=False, citation=CITATION, reexplains=False,
                 plan=plan_infidelity)
def infidelity(subject: Subject, params: InfidelityParams, *, rng: np.random.Generator
               ) -> Iterator[Planned | Progress | MetricResult]:
    """Mean squared gap between the map's predicted and the model's actual score change under Gaussian perturbations (lower is better).

    ``INFD_t = (1/n) Σᵢ (β_t · zᵢᵀΦ_t − (f_t(x) − f_t(x − zᵢ ⊙ (x − b))))²`` with zᵢ ~ N(0, σ²)^{H×W};
    β_t = 1, or with ``normalize`` the least-squares scale. Scores are the objective's own (the
    space the map explains). Passes: n + 1 forward. Extras: ``beta`` (target 0's scale).
    """
    image, model = subject.image, subject.model
    _, height, width = image.shape
    count = params.perturbations + 1
    yield Planned(forward=count)
    z = rng.normal(0.0, params.noise, (params.perturbations, height, width)).astype(np.float32)
    masks = np.concatenate([np.ones((1, height, width), np.float32), 1.0 - z])  # sample 0 is x itself
    scores = np.empty((count, subject.objective.num_targets), np.float64)
    values_of = model.perturbed_values(count, lambda a, b: {"dense_mask": masks[a:b]}, subject.objective,
                                       source=dense_masks(height, width), image=image,
                                       baseline=make_baseline(image, params.baseline))
    for start, stop, values in values_of:
        scores[start:stop] = values
        yield Progress(done=stop, total=count)
    drop = scores[0][None] - scores[1:]  # Δf [n, T]
    projected = z.reshape(len(z), -1).astype(np.float64) @ subject.heatmaps.reshape(len(drop[0]), -1).T  # [n, T]
    beta = np.ones(projected.shape[1])
    if params.normalize:
        energy = (projected ** 2).sum(axis=0)
        beta = np.divide((projected * drop).sum(axis=0), energy, out=np.zeros_like(energy), where=energy > 0)
    gap = ((beta[None] * projected - drop) ** 2).mean(axis=0)
    yield MetricResult("infidelity", gap.astype(np.float32), higher_is_better=False,
                       extras={"beta": float(beta[0]), "noise": params.noise})
