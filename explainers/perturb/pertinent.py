"""The two problems of CEM (Dhurandhar et al. 2018, [11] in the survey): the hinge on the class
margin, and how an optimisation variable becomes an image.

A *row* is one problem: a pertinent negative (PN) or a pertinent positive (PP) of one class t.
With f the logits (the scores a gradient graph differentiates), j* = argmax_{i≠t} f_i (or the
contrast class Q when one is given) and σ = +1 for a PN, −1 for a PP, the paper's losses
(eq. 1 and eq. 3 with κ ≥ 0) are both

    hinge(z) = max(0, σ · (f_t(z) − f_j*(z)) + κ),

zero once the PN image x + δ is classified away from t by a margin κ (σ = +1), or the PP image
keeps t ahead by κ (σ = −1). A row's variable u [d] becomes its image through
:class:`Coordinates`: pixel by pixel for gradients (u = δ), or one coefficient per SLIC superpixel
for finite differences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

TINY = 1e-38
"""Probabilities are clipped here before their logarithm (log 0 would make a margin infinite)."""


def margin_scores(outputs: NDArray[np.floating], cut: str | None) -> NDArray[np.float64]:
    """Model outputs [n, K] → the logits the hinge compares, [n, K] float64.

    ``cut``: the final activation a gradient graph differentiates behind (``Softmax``/``Sigmoid``)
    or ``None``. Behind a Softmax, log p = f − logsumexp(f) differs from the logits by one constant
    per row, so every margin f_t − f_j is exact; behind a Sigmoid, log(p / (1 − p)) are the logits.
    """
    y = np.asarray(outputs, np.float64)
    if cut == "Softmax":
        return np.log(np.maximum(y, TINY))
    if cut == "Sigmoid":
        return np.log(np.maximum(y, TINY)) - np.log(np.maximum(1.0 - y, TINY))
    return y


@dataclass(frozen=True)
class Hinge:
    """Rows' hinges (see the module doc). ``classes`` t [R], ``contrast`` Q [R] (−1: the
    runner-up), ``sign`` σ [R] (+1 PN, −1 PP), ``kappa`` κ ≥ 0."""

    classes: NDArray[np.int64]
    contrast: NDArray[np.int64]
    sign: NDArray[np.float64]
    kappa: float

    def take(self, rows: NDArray[np.integer]) -> Hinge:
        """The hinges of ``rows`` (repeats allowed: one per probe of a row)."""
        return Hinge(self.classes[rows], self.contrast[rows], self.sign[rows], self.kappa)

    def runner_up(self, scores: NDArray[np.floating]) -> NDArray[np.int64]:
        """j* [R]: the contrast class, or the best class other than t, for scores [R, K]."""
        others = np.array(scores, np.float64)
        others[np.arange(len(others)), self.classes] = -np.inf
        return np.where(self.contrast >= 0, self.contrast, others.argmax(axis=1))

    def margin(self, scores: NDArray[np.floating]) -> NDArray[np.float64]:
        """f_t − f_j* [R] (positive: t ahead)."""
        rows = np.arange(len(scores))
        return scores[rows, self.classes] - scores[rows, self.runner_up(scores)]

    def loss(self, scores: NDArray[np.floating]) -> NDArray[np.float64]:
        """max(0, σ (f_t − f_j*) + κ) [R]."""
        return np.maximum(0.0, self.sign * self.margin(scores) + self.kappa)

    def reached(self, scores: NDArray[np.floating]) -> NDArray[np.bool_]:
        """Whether each row's goal is met [R]: hinge 0, and strictly (a tie at κ = 0 is no flip)."""
        signed = self.sign * self.margin(scores)
        return (signed + self.kappa <= 0.0) & (signed < 0.0)

    def seeds(self, runner_up: NDArray[np.integer], classes: int) -> NDArray[np.float32]:
        """Gradient-graph seeds σ (e_t − e_j) [R, classes]: the input gradient is ∇ σ (f_t − f_j)."""
        rows = np.arange(len(runner_up))
        seeds = np.zeros((len(runner_up), classes), np.float32)
        seeds[rows, self.classes] = self.sign
        seeds[rows, runner_up] -= self.sign
        return seeds


