"""Extremal perturbation (Fong, Patrick & Vedaldi 2019, [19] in the survey)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..events import Event, Explanation, Planned, Progress
from ..model import Evaluator
from ..objectives import Objective
from ..params import param
from ..perturb.baselines import blur
from ..perturb.extremal import Adam, SmoothMask, area_ones, ranking_penalty
from .mask_scores import MaskGradientParams, MaskScores
from .registry import Family, register

MODES = ("preservation", "deletion")
MASK_SMOOTHING = 1.0  # σ of the Gaussian on the parameter grid, in cells (see SmoothMask)
REGULARIZATION_GROWTH = 1000.0  # λ grows geometrically to 1000× regularization_weight over the run
FINAL_LEARNING_RATE = 0.1  # the step decays linearly to this fraction of learning_rate: the last iterate settles
STREAM_UPDATES = 20  # partial heatmaps streamed per run


@dataclass(frozen=True, kw_only=True)
class ExtremalPerturbationParams(MaskGradientParams):
    """Defaults: the paper's areas and TorchRay's mask step (7 px) and blur (σ_max 20 px ≈ 9% of 224,
    here 10% of the shorter side, the project's blur baseline).

    ``iterations`` 300, the low end of the paper's 300–800 (TorchRay: 800 SGD steps): Adam with
    normalised steps, a decaying step size and a regulariser schedule stretched over the run
    settles in 300 (on the bundled model 600 change the heatmap by 0.03 on average, correlation
    0.995, and the scores by under 3%); it costs 900 F+B for the three areas with exact gradients.
    ``learning_rate`` 0.05: the RMS step of a mask's parameters (they live in [0, 1]), so a
    parameter crosses its range in ~20 steps; it decays to 0.005 at the end. ``regularization_weight``
    30, growing 1000× to 30,000 (TorchRay: 300 growing 16×, on logits, as here): with these
    normalised steps and soft-edged masks, TorchRay's end weight leaves the masks up to ~25% over
    their areas, and its start weight lets the area term, not the score, place them when the
    gradient is estimated. λ is relative to the objective's scale (logits for logit models: an
    objective on probabilities may need a smaller one). ``directions`` 16: 32 forward passes a mask
    and step (28,800 for the default areas); on the bundled model 91% of the heat then falls on the
    cup (exact gradients: 86%), with 8 the largest mask spread onto the saucer (65%).
    """

    areas: tuple[float, ...] = param((0.05, 0.1, 0.2), low=0.0, high=1.0,
                                     doc="mask areas as fractions of the image, each in (0, 1); one mask each")
    mode: str = param("preservation", choices=MODES,
                      doc="preservation: keep the mask, blur the rest, maximise the score; deletion: blur the "
                          "mask, minimise the score")
    iterations: int = param(300, low=1, high=10000, doc="optimisation steps (all areas and targets at once)")
    learning_rate: float = param(0.05, low=1e-4, high=1.0,
                                 doc="Adam step size on the mask parameters (in [0, 1]); decays to 10% over the run")
    mask_step: int = param(7, low=1, high=256, doc="input pixels per mask parameter (the mask's smoothness)")
    blur_sigma: float = param(0.1, low=0.001, high=0.1,
                              doc="σ of the Gaussian blur of the perturbed region, fraction of the shorter side")
    regularization_weight: float = param(30.0, low=0.001, high=1e6,
                                         doc="initial weight λ of the area (ranking) regulariser, relative to "
                                             "the objective's scale; grows geometrically 1000x over the run")

    def check(self) -> None:
        for index, area in enumerate(self.areas):
            if not 0.0 < area < 1.0:
                self.fail(f"areas[{index}]", f"{area} is out of range; allowed: (0, 1), exclusive")


@register(
    "extremal_perturbation",
    family=Family.PERTURBATION,
    black_box=True,
    params=ExtremalPerturbationParams,
    citation="Fong, Patrick & Vedaldi, Understanding Deep Networks via Extremal Perturbations and Smooth Masks, "
             "ICCV 2019",
)
def extremal_perturbation(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, params: ExtremalPerturbationParams, *, rng
) -> Iterator[Event]:
    """Smooth masks of fixed areas that keep (preservation) or destroy (deletion) the score when
    the rest (the mask) is blurred.

    For each area a and target: parameters p [h, w] in [0, 1] (h = ⌈H/mask_step⌉) are smoothed on
    their grid (σ = 1 cell) into q, which the graph upsamples bilinearly to the mask m [H, W]; the
    model sees m⊙x + (1−m)⊙blur(x) (preservation) or (1−m)⊙x + m⊙blur(x) (deletion: q is fed as
    1 − q). Adam minimises −reward + λ·‖sort(m) − r_a‖²/N (the paper's eq. 5 area term, r_a: a
    fraction a of ones) with reward = score (preservation) or −score (deletion), λ growing
    geometrically, the step decaying, and p projected onto [0, 1] after each step (so m stays in
    [0, 1] without a squashing function whose flat ends would stall it). Adam keeps one second
    moment per mask, so its steps keep the gradient's spatial shape, and steps are taken per mask
    pixel a parameter reaches (border parameters reach more). All areas and targets are optimised
    together, as one batch.

    The score's gradient is exact — the gradient graph of (prefix ∘ model) with respect to q: one
    forward and one backward a mask and step, also for objectives not linear in the logits (their seed
    is computed in the graph, see :func:`~explainers.perturb.extremal.gradient_seed`) — or, black-box, estimated from
    ``directions`` antithetic pairs along multiscale Rademacher directions (2·directions forward
    passes a mask and step; see :func:`~explainers.perturb.extremal.multiscale_rademacher`). The
    area term's gradient is exact (numpy).

    Heatmap of a target: the sum of its masks over the areas (a pixel kept at every area scores
    len(areas)). Passes: iterations × areas × targets × (1 F + 1 B, 2 F + 1 B, or 2·directions F)
    + areas × targets (the final masks' scores) + 1 (the unperturbed score) forward. Differences
    from TorchRay: a smoothed-bilinear mask family instead of the smooth-max one, a blend with one
    blur level instead of a blur pyramid, Adam instead of SGD with momentum, no horizontal-flip
    jitter, and the λ schedule above.
    """
    _, height, width = image.shape
    smooth = SmoothMask.for_image(height, width, params.mask_step, MASK_SMOOTHING)
    source, baseline = smooth.source(), blur(image, params.blur_sigma)
    areas, targets = len(params.areas), objective.num_targets
    count = areas * targets  # sample s explains target s // areas at area s % areas
    target_of = np.repeat(np.arange(targets), areas)
    ones = area_ones(params.areas, height * width)[np.tile(np.arange(areas), targets)]
    deletion = params.mode == "deletion"

    scorer = MaskScores.create(model, objective, source, image, baseline, target_of, gradient=params.gradient,
                               directions=params.directions)
    forward_step, backward_step = scorer.passes_per_step()
    total = params.iterations * (forward_step + backward_step) + count + 1
    yield Planned(forward=params.iterations * forward_step + count + 1, backward=params.iterations * backward_step)

    def heatmaps(p: NDArray[np.float64]) -> NDArray[np.float32]:
        return smooth.masks(p).reshape(targets, areas, height, width).sum(axis=1).astype(np.float32)

    # per pixel reached, so that an even pressure (the area term at the start) moves every parameter
    # alike rather than the image's borders first (a diagonal preconditioner: still a descent direction)
    reach = smooth.reach
    p = np.ones((count, *smooth.low_shape))  # TorchRay's start: the full mask
    adam = Adam(p, params.learning_rate, shared_axes=(1, 2))  # one second moment per mask
    every = -(-params.iterations // STREAM_UPDATES)
    for step in range(params.iterations):
        low = smooth.low(p)
        fed = 1.0 - low if deletion else low
        grad_fed = scorer.gradients(fed, rng)
        # reward = score(q) (preservation) or −score(1 − q) (deletion): d reward / dq = d score / d fed either way
        _, penalty = ranking_penalty(smooth.masks(p).reshape(count, -1), ones)
        progress = step / max(1, params.iterations - 1)
        weight = params.regularization_weight * REGULARIZATION_GROWTH ** progress
        adam.learning_rate = params.learning_rate * (1.0 - (1.0 - FINAL_LEARNING_RATE) * progress)
        grad = smooth.pull_back_low(-grad_fed) + weight * smooth.pull_back(penalty.reshape(count, height, width))
        adam.step(grad / reach)
        if (step + 1) % every == 0 and step + 1 < params.iterations:
            yield Progress(done=(step + 1) * (forward_step + backward_step), total=total, heatmaps=heatmaps(p))

    final = scorer.values(1.0 - smooth.low(p) if deletion else smooth.low(p))
    scores = model.objective_value(image, objective)
    result = heatmaps(p)
    yield Progress(done=total, total=total, heatmaps=result)
    extras = {"exact_gradient": float(scorer.exact), "iterations": float(params.iterations)}
    achieved = smooth.masks(p).mean(axis=(1, 2))
    for s in range(count):
        key = f"a={params.areas[s % areas]:g}" + (f",t={s // areas}" if targets > 1 else "")
        extras[f"score[{key}]"], extras[f"area[{key}]"] = float(final[s]), float(achieved[s])
    yield Explanation(heatmaps=result, scores=scores, forward=model.context.forward, backward=model.context.backward,
                      extras=extras)
