"""What a metric returns: headline values per target, curves, and scalars."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Curve:
    """One curve per target of the objective, sampled at shared x positions.

    ``x`` float32 [K] (e.g. the fraction of pixels removed); ``y`` float32 [T, K] (one row per
    target); ``x_ticks`` names the x positions (e.g. layer names) or is empty; ``y_label`` says
    what ``y`` measures (e.g. "probability of the target").
    """

    name: str
    x: NDArray[np.float32]
    y: NDArray[np.float32]
    x_label: str
    x_ticks: tuple[str, ...] = ()
    y_label: str = ""


@dataclass(frozen=True)
class MetricResult:
    """The result of one metric.

    ``values`` float32 [T]: the headline number per target (e.g. an AUC); ``higher_is_better`` says
    how to read it; ``forward``/``backward``: the model evaluations this metric caused
    (re-explanations included; the front door :func:`~explainers.evaluate.evaluate` fills them from
    the request's counters).
    """

    metric: str
    values: NDArray[np.float32]
    higher_is_better: bool
    curves: tuple[Curve, ...] = ()
    extras: dict[str, float] = field(default_factory=dict)
    forward: int = 0
    backward: int = 0

    def is_finite(self) -> bool:
        """Whether every value, curve point and extra is a finite number."""
        arrays = [self.values, *(c.y for c in self.curves), *(c.x for c in self.curves),
                  np.asarray(list(self.extras.values()), np.float64)]
        return all(bool(np.all(np.isfinite(a))) for a in arrays)


def area_under_curve(x: NDArray[np.floating], y: NDArray[np.floating]) -> NDArray[np.float32]:
    """Trapezoid area under each row of ``y`` [T, K] over ``x`` [K]: Σₖ (yₖ + yₖ₊₁)/2 · (xₖ₊₁ − xₖ) → [T]."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    return (((y[:, 1:] + y[:, :-1]) / 2.0) * np.diff(x)[None]).sum(axis=1).astype(np.float32)
