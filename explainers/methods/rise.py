"""RISE: Randomized Input Sampling for Explanation (Petsiuk et al. 2018, [44] in the survey)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..events import Event, Explanation, Planned, Progress
from ..model import Evaluator
from ..objectives import Objective
from ..params import MethodParams, param
from ..perturb.baselines import BASELINES, make_baseline
from ..perturb.masks.grid import SAMPLINGS, GridMaskSum, GridSampler, GridTables, LastTenPercent
from .registry import Family, register

PARTIAL_MAPS = 100
"""Most partial heatmaps streamed per run (one per chunk when chunks hold ≥ 1% of the masks)."""


@dataclass(frozen=True, kw_only=True)
class RiseParams(MethodParams):
    masks: int = param(4000, low=1, high=100000, doc="number of random masks N (upper bound with a tolerance)")
    grid: int = param(7, low=2, high=64, doc="cells per side s of each random grid")
    keep_probability: float = param(0.5, low=0.01, high=0.99, doc="probability p that a grid cell is kept")
    sampling: str = param("random", choices=SAMPLINGS,
                          doc="random: independent cells (the paper); quasi_random: scrambled Sobol sequence")
    convergence_tolerance: float = param(
        0.0, low=0.0, high=1.0,
        doc="stop once the map moved less than this (relative L2) over the last 10% of masks; 0 = use all")
    baseline: str = param("zero", choices=BASELINES, doc="what masked-out pixels become")


@register(
    "rise",
    family=Family.PERTURBATION,
    black_box=True,
    params=RiseParams,
    citation="Petsiuk, Das & Saenko, RISE: Randomized Input Sampling for Explanation of Black-box Models, "
             "BMVC 2018",
)
def rise(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, params: RiseParams, *, rng
) -> Iterator[Event]:
    """Score-weighted average of random smooth masks: S = Σᵢ f(x ⊙ Mᵢ + b ⊙ (1 − Mᵢ)) · Mᵢ / (N · p).

    Eq. (6) of the paper: the Monte-Carlo estimate of S(λ) = E[f(I ⊙ M) · M(λ)] / E[M(λ)], with
    E[M(λ)] = p. Mask i is a binary s×s grid Gᵢ (cells kept with probability p), upsampled
    bilinearly to (s + 1)·cell (cell = ⌈H/s⌉) and cropped at a uniform random shift (dy, dx) ∈
    [0, cell)²: ``Mᵢ = A[dy] · Gᵢ · B[dx]``, built inside the graph from s² + 2 numbers per sample;
    the same tables aggregate the map exactly without full-resolution masks
    (:mod:`explainers.perturb.masks.grid`). ``b`` is the baseline (zero: the paper's x ⊙ M).

    Passes: N + 1 forward (the extra one scores the unmasked image), fewer with a convergence
    tolerance. Partial maps stream as chunks finish, at most one per 1% of the masks. Extras: ``masks_used``,
    ``last_10pct_change`` = ‖S_N − S_⌊0.9N⌋‖ / ‖S_N‖ (for an early stop: against the map at 90% of
    the masks used), ``bytes_per_sample`` fed to onnxruntime.
    """
    _, height, width = image.shape
    tables = GridTables.build(height, width, params.grid)
    sampler = GridSampler(params.masks, params.grid, params.keep_probability, tables.cells, params.sampling, rng)
    total = params.masks + 1
    yield Planned(forward=total)

    scores = model.objective_value(image, objective)
    fed_before, evaluated_before = model.context.bytes_fed, model.context.forward
    aggregate = GridMaskSum(tables, objective.num_targets, params.keep_probability)
    watch = LastTenPercent(params.masks, params.convergence_tolerance)
    values_of = model.perturbed_values(
        params.masks, sampler.feed, objective, source=tables.mask_source(), image=image,
        baseline=make_baseline(image, params.baseline),
    )
    stopped, rendered = False, 0
    try:
        for start, stop, values in values_of:
            grids, shifts = sampler.take(start, stop)
            begin = start
            for end in watch.split(start, stop):  # stop exactly at a checkpoint, whatever the batching
                aggregate.add(grids[begin - start : end - start], shifts[begin - start : end - start],
                              values[begin - start : end - start])
                begin = end
                if stopped := watch.observe(end, aggregate):
                    break
            sampler.release(stop)
            # a partial map every ≥1% of the masks: rendering costs two [H, ·]·[·, W] products, cheap but
            # not free, and a client cannot use 250 maps a second (the server throttles them by time anyway)
            if stopped or stop == params.masks or aggregate.count >= rendered + params.masks / PARTIAL_MAPS:
                rendered = aggregate.count
                heatmaps = aggregate.render().astype(np.float32)
            else:
                heatmaps = None
            yield Progress(done=model.context.forward, total=total, heatmaps=heatmaps)
            if stopped:
                break
    finally:
        values_of.close()  # an early stop leaves the batched loop (and its feed thread) suspended
    yield Explanation(
        heatmaps=aggregate.render().astype(np.float32), scores=scores, forward=model.context.forward,
        extras={"masks_used": float(aggregate.count), "last_10pct_change": watch.change,
                "bytes_per_sample": (model.context.bytes_fed - fed_before)
                / max(model.context.forward - evaluated_before, 1)},
    )
