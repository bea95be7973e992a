"""Meaningful perturbation (Fong & Vedaldi 2017, [20] in the survey): the deletion game."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from ..events import Event, Explanation, Planned, Progress
from ..model import Evaluator
from ..objectives import Objective
from ..params import param
from ..perturb.baselines import blur
from ..perturb.extremal import Adam, SmoothMask
from .mask_scores import MaskGradientParams, MaskScores
from .registry import Family, register

SCORES = ("probability", "objective")
STREAM_UPDATES = 20  # partial heatmaps streamed per run
REFERENCE_PIXELS = 224 * 224  # the regularisers are sums over a mask of this many pixels (the paper's input)
INITIAL_MASK = 0.5


def total_variation(masks: NDArray[np.floating], beta: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The paper's TV_β (eq. 4, anisotropic differences) of each mask [n, h, w] and its gradient:
    ``Σ_{i,j} |m[i+1, j] − m[i, j]|^β + |m[i, j+1] − m[i, j]|^β`` → (values [n], gradients [n, h, w]).
    (β ≥ 1: the gradient β|d|^(β−1) sign(d) of each difference d is defined everywhere.)"""
    masks = np.asarray(masks, np.float64)
    values = np.zeros(len(masks))
    grads = np.zeros(masks.shape)
    for axis in (1, 2):
        d = np.diff(masks, axis=axis)
        values += (np.abs(d) ** beta).sum(axis=(1, 2))
        slope = beta * np.abs(d) ** (beta - 1) * np.sign(d)  # d|d|^β / dd; d = m[k + 1] − m[k]
        lead = [slice(None)] * 3
        lead[axis] = slice(1, None)
        grads[tuple(lead)] += slope
        lead[axis] = slice(None, -1)
        grads[tuple(lead)] -= slope
    return values, grads


def shifted(image: NDArray[np.float32], dy: int, dx: int) -> NDArray[np.float32]:
    """``image`` [C, H, W] translated by (dy, dx) pixels, the edges replicated into the gap."""
    _, height, width = image.shape
    pad = max(abs(dy), abs(dx))
    padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    return np.ascontiguousarray(padded[:, pad - dy:pad - dy + height, pad - dx:pad - dx + width])


@dataclass(frozen=True, kw_only=True)
class MeaningfulPerturbationParams(MaskGradientParams):
    """Defaults: the paper's (§4): a 28×28 mask for a 224 input (``mask_step`` 8), λ₁ = 1e-4, λ₂ = 1e-2, β = 3,
    a Gaussian blur of σ 10 px at 224 (0.045 of the shorter side), jitter of up to 4 px, 300 Adam steps of
    learning rate 0.1, and f_c the softmax probability of the class. The λ are read as weights of sums over
    the 224×224 upsampled mask (our reading: with sums over the 28×28 cells the TV term, 100× λ₁, spreads
    every deletion into a ramp ~7 cells wide; the authors' PyTorch port instead takes means with
    λ₁ = 1e-2, λ₂ = 1e-4). On the bundled model 300 steps delete 9% of coffee and take espresso from 0.96
    to 0.06 (bench/contrast_mp.py); 40 steps already put 88% of the deletion on the cup."""

    iterations: int = param(300, low=1, high=10000, doc="Adam steps (all targets at once)")
    learning_rate: float = param(0.1, low=1e-4, high=1.0, doc="Adam step size on the mask (in [0, 1])")
    mask_step: int = param(8, low=1, high=256, doc="input pixels per mask cell (28x28 cells for 224 pixels)")
    blur_sigma: float = param(0.045, low=0.001, high=0.1,
                              doc="σ of the Gaussian blur that replaces deleted pixels, fraction of the shorter side")
    l1_weight: float = param(1e-4, low=0.0, high=1e3, doc="λ₁ of λ₁‖1 − m‖₁, per pixel of a 224x224 mask (deleted area)")
    tv_weight: float = param(1e-2, low=0.0, high=1e3, doc="λ₂ of λ₂ TV_β(m), per pixel of a 224x224 mask (smoothness)")
    tv_beta: float = param(3.0, low=1.0, high=8.0, doc="β of the total variation: larger β tolerates small steps")
    jitter: int = param(4, low=0, high=64, doc="largest random shift (pixels) of the image under the mask, per step")
    score: str = param("probability", choices=SCORES,
                       doc="probability: f_c on softmax probabilities, as in the paper (applied on logit models; "
                           "a cross-entropy contrast stays as is); objective: the target exactly as requested")


def game_objective(objective: Objective, score: str) -> Objective:
    """The objective the game minimises: the request's, on probabilities for ``score="probability"``
    (a cross-entropy objective is a log-probability already)."""
    if score == "objective" or objective.cross_entropy:
        return objective
    return replace(objective, space="probability")


