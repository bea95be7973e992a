"""Parts of extremal perturbation (Fong, Patrick & Vedaldi, ICCV 2019, [19] in the survey).

Small, model-free pieces, each usable on its own:

* :class:`SmoothMask` — the mask family: low-resolution parameters ``p`` [n, h, w], smoothed on
  their grid and upsampled bilinearly to masks ``m = R G_r p G_cᵀ Cᵀ`` [n, H, W] (R, C: the
  matrices of the graph prefix :func:`~explainers.perturb.masks.upsampled.upsampled_masks`), and the
  pull-back of a mask gradient to the parameters, ``∂/∂p = G_rᵀ Rᵀ (∂/∂m) C G_c``.
* :func:`area_ones` and :func:`ranking_penalty` — the area constraint of the paper (eq. 5):
  ``‖sort(m) − r_a‖² / N`` with ``r_a`` the sorted mask of area ``a`` (``(1 − a)·N`` zeros, then ones).
* :class:`Adam` — Kingma & Ba 2015, projected onto the box [0, 1] after each step, optionally
  with one second moment per mask.
* :func:`antithetic_gradient` — a black-box gradient estimate from ``2K`` evaluations along
  ``K`` random directions ± (SPSA-style central differences, Spall 1992), and
  :func:`multiscale_rademacher`, directions on coarse grids that trade resolution for variance.
* :func:`gradient_seed` — what a gradient graph seeded with the objective's rows differentiates, such
  that it returns the gradient of the objective as the black-box path evaluates it.
* the perturbation the masks blend towards is :func:`~explainers.perturb.baselines.blur` (perturb/baselines.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from ..graph.perturbation import MaskSource
from ..objectives import Objective
from .masks.bilinear import bilinear_matrix
from .masks.upsampled import upsampled_masks


def gaussian_matrix(size: int, sigma: float) -> NDArray[np.float64]:
    """[size, size] Gaussian smoothing (σ in samples, truncated at 3σ), each row normalised to sum 1
    so that constants are kept and values in [0, 1] stay there; the identity when σ = 0."""
    if sigma <= 0:
        return np.eye(size)
    offsets = np.arange(size)[:, None] - np.arange(size)[None, :]
    weights = np.exp(-0.5 * (offsets / sigma) ** 2) * (np.abs(offsets) <= 3 * sigma)
    return weights / weights.sum(axis=1, keepdims=True)


def sandwich(left: sparse.csr_matrix, values: NDArray[np.floating], right: sparse.csr_matrix) -> NDArray[np.float64]:
    """``left @ values[i] @ right`` for every i of ``values`` [n, a, b], with sparse ``left`` [A, a]
    and ``right`` [b, B]: two sparse products over the whole batch. (Dense BLAS would do for these
    sizes, but a multithreaded BLAS next to onnxruntime's threads slows 1 ms products 20–40×.)"""
    n, a, b = values.shape
    stacked = left @ values.transpose(1, 0, 2).reshape(a, n * b)  # [A, n·b]
    stacked = stacked.reshape(left.shape[0], n, b).transpose(1, 0, 2).reshape(n * left.shape[0], b)
    return (right.T @ stacked.T).T.reshape(n, left.shape[0], right.shape[1])


@dataclass(frozen=True)
class SmoothMask:
    """The mask family: parameters p [n, h, w] → low-resolution masks q = G_r p G_cᵀ (a Gaussian
    smoothing of the parameter grid, σ in parameter cells) → masks m = R q Cᵀ [n, H, W] (bilinear
    upsampling, done in the graph by :meth:`source`; q is what is fed).

    ``h = ⌈H / step⌉``. Every matrix has rows of non-negative weights summing to 1, so parameters
    in [0, 1] give masks in [0, 1] and a constant parameter map the same constant mask (deletion
    feeds ``1 − q``). The smoothing plays the part of the paper's smooth-max kernel (σ = 3 steps in
    TorchRay): a mask cannot hold details finer than about σ·step pixels, so the optimiser cannot
    build an adversarial speckle of single parameters. Matrices are sparse (2 or ~6σ non-zeros a row).
    """

    rows: sparse.csr_matrix  # R [H, h]
    cols: sparse.csr_matrix  # C [W, w]
    smooth_rows: sparse.csr_matrix  # G_r [h, h]
    smooth_cols: sparse.csr_matrix  # G_c [w, w]

    @classmethod
    def for_image(cls, height: int, width: int, step: int, sigma: float = 0.0) -> SmoothMask:
        low = (-(-height // step), -(-width // step))
        return cls(*(sparse.csr_matrix(m) for m in (bilinear_matrix(low[0], height), bilinear_matrix(low[1], width),
                                                     gaussian_matrix(low[0], sigma), gaussian_matrix(low[1], sigma))))

    @property
    def low_shape(self) -> tuple[int, int]:
        return self.rows.shape[1], self.cols.shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.shape[0], self.cols.shape[0]

    def source(self) -> MaskSource:
        """The graph prefix taking ``low_masks`` q [n, 1, h, w]."""
        return upsampled_masks(*self.shape, *self.low_shape, normalise=False)  # the same matrices as self.rows/cols

    def low(self, params: NDArray[np.floating]) -> NDArray[np.float64]:
        """Parameters p [n, h, w] → what the graph is fed, q [n, h, w]."""
        return sandwich(self.smooth_rows, params, self.smooth_cols.T.tocsr())

    def masks(self, params: NDArray[np.floating]) -> NDArray[np.float64]:
        """Parameters p [n, h, w] → masks m [n, H, W]."""
        return sandwich(self.rows, self.low(params), self.cols.T.tocsr())

    @property
    def reach(self) -> NDArray[np.float64]:
        """[h, w]: how many mask pixels each parameter moves, ``pull_back(1)``. Border parameters
        reach more pixels than interior ones (bilinear edges are clamped)."""
        return self.pull_back(np.ones((1, *self.shape)))[0]

    def pull_back_low(self, grads: NDArray[np.floating]) -> NDArray[np.float64]:
        """Gradient with respect to q [n, h, w] → with respect to p [n, h, w]."""
        return sandwich(self.smooth_rows.T.tocsr(), grads, self.smooth_cols)

    def pull_back(self, grads: NDArray[np.floating]) -> NDArray[np.float64]:
        """Gradient with respect to the masks m [n, H, W] → with respect to p [n, h, w]."""
        return self.pull_back_low(sandwich(self.rows.T.tocsr(), grads, self.cols))


TIE_TOLERANCE = 1e-9
"""Sorted mask values closer than this are tied in :func:`ranking_penalty` (a constant map passed
through the smoothing and upsampling matrices differs from itself by rounding only)."""


def area_ones(areas: tuple[float, ...] | list[float], size: int) -> NDArray[np.int64]:
    """Ones in the reference vector ``r_a`` of each area: round(a·size) (the rest are zeros)."""
    return np.array([int(round(area * size)) for area in areas], np.int64)


def ranking_penalty(masks: NDArray[np.floating], ones: NDArray[np.integer]
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The area regulariser ``‖sort(m) − r‖² / N`` per row and its gradient with respect to ``m``.

    Args:
        masks: [n, N] flattened masks. ones: [n] ones in each row's reference ``r`` (sorted
            ascending: ``N − ones`` zeros, then ones).

    Returns:
        ``(values [n], gradients [n, N])``. With a binary reference, pixels above the
        ``ones``-th largest value t pair with a one and those below with a zero. Pixels tied with
        t (a run of sorted values with gaps under :data:`TIE_TOLERANCE`) share the ones left over
        equally: the penalty is symmetric in tied values, so this is its symmetric subgradient. A
        uniform mask (the start) is then pushed uniformly; breaking the tie by sort order or by
        rounding noise instead would hand the mask to arbitrary pixels, and normalised (Adam)
        steps would amplify that O(1/N) difference into full steps.
    """
    size = masks.shape[1]
    values = np.empty(len(masks))
    grads = np.empty(masks.shape)
    for row, (mask, k) in enumerate(zip(masks.astype(np.float64, copy=False), ones.tolist())):
        k = min(max(k, 0), size)
        ordered = np.sort(mask)
        top_sum = ordered[size - k:].sum()
        if k in (0, size):
            reference = np.full(size, float(k == size))
        else:
            gaps = np.diff(ordered) >= TIE_TOLERANCE  # gaps[i]: a break between ordered[i] and ordered[i + 1]
            at = size - k  # rank of the smallest value paired with a one
            low = at - int(np.argmax(gaps[:at][::-1])) if gaps[:at].any() else 0
            high = at + int(np.argmax(gaps[at:])) if gaps[at:].any() else size - 1
            above, tied = mask > ordered[high], mask >= ordered[low]
            tied &= ~above
            left = k - np.count_nonzero(above)  # ones paired with the tied values
            reference = above + tied * (left / np.count_nonzero(tied))
        values[row] = (np.dot(mask, mask) - 2.0 * top_sum + k) / size
        grads[row] = 2.0 / size * (mask - reference)
    return values, grads


class Adam:
    """Adam (Kingma & Ba 2015) minimising, with the iterate projected onto [low, high] after each step.

    ``shared_axes``: axes over which the second moment is averaged (one per remaining index), e.g.
    ``(1, 2)`` for one per mask of a [n, h, w] batch; ``()`` is Adam as published, one per coordinate.
    Shared, the step keeps the spatial shape of the gradient (as plain SGD would) and stays
    independent of the objective's scale. Per coordinate, every coordinate with a steady gradient
    moves at the full rate whatever its magnitude: a regulariser gradient that is nearly uniform
    then swamps the objective's spatial information. ``params`` is updated in place.
    """

    def __init__(self, params: NDArray[np.float64], learning_rate: float, *, shared_axes: tuple[int, ...] = (),
                 beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, low: float = 0.0, high: float = 1.0):
        self.params = params
        self.learning_rate, self.beta1, self.beta2, self.eps = learning_rate, beta1, beta2, eps
        self.shared_axes, self.low, self.high = shared_axes, low, high
        self.first = np.zeros_like(params)
        self.second = np.zeros_like(np.mean(params, axis=shared_axes, keepdims=True))
        self.steps = 0

    def step(self, grads: NDArray[np.floating]) -> NDArray[np.float64]:
        self.steps += 1
        self.first = self.beta1 * self.first + (1 - self.beta1) * grads
        self.second = self.beta2 * self.second + (1 - self.beta2) * np.mean(
            np.square(grads), axis=self.shared_axes, keepdims=True)
        first = self.first / (1 - self.beta1 ** self.steps)
        second = self.second / (1 - self.beta2 ** self.steps)
        self.params -= self.learning_rate * first / (np.sqrt(second) + self.eps)
        np.clip(self.params, self.low, self.high, out=self.params)
        return self.params


@functools.lru_cache(maxsize=64)
def _spectral_norm(source: int, target: int) -> float:
    return float(np.linalg.norm(bilinear_matrix(source, target), 2))


def multiscale_rademacher(rng: np.random.Generator, count: int, directions: int, shape: tuple[int, int],
                          grids: tuple[int, ...]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Random directions for :func:`antithetic_gradient`: ``(u [count, directions, h, w], weights [directions])``.

    Direction k is Rademacher (±1) on a coarse s×s grid, s = ``grids[k % len(grids)]`` (at most
    h×w), upsampled bilinearly: ``u = B r``. Its weight ``1/‖B‖₂²`` makes ``E[w u uᵀ] = B Bᵀ/‖B‖₂²``
    a smoothing operator with eigenvalues ≤ 1, about 1 on the components the grid can represent.
    The estimate is then the gradient smoothed onto the grids — still a descent direction, on the
    same scale as the exact gradient (unweighted, an s×s grid on an h×h one would inflate smooth
    components ≈ (h/s)² times and so weaken every term the gradient is balanced against) — with
    the variance of an s²- rather than an h·w-dimensional problem. A grid of h×w is plain Rademacher.
    """
    out = np.empty((count, directions, *shape))
    weights = np.empty(directions)
    # one draw of full-size signs, of which each grid uses its corner: the random stream does not
    # depend on the grids
    signs = rng.integers(0, 2, size=(count, directions, *shape), dtype=np.int8)
    for index, grid in enumerate(grids):
        size = (min(grid, shape[0]), min(grid, shape[1]))
        rows, cols = bilinear_matrix(size[0], shape[0]), bilinear_matrix(size[1], shape[1])
        chosen = slice(index, directions, len(grids))
        coarse = signs[:, chosen, : size[0], : size[1]].astype(np.float64) * 2.0 - 1.0
        out[:, chosen] = rows @ coarse @ cols.T
        weights[chosen] = 1.0 / (_spectral_norm(size[0], shape[0]) * _spectral_norm(size[1], shape[1])) ** 2
    return out, weights


def antithetic_gradient(
    evaluate: Callable[[NDArray[np.float64]], NDArray[np.floating]],
    points: NDArray[np.float64],
    directions: NDArray[np.float64],
    *,
    step: float,
    weights: NDArray[np.float64] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Estimate the gradient of a black-box ``f`` at each of ``points`` [n, *shape].

    ``directions`` [n, K, *shape] are random directions u_k, ``weights`` [K] (default 1) their
    weights w_k. ``evaluate(probes [n, 2K, *shape]) -> [n, 2K]`` evaluates ``f`` in one call, so
    the caller can batch all ``n·2K`` probes. The estimate
    ``Σ_k w_k (f(p + c·u_k) − f(p − c·u_k)) / (2c) · u_k / K`` (central differences: the antithetic
    pairs cancel the even-order terms of f) has expectation ``E[w u uᵀ] ∇f + O(c²)``: the gradient
    itself for Rademacher directions (``E[u uᵀ] = I``), a smoothed gradient for
    :func:`multiscale_rademacher`'s. Also returns the mean of the probe values, an O(c²) estimate
    of ``f(p)``.
    """
    count = directions.shape[1]
    weights = np.ones(count) if weights is None else weights
    probes = np.concatenate([points[:, None] + step * directions, points[:, None] - step * directions], axis=1)
    values = np.asarray(evaluate(probes), np.float64)
    slopes = (values[:, :count] - values[:, count:]) / (2.0 * step) * weights  # [n, K]
    grads = np.einsum("nk,nk...->n...", slopes, directions) / count
    return values.mean(axis=1), grads


def gradient_seed(objective: Objective, *, outputs_are_probabilities: bool, cut: str | None) -> tuple[bool, str]:
    """How a gradient graph seeded with the objective's own rows ``w`` returns the gradient of the objective
    as the black-box path evaluates it: ``(cut_final_activation, score_seed)`` for ``build_gradient_model``.

    The objective scores the model's output y (probabilities when the model ends in Softmax/Sigmoid, the
    activation ``cut`` names), through its own softmax when it asks for probabilities of a model that outputs
    logits. So the graph differentiates y itself (the final activation is kept, not cut) with
    ``score_seed="softmax"`` in that case, ``"linear"`` otherwise. A cross-entropy objective
    ``w · log softmax(z)`` differentiates the logits z (a final Softmax cut: softmax(z) = y) with
    ``"log_softmax"``. The seed is computed in the graph from its own forward, so no pass runs first to
    read the outputs.

    Raises:
        ValueError: a cross-entropy objective on a model without softmax logits (the objective checks rule
            these out before).
    """
    if objective.cross_entropy:
        if cut not in (None, "Softmax") or (cut is None and outputs_are_probabilities):
            raise ValueError("a cross-entropy objective needs softmax logits")  # check_contrast_loss refuses these
        return True, "log_softmax"
    softmax_first = objective.space == "probability" and not outputs_are_probabilities
    return False, "softmax" if softmax_first else "linear"
