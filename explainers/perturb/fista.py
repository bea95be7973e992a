"""FISTA for a box-constrained elastic net: the optimiser of CEM's pertinent negatives and positives.

Minimises, for each row of a batch independently,

    F(u) = g(u) + β Σ_i r_i |u_i|    subject to  lower ≤ u ≤ upper,

with g smooth (its gradient is supplied by the caller at the point :attr:`Fista.point`), by the
fast iterative shrinkage-thresholding algorithm (Beck & Teboulle 2009) in the metric
``diag(metric)`` — a diagonal preconditioner; 1 gives plain FISTA:

    u_{k+1} = Π_box( S_{α_k β r / metric}( y_k − α_k ∇g(y_k) / metric ) )
    y_{k+1} = Π_box( u_{k+1} + k/(k+3) · (u_{k+1} − u_k) )

where S_τ(v) = sign(v) · max(|v| − τ, 0) is the element-wise shrinkage-thresholding (soft
threshold) operator and Π_box clips to [lower, upper]. For a separable L1 term and a box, clipping
the soft-thresholded point *is* the proximal step of β‖·‖₁ + ι_box. The step decays as
α_k = α₀ (1 − k/K)^½ over the K planned steps (Dhurandhar et al. 2018's schedule). The momentum
point y is projected too, so every point the caller evaluates is feasible.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def shrink(values: NDArray[np.floating], threshold: NDArray[np.floating] | float) -> NDArray[np.float64]:
    """Soft threshold S_τ(v) = sign(v) · max(|v| − τ, 0), element-wise (τ ≥ 0, broadcast)."""
    return np.sign(values) * np.maximum(np.abs(values) - threshold, 0.0)


class Fista:
    """One FISTA run over a batch of rows (see the module doc). All arrays are [rows, d].

    ``l1_weights`` r and ``metric`` are positive; ``lower ≤ 0 ≤ upper`` so that the start u = 0 is
    feasible. Call :meth:`step` with ∇g at :attr:`point`, ``iterations`` times.
    """

    def __init__(self, lower: NDArray, upper: NDArray, *, beta: float, learning_rate: float, iterations: int,
                 l1_weights: NDArray | float = 1.0, metric: NDArray | float = 1.0):
        self.lower, self.upper = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
        self.beta, self.learning_rate, self.iterations = beta, learning_rate, iterations
        self.l1_weights, self.metric = l1_weights, metric
        self.solution = np.zeros(self.lower.shape)  # u_k
        self.point = self.solution.copy()  # y_k: where the next gradient is wanted
        self.k = 0

    def step(self, gradient: NDArray[np.floating]) -> None:
        """One step with ``gradient`` = ∇g(:attr:`point`) [rows, d]."""
        alpha = self.learning_rate * (1.0 - self.k / self.iterations) ** 0.5
        moved = self.point - alpha * gradient / self.metric
        solution = np.clip(shrink(moved, alpha * self.beta * self.l1_weights / self.metric), self.lower, self.upper)
        momentum = self.k / (self.k + 3.0)
        self.point = np.clip(solution + momentum * (solution - self.solution), self.lower, self.upper)
        self.solution = solution
        self.k += 1