@dataclass(frozen=True)
class Coordinates:
    """How row r's variable u [d] becomes its image: ``base[r] + δ(u)``, with bounds and weights.

    Pixels (``segments`` None): d = C·H·W and δ = u. Superpixels: d = S, one coefficient per
    superpixel s moving its pixels along ``direction[r]`` [C, H, W]: δ = u_s · direction on s,
    u ∈ [0, 1]. In both, with u ≥ 0 or pixels, ‖δ‖₁ = Σ l1_weights |u| and ‖δ‖₂² = Σ metric u²
    exactly (superpixels are disjoint: l1_weights_s = Σ_s |direction|, metric_s = Σ_s direction²),
    so the elastic net is computed, and FISTA preconditioned (:class:`~.fista.Fista`), in u.
    """

    base: NDArray[np.float32]
    lower: NDArray[np.float64]
    upper: NDArray[np.float64]
    l1_weights: NDArray[np.float64] | float = 1.0
    metric: NDArray[np.float64] | float = 1.0
    segments: NDArray[np.int64] | None = None
    direction: NDArray[np.float32] | None = None

    @classmethod
    def pixels(cls, base: NDArray, lower: NDArray, upper: NDArray) -> Coordinates:
        """δ = u per pixel, ``lower ≤ δ ≤ upper`` (all [R, C, H, W])."""
        rows = len(base)
        return cls(np.asarray(base, np.float32), np.asarray(lower, np.float64).reshape(rows, -1),
                   np.asarray(upper, np.float64).reshape(rows, -1))

    @classmethod
    def superpixels(cls, base: NDArray, direction: NDArray, segments: NDArray[np.int64]) -> Coordinates:
        """δ = u_s · ``direction`` on superpixel s, u ∈ [0, 1]; a superpixel along which nothing can move
        (direction 0 on all its pixels) is pinned at 0."""
        rows, count = len(base), int(segments.max()) + 1
        flat = segments.ravel()

        def per_segment(values: NDArray) -> NDArray[np.float64]:  # [R, C, H, W] → sums over each superpixel [R, S]
            summed = values.sum(axis=1).reshape(rows, -1)
            return np.stack([np.bincount(flat, weights=row, minlength=count) for row in summed])

        l1, l2 = per_segment(np.abs(direction)), per_segment(np.square(direction, dtype=np.float64))
        movable = l2 > 0
        return cls(np.asarray(base, np.float32), np.zeros((rows, count)), movable.astype(np.float64),
                   np.where(movable, l1, 1.0), np.where(movable, l2, 1.0), segments,
                   np.asarray(direction, np.float32))

    def deltas(self, u: NDArray[np.floating], rows: NDArray[np.integer]) -> NDArray[np.float32]:
        """δ [n, C, H, W] of variables ``u`` [n, d] of ``rows`` [n]."""
        shape = (len(u), *self.base.shape[1:])
        if self.segments is None:
            return np.asarray(u, np.float32).reshape(shape)
        return (self.direction[rows] * np.asarray(u, np.float32)[:, self.segments][:, None]).astype(np.float32)

    def images(self, u: NDArray[np.floating], rows: NDArray[np.integer]) -> NDArray[np.float32]:
        """``base[rows] + δ(u)`` [n, C, H, W]."""
        return self.base[rows] + self.deltas(u, rows)

    def elastic_net(self, u: NDArray[np.floating], beta: float) -> tuple[NDArray, NDArray, NDArray]:
        """(β‖δ‖₁ + ‖δ‖₂², ‖δ‖₁, ‖δ‖₂) per row of ``u`` [R, d]."""
        l1 = (self.l1_weights * np.abs(u)).sum(axis=1)
        squared = (self.metric * np.square(u)).sum(axis=1)
        return beta * l1 + squared, l1, np.sqrt(squared)

    def l2_gradient(self, u: NDArray[np.floating]) -> NDArray[np.float64]:
        """∇_u ‖δ‖₂² [R, d]."""
        return 2.0 * self.metric * u

    def to_variables(self, gradient: NDArray[np.floating]) -> NDArray[np.float64]:
        """A gradient with respect to the image [R, C, H, W] → with respect to u [R, d] (pixels only)."""
        return np.asarray(gradient, np.float64).reshape(len(gradient), -1)


NO_UPPER_BOUND = 1e10
"""The c search's upper bound before any run met the goal."""


class ConstantSearch:
    """The search over the hinge's weight c, per problem, with ``count`` values tried at once.

    The authors' rule (one value a step): after a run that met the goal, c_high ← c and c moves to
    the midpoint of (c_low, c_high); after one that did not, c_low ← c and c grows 10× while no run
    has met it, else moves to the midpoint. With ``count`` = K values a step (one batch through the
    model): before any success c₀·10^k, k < K (K growth steps at once); after, the K points that
    split (c_low, c_high) evenly (K = 1: the midpoint). ``values`` is [problems, K].
    """

    def __init__(self, problems: int, count: int, initial: float):
        self.count = count
        self.low, self.high = np.zeros(problems), np.full(problems, NO_UPPER_BOUND)
        self.next_growth = np.full(problems, initial)

    @property
    def values(self) -> NDArray[np.float64]:
        k = np.arange(self.count)
        growing = self.high >= NO_UPPER_BOUND
        inside = self.low[:, None] + (self.high - self.low)[:, None] * (k + 1) / (self.count + 1)
        return np.where(growing[:, None], self.next_growth[:, None] * 10.0 ** k, inside)

    def update(self, values: NDArray[np.floating], met: NDArray[np.bool_]) -> None:
        """After a step that tried ``values`` [problems, K], of which ``met`` [problems, K] met the goal."""
        self.high = np.minimum(self.high, np.where(met, values, np.inf).min(axis=1))
        failed_below = np.where(~met & (values < self.high[:, None]), values, -np.inf).max(axis=1)
        self.low = np.maximum(self.low, failed_below)
        self.next_growth = values.max(axis=1) * 10.0
