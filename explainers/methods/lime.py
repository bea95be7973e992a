"""LIME for images (Ribeiro, Singh & Guestrin 2016, [48] in the survey)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..events import Event, Explanation, Planned, Progress
from ..model import Evaluator
from ..objectives import Objective
from ..params import MethodParams, param
from ..perturb.baselines import BASELINES, make_baseline
from ..perturb.masks import superpixels as sp
from ..perturb.surrogate import WeightedRidge, exponential_kernel
from .registry import Family, register


@dataclass(frozen=True, kw_only=True)
class LimeParams(MethodParams):
    segments: int = param(50, low=2, high=1000, doc="approximate number of SLIC superpixels")
    compactness: float = param(10.0, low=0.001, high=1000, doc="SLIC compactness (higher: squarer superpixels)")
    samples: int = param(1000, low=10, high=100000, doc="random on/off samples, the first all on (= forward passes)")
    kernel_width: float = param(0.25, low=0.001, high=100, doc="width w of the kernel √exp(−d²/w²), d = cosine distance to all-on")
    ridge_alpha: float = param(1.0, low=0, high=1e6, doc="ridge regularisation of the weighted linear surrogate")
    baseline: str = param("segment_mean", choices=("segment_mean", *BASELINES),
                          doc="what a switched-off superpixel becomes (segment_mean: its own mean colour)")
    sampling: str = param("random", choices=sp.SAMPLINGS,
                          doc="random: independent coin flips (the paper); quasi_random: scrambled Sobol sequence")
    convergence_tolerance: float = param(
        0.0, low=0.0, high=1.0, doc="stop once the surrogate's coefficients moved less than this (relative L2) "
        "since the fit of half as many samples, checked every k = max(S + 1, samples / 20) samples; 0 = use every sample")


def convergence_checks(samples: int, segments: int, tolerance: float) -> list[int]:
    """Sample counts at which LIME refits and compares with the fit at the check ⌊j/2⌋·k: multiples j·k of
    k = max(S + 1, ⌈N/20⌉) below N (none without a tolerance). Half the samples, not the previous check:
    a ridge fit's shrinkage decays like 1/n and its sampling noise like 1/√n, so the change since n/2
    estimates the distance to the full-budget fit, where a change over the last k samples understates it. They depend on N and S only, never on
    the batch size, so an early stop gives the same map whatever the batching."""
    step = max(segments + 1, -(-samples // 20))
    return list(range(step, samples, step)) if tolerance > 0 else []


def coefficient_change(current: NDArray[np.float64], earlier: NDArray[np.float64]) -> float:
    """max over targets of ‖β_t − β′_t‖ / ‖β_t‖ for coefficients [T, S] (inf against an all-zero fit)."""
    norms = np.linalg.norm(current, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(norms > 0, np.linalg.norm(current - earlier, axis=1) / norms, np.inf)
    return float(ratios.max())


@register(
    "lime",
    family=Family.PERTURBATION,
    black_box=True,
    params=LimeParams,
    citation="Ribeiro, Singh & Guestrin, \"Why Should I Trust You?\": Explaining the Predictions of Any Classifier, KDD 2016",
)
def lime(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, params: LimeParams, *, rng
) -> Iterator[Event]:
    """Weighted ridge surrogate on random superpixel on/off samples; heat = each superpixel's coefficient.

    As the ``lime`` package's image explainer: SLIC superpixels; sample 0 all on, the others fair
    coin flips; weights √exp(−d²/w²) on the cosine distance d to all-on; ``Ridge(α)`` on each
    target's score with those sample weights. Passes: ``samples`` forward (sample 0 scores the
    image itself). Extras: ``r2``/``intercept`` (target 0) and ``r2[t]``/``intercept[t]``,
    ``segments`` (superpixels used), ``slic_seconds`` and ``samples_used`` (samples in the fit).
    Partial maps refit the samples so far.
    A linear model is fitted exactly (R² = 1): a superpixel's coefficient is Σ w ⊙ (x − baseline) over it.

    Time to quality (both off by default): ``sampling="quasi_random"`` draws the on/off vectors from a
    scrambled Sobol sequence (as RISE's quasi-random masks); ``convergence_tolerance`` τ > 0 refits at
    the :func:`convergence_checks` and stops at the first whose coefficients moved by less than τ since
    the fit of half as many samples (:func:`coefficient_change`; extra ``coefficient_change``, the last one measured).
    The passes then fall short of the plan (``samples``); the batch in flight at the stop is scored but
    not fitted, so ``forward`` can exceed ``samples_used`` by less than one batch.
    """
    (_, height, width), total = image.shape, params.samples
    yield Planned(forward=total)
    started = time.perf_counter()
    segments = sp.slic_segments(image, params.segments, params.compactness)
    slic_seconds = time.perf_counter() - started
    count = sp.segment_count(segments)
    on = sp.sample_on_off(rng, total, count, params.sampling)
    weights = exponential_kernel(sp.cosine_distance_to_all_on(on), params.kernel_width)
    baseline = sp.segment_mean(image, segments) if params.baseline == "segment_mean" else make_baseline(image, params.baseline)

    surrogate, unperturbed, fitted = WeightedRidge(count, objective.num_targets), None, 0
    checks, change, stopped = convergence_checks(total, count, params.convergence_tolerance), np.nan, False
    earlier: dict[int, NDArray[np.float64]] = {}  # check count → its coefficients
    values_of = model.perturbed_values(
        total, lambda start, stop: {"segments_on": on[start:stop].astype(np.float32)}, objective,
        source=sp.segment_masks(height, width), image=image, baseline=baseline, per_request={"segments": segments},
    )
    try:
        for start, stop, values in values_of:
            unperturbed = values[0] if start == 0 else unperturbed
            begin = start
            for end in [c for c in checks if start < c < stop] + [stop]:  # a check falls on its exact count
                surrogate.add(on[begin:end], values[begin - start : end - start], weights[begin:end])
                begin = end
                if end in checks:
                    fit, fitted = surrogate.fit(params.ridge_alpha), end
                    earlier[end] = fit.coef
                    if (half := end // checks[0] // 2 * checks[0]) in earlier:
                        change = coefficient_change(fit.coef, earlier[half])
                        if stopped := change < params.convergence_tolerance:
                            break
            # refit (O(S³)) when the samples grew by a quarter: often at first, when the map changes most
            if refit := stopped or stop == total or stop - fitted >= max(1, count // 4, fitted // 4):
                fit, fitted = (fit, fitted) if stopped else (surrogate.fit(params.ridge_alpha), stop)
            yield Progress(done=model.context.forward, total=total,
                           heatmaps=sp.paint(fit.coef, segments) if refit else None)
            if stopped:
                break
    finally:
        values_of.close()  # an early stop leaves the batched loop (and its feed thread) suspended
    extras = {"r2": float(fit.r2[0]), "intercept": float(fit.intercept[0]), "segments": float(count),
              "slic_seconds": slic_seconds, "bytes_per_sample": model.context.bytes_fed / model.context.forward,
              "samples_used": float(surrogate.count)}
    if checks:
        extras["coefficient_change"] = change
    for t in range(objective.num_targets):
        extras[f"r2[{t}]"], extras[f"intercept[{t}]"] = float(fit.r2[t]), float(fit.intercept[t])
    yield Explanation(heatmaps=sp.paint(fit.coef, segments), scores=unperturbed, forward=model.context.forward, extras=extras)
