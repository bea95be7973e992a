"""What a method's ``explain`` generator yields.

Order: exactly one :class:`Planned` first, then any number of :class:`Progress`, and the
generator *returns* after yielding exactly one :class:`Explanation` last.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Planned:
    """The work a method will do, known before any model evaluation.

    ``forward``/``backward`` count model evaluations of one sample (a batch of 64 counts 64).
    """

    forward: int
    backward: int = 0

    @property
    def total(self) -> int:
        return self.forward + self.backward


@dataclass(frozen=True)
class Progress:
    """Evaluations done so far out of the planned total, optionally with a partial heatmap.

    ``heatmaps``: float32 [targets, H, W] in model-input pixels, or ``None``.
    """

    done: int
    total: int
    heatmaps: NDArray[np.float32] | None = None


@dataclass(frozen=True)
class Explanation:
    """The final result of a method.

    Attributes:
        heatmaps: float32 [targets, H, W] in model-input pixels; signed where the method is.
        scores: float32 [targets], the objective's value on the unperturbed input.
        forward, backward: model evaluations actually used (per sample).
        extras: method-specific scalars (IG completeness gap, LIME R², ...).
        tensors: method-specific float32 arrays besides the heatmaps, by name, in model-input space
            (CEM's pertinent negative images [targets, C, H, W], ...); most methods have none.
    """

    heatmaps: NDArray[np.float32]
    scores: NDArray[np.float32]
    forward: int
    backward: int = 0
    extras: dict[str, float] = field(default_factory=dict)
    tensors: dict[str, NDArray[np.float32]] = field(default_factory=dict)


Event = Planned | Progress | Explanation
