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
    ``segments`` (superpixels used) and ``slic_seconds``. Partial maps refit the samples so far.
    A linear model is fitted exactly (R² = 1): a superpixel's coefficient is Σ w ⊙ (x − baseline) over it.
    """
    (_, height, width), total = image.shape, params.samples
    yield Planned(forward=total)
    started = time.perf_counter()
    segments = sp.slic_segments(image, params.segments, params.compactness)
    slic_seconds = time.perf_counter() - started
    count = sp.segment_count(segments)
    on = sp.sample_on_off(rng, total, count)
    weights = exponential_kernel(sp.cosine_distance_to_all_on(on), params.kernel_width)
    baseline = sp.segment_mean(image, segments) if params.baseline == "segment_mean" else make_baseline(image, params.baseline)

    surrogate, unperturbed, fitted = WeightedRidge(count, objective.num_targets), None, 0
    values_of = model.perturbed_values(
        total, lambda start, stop: {"segments_on": on[start:stop].astype(np.float32)}, objective,
        source=sp.segment_masks(height, width), image=image, baseline=baseline, per_request={"segments": segments},
    )
    for start, stop, values in values_of:
        unperturbed = values[0] if start == 0 else unperturbed
        surrogate.add(on[start:stop], values, weights[start:stop])
        # refit (O(S³)) when the samples grew by a quarter: often at first, when the map changes most
        if refit := stop == total or stop - fitted >= max(1, count // 4, fitted // 4):
            fit, fitted = surrogate.fit(params.ridge_alpha), stop
        yield Progress(done=stop, total=total, heatmaps=sp.paint(fit.coef, segments) if refit else None)
    extras = {"r2": float(fit.r2[0]), "intercept": float(fit.intercept[0]), "segments": float(count),
              "slic_seconds": slic_seconds, "bytes_per_sample": model.context.bytes_fed / total}
    for t in range(objective.num_targets):
        extras[f"r2[{t}]"], extras[f"intercept[{t}]"] = float(fit.r2[t]), float(fit.intercept[t])
    yield Explanation(heatmaps=sp.paint(fit.coef, segments), scores=unperturbed, forward=model.context.forward, extras=extras)
