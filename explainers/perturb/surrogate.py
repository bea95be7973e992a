"""Aggregator: a locally weighted linear surrogate (LIME [48], Ribeiro et al. 2016, eq. 1–3).

Samples ``z_i`` [S] (interpretable features, e.g. superpixels on/off) with model scores ``y_i``
[T] and proximity weights ``π_i`` are fitted, per target, with the weighted ridge regression of
scikit-learn's ``Ridge(alpha, fit_intercept=True).fit(Z, y, sample_weight=π)``::

    minimise_{β, b}  Σ_i π_i (y_i − b − z_iᵀβ)² + α ‖β‖²

and scored with its weighted R² (``Ridge.score(Z, y, sample_weight=π)``), which is what the
``lime`` package reports. Instead of keeping the samples, :class:`WeightedRidge` accumulates the
weighted moments (Σπ, Σπz, Σπy, Σπzzᵀ, Σπzy, Σπy²): memory and refit cost depend on S only,
so refitting while batches arrive (to stream partial heatmaps) stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
from numpy.typing import NDArray


def exponential_kernel(distances: NDArray[np.floating], width: float) -> NDArray[np.float64]:
    """``lime``'s proximity kernel: √(exp(−d²/w²)) (= exp(−d²/2w²))."""
    return np.sqrt(np.exp(-(np.asarray(distances, np.float64) ** 2) / width**2))


@dataclass(frozen=True)
class RidgeFit:
    """``coef`` [T, S], ``intercept`` [T] and weighted ``r2`` [T], float64."""

    coef: NDArray[np.float64]
    intercept: NDArray[np.float64]
    r2: NDArray[np.float64]


class WeightedRidge:
    """Accumulates weighted samples for :meth:`fit`; ``features`` S, ``targets`` T."""

    def __init__(self, features: int, targets: int):
        self.count = 0
        self.weight = 0.0
        self.sz = np.zeros(features)
        self.sy = np.zeros(targets)
        self.szz = np.zeros((features, features))
        self.szy = np.zeros((features, targets))
        self.syy = np.zeros(targets)
        self.shift: NDArray[np.float64] | None = None

    def add(self, z: NDArray, y: NDArray, weights: NDArray) -> None:
        """Add samples ``z`` [n, S], scores ``y`` [n, T] and weights ``π`` [n]."""
        z = np.asarray(z, np.float64)
        y = np.asarray(y, np.float64)
        if self.shift is None:  # scores are shifted by the first one: R² and β are shift-invariant,
            self.shift = y[0].copy()  # and large offsets (logits ~10, spread ~0.01) keep their precision
        y = y - self.shift
        w = np.asarray(weights, np.float64)
        wz = z * w[:, None]
        self.count += len(z)
        self.weight += w.sum()
        self.sz += wz.sum(axis=0)
        self.sy += w @ y
        self.szz += wz.T @ z
        self.szy += wz.T @ y
        self.syy += w @ (y * y)

    def fit(self, alpha: float) -> RidgeFit:
        """The ridge fit of the samples so far, centred by their weighted means as scikit-learn does.

        With ``alpha`` 0 and a singular system (fewer samples than features, a feature never
        switched) the minimum-norm least-squares solution is used, like scikit-learn's fallback.
        Costs O(S³ + S²T), whatever the number of samples.
        """
        features, targets = self.szy.shape
        if self.count == 0 or self.weight <= 0:
            zeros = np.zeros((targets, features))
            return RidgeFit(zeros, np.zeros(targets), np.zeros(targets))
        mean_z, mean_y = self.sz / self.weight, self.sy / self.weight
        gram = self.szz - self.weight * np.outer(mean_z, mean_z)
        cross = self.szy - self.weight * np.outer(mean_z, mean_y)
        total = self.syy - self.weight * mean_y**2
        coef = _solve_symmetric(gram + alpha * np.eye(features), cross)
        # Σπ(y − ŷ)² from the moments: yᵀy − 2βᵀZᵀy + βᵀZᵀZβ (centred)
        residual = np.maximum(total - 2 * np.einsum("st,st->t", coef, cross)
                              + np.einsum("st,su,ut->t", coef, gram, coef), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):  # constant scores: R² 1 if fitted exactly, as sklearn
            r2 = np.where(total > 0, 1.0 - residual / np.where(total > 0, total, 1.0), np.where(residual > 0, 0.0, 1.0))
        intercept = mean_y - mean_z @ coef + self.shift
        return RidgeFit(coef.T.copy(), intercept, r2)


def _solve_symmetric(system: NDArray[np.float64], rhs: NDArray[np.float64]) -> NDArray[np.float64]:
    """``system⁻¹ · rhs`` by Cholesky (scikit-learn's ridge solver); a singular or numerically
    singular system (α = 0 with too few samples) gets the minimum-norm least-squares solution."""
    try:
        factor = np.linalg.cholesky(system)
    except np.linalg.LinAlgError:
        factor = None
    diagonal = np.diag(factor) if factor is not None else np.zeros(1)
    if diagonal.min() ** 2 <= 1e-12 * diagonal.max() ** 2:  # cheap condition check, no warnings machinery
        return np.linalg.lstsq(system, rhs, rcond=None)[0]
    return scipy.linalg.cho_solve((factor, True), rhs, check_finite=False)


def fit_weighted_ridge(z: NDArray, y: NDArray, weights: NDArray, alpha: float) -> RidgeFit:
    """One-shot :class:`WeightedRidge`: ``z`` [n, S], ``y`` [n, T] (or [n]), ``weights`` [n]."""
    y = np.asarray(y, np.float64)
    y2 = y[:, None] if y.ndim == 1 else y
    ridge = WeightedRidge(np.shape(z)[1], y2.shape[1])
    ridge.add(z, y2, weights)
    return ridge.fit(alpha)