@register(
    "meaningful_perturbation",
    family=Family.PERTURBATION,
    black_box=True,
    params=MeaningfulPerturbationParams,
    citation="Fong & Vedaldi, Interpretable Explanations of Black Boxes by Meaningful Perturbation, ICCV 2017",
)
def meaningful_perturbation(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, params: MeaningfulPerturbationParams, *, rng
) -> Iterator[Event]:
    """The deletion game: the smallest, smoothest blur region that destroys the score; heatmap 1 − m.

    Fong & Vedaldi 2017, eq. 3–4: ``min_m λ₁‖1 − m‖₁ + λ₂ TV_β(m) + f_c(Φ(x; m))`` with
    ``Φ(x; m) = m ⊙ x + (1 − m) ⊙ blur(x)`` (m = 1 keeps a pixel, m = 0 replaces it by the blurred image),
    ``f_c`` the target's score (softmax probability by default, ``params.score``). The mask m [H, W] is a
    low-resolution m₀ [h, w] (h = ⌈H / mask_step⌉) upsampled bilinearly in the graph; L1 and TV are
    sums over the upsampled mask, rescaled by 224²/(H·W) to a 224×224 one; Adam starts from m₀ = 0.5, as the authors' PyTorch port (from m₀ = 1 a confident class's
    saturated softmax gives gradients below λ₁ and nothing moves); each step the image and its blur are
    shifted together by up to ``jitter`` pixels under the fixed
    mask (the paper's jitter: a mask must not rely on pixel-exact placement, which defeats adversarial
    speckle); Adam (per coordinate, as published), projected onto [0, 1] after each step. One
    mask per target, optimised together as one batch.

    The score's gradient with respect to m₀ is exact — the gradient graph of (prefix ∘ model), one
    forward and one backward a mask and step (the softmax probability's seed is computed in the graph,
    see :func:`~explainers.perturb.extremal.gradient_seed`) — or, black-box, estimated from ``directions``
    antithetic pairs (2·directions forwards a mask and step); the machinery is extremal perturbation's
    (:mod:`~explainers.methods.mask_scores`). The regularisers' gradients are exact (numpy).

    Heatmap of a target: the deletion mask ``1 − m`` upsampled to [H, W] — the evidence is what had to
    be deleted (blurred) to destroy the score; in [0, 1]. Extras: ``score_deleted`` (f_c, in the game's
    space, of the image with the final mask's region deleted), ``deleted_area`` (mean of 1 − m), ``exact_gradient``,
    ``iterations`` (per target ``name[t]`` too when there are several). Passes: iterations × targets ×
    (1 F + 1 B, 2 F + 1 B, or 2·directions F) + targets (the final masks' scores) + 1 (the unperturbed
    score) forward. Differences from the paper: a blend with one blur level (the paper's Φ is one blur
    too), the score space chosen by ``score``, no noise perturbation.
    """
    _, height, width = image.shape
    targets = objective.num_targets
    game = game_objective(objective, params.score)
    mask = SmoothMask.for_image(height, width, params.mask_step)  # no smoothing of the cells: TV does that here
    source, baseline = mask.source(), blur(image, params.blur_sigma)
    scorer = MaskScores.create(model, game, source, image, baseline, np.arange(targets), gradient=params.gradient,
                               directions=params.directions)
    forward_step, backward_step = scorer.passes_per_step()
    total = params.iterations * (forward_step + backward_step) + targets + 1
    yield Planned(forward=params.iterations * forward_step + targets + 1, backward=params.iterations * backward_step)

    def heatmaps(kept: NDArray[np.float64]) -> NDArray[np.float32]:
        return (1.0 - mask.masks(kept)).astype(np.float32)

    scale = REFERENCE_PIXELS / (height * width)  # the paper's λ are per pixel of a 224×224 mask
    kept = np.full((targets, *mask.low_shape), INITIAL_MASK)
    adam = Adam(kept, params.learning_rate)
    every = -(-params.iterations // STREAM_UPDATES)
    for step in range(params.iterations):
        dy, dx = rng.integers(-params.jitter, params.jitter + 1, size=2) if params.jitter else (0, 0)
        jittered = scorer.moved(shifted(image, int(dy), int(dx)), shifted(baseline, int(dy), int(dx)))
        grad_score = mask.pull_back_low(jittered.gradients(mask.low(kept), rng))
        _, grad_tv = total_variation(mask.masks(kept), params.tv_beta)
        # d/dm of λ₁ Σ|1 − m| is −λ₁ on [0, 1] (the projection keeps m ≤ 1)
        adam.step(grad_score + scale * mask.pull_back(params.tv_weight * grad_tv - params.l1_weight))
        if (step + 1) % every == 0 and step + 1 < params.iterations:
            yield Progress(done=(step + 1) * (forward_step + backward_step), total=total, heatmaps=heatmaps(kept))

    deleted_score = scorer.values(mask.low(kept))
    scores = model.objective_value(image, objective)
    result = heatmaps(kept)
    yield Progress(done=total, total=total, heatmaps=result)
    areas = result.mean(axis=(1, 2))
    extras = {"exact_gradient": float(scorer.exact), "iterations": float(params.iterations),
              "score_deleted": float(deleted_score[0]), "deleted_area": float(areas[0])}
    if targets > 1:
        for t in range(targets):
            extras[f"score_deleted[{t}]"], extras[f"deleted_area[{t}]"] = float(deleted_score[t]), float(areas[t])
    yield Explanation(heatmaps=result, scores=scores, forward=model.context.forward, backward=model.context.backward,
                      extras=extras)
