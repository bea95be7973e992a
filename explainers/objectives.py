"""What is being explained: weighted combinations of class scores.

An :class:`Objective` holds a weight matrix ``W`` [targets, classes]; target ``t`` scores
``s_t(x) = Σ_c W[t, c] · y_c(x)`` where ``y`` is the model's class-score output (logits or
probabilities, as the model emits them) or its softmax when ``space == "probability"``.
A one-hot row explains one class; ``e_P − e_Q`` explains "P rather than Q" [45]. The same
matrix seeds the gradient graph (the ``class_weights`` input), so black-box and gradient
methods explain exactly the same quantity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .errors import InvalidArgument

SPACES = ("output", "probability")


def softmax(logits: NDArray[np.floating], axis: int = -1) -> NDArray[np.floating]:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


@dataclass(frozen=True)
class Objective:
    """``weights``: float32 [targets, classes]; ``classes``: the class each target names
    (the positive class of a contrast), used for labelling; ``space``: see module doc."""

    weights: NDArray[np.float32]
    classes: tuple[int, ...]
    space: str = "output"
    contrast: int | None = None

    def __post_init__(self) -> None:
        if self.weights.ndim != 2 or self.weights.shape[0] == 0:
            raise InvalidArgument("target.class_weights", "expected a non-empty [targets, classes] matrix")
        if not np.all(np.isfinite(self.weights)):
            raise InvalidArgument("target.class_weights", "every weight must be a finite number (got NaN or inf)")
        if len(self.classes) != self.weights.shape[0]:
            raise InvalidArgument("target", "one class label per target row is required")
        if self.space not in SPACES:
            raise InvalidArgument("target.score", f"{self.space!r} is not allowed; choices: {', '.join(SPACES)}")

    @property
    def num_targets(self) -> int:
        return self.weights.shape[0]

    @classmethod
    def for_classes(
        cls, classes: Sequence[int], num_classes: int, *, contrast: int | None = None, space: str = "output"
    ) -> Objective:
        """One-hot rows for ``classes``; with ``contrast`` Q each row becomes ``e_P − e_Q``."""
        for field, index in [("target.class_indices", c) for c in classes] + [("target.contrast_class", contrast)]:
            if index is not None and not 0 <= index < num_classes:
                raise InvalidArgument(field, f"class {index} is out of range; allowed: [0, {num_classes - 1}]")
        weights = np.zeros((len(classes), num_classes), np.float32)
        weights[np.arange(len(classes)), list(classes)] = 1.0
        if contrast is not None:
            if contrast in classes:
                raise InvalidArgument("target.contrast_class", f"class {contrast} cannot be contrasted with itself")
            weights[:, contrast] -= 1.0
        return cls(weights, tuple(int(c) for c in classes), space, contrast)

    def class_scores(self, outputs: NDArray[np.floating], *, outputs_are_probabilities: bool) -> NDArray[np.float32]:
        """Model outputs [batch, classes] → the scores this objective combines, [batch, classes]."""
        outputs = outputs.astype(np.float32, copy=False)
        if self.space == "probability" and not outputs_are_probabilities:
            return softmax(outputs)
        return outputs

    def __call__(self, outputs: NDArray[np.floating], *, outputs_are_probabilities: bool = False) -> NDArray[np.float32]:
        """Model outputs [batch, classes] → objective values [batch, targets]."""
        scores = self.class_scores(outputs, outputs_are_probabilities=outputs_are_probabilities)
        return (scores @ self.weights.T).astype(np.float32)
