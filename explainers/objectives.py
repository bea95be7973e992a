"""What is being explained: weighted combinations of class scores.

An :class:`Objective` holds a weight matrix ``W`` [targets, classes]; target ``t`` scores
``s_t(x) = Σ_c W[t, c] · y_c(x)`` where ``y`` is the model's class-score output (logits or
probabilities, as the model emits them) or its softmax when ``space == "probability"``.
A one-hot row explains one class; ``e_P − e_Q`` explains "P rather than Q" [45]. The same
matrix seeds the gradient graph (the ``class_weights`` input), so black-box and gradient
methods explain exactly the same quantity.

Contrast losses (``loss``), for "P rather than Q":

* ``difference`` (default): the row ``e_P − e_Q`` above, ``s = y_P − y_Q`` — linear in the scores.
* ``cross_entropy`` (Prabhushankar et al. 2020, "Contrastive Explanations in Neural Networks",
  ICIP, [45]): the cross-entropy of the prediction towards Q, ``J = −log softmax(y)_Q =
  logsumexp(y) − y_Q``, whose gradient with respect to the logits is ``softmax(y) − e_Q``. Stored as
  the row ``w = −e_Q`` of ``s = w · log softmax(y)`` (gradient ``w − (Σw) softmax(y)``), computed
  from the logits, or as ``w · log p`` when the model outputs softmax probabilities p (p_Q is
  floored at the smallest normal float32, so ``J ≤ 87.3`` rather than inf). It is a loss
  *towards Q*: it grows with the evidence for P (and every other class) over Q, and its value does
  not depend on P, which only labels the heatmap (the paper explains the predicted P). It needs a
  single-label (softmax) classifier and a contrast class: a Sigmoid (multi-label) head or a
  probability output that is not a Softmax gives no softmax cross-entropy (rejected by
  :func:`check_contrast_loss`), and a one-output (regression or binary-score) head has no other
  class to contrast with, so the paper's MSE variant has no case here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .errors import FailedPrecondition, InvalidArgument

SPACES = ("output", "probability")
DIFFERENCE, CROSS_ENTROPY = "difference", "cross_entropy"
CONTRAST_LOSSES = (DIFFERENCE, CROSS_ENTROPY)
_PROBABILITY_FLOOR = float(np.finfo(np.float32).tiny)


def softmax(logits: NDArray[np.floating], axis: int = -1) -> NDArray[np.floating]:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(logits: NDArray[np.floating], axis: int = -1) -> NDArray[np.float64]:
    """``y − logsumexp(y)`` along ``axis``, computed stably in float64."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


@dataclass(frozen=True)
class Objective:
    """``weights``: float32 [targets, classes]; ``classes``: the class each target names
    (the positive class of a contrast), used for labelling; ``space``: see module doc;
    ``contrast``: the class Q of "P rather than Q"; ``loss``: the contrast loss (module doc)."""

    weights: NDArray[np.float32]
    classes: tuple[int, ...]
    space: str = "output"
    contrast: int | None = None
    loss: str = DIFFERENCE

    def __post_init__(self) -> None:
        if self.weights.ndim != 2 or self.weights.shape[0] == 0:
            raise InvalidArgument("target.class_weights", "expected a non-empty [targets, classes] matrix")
        if not np.all(np.isfinite(self.weights)):
            raise InvalidArgument("target.class_weights", "every weight must be a finite number (got NaN or inf)")
        if len(self.classes) != self.weights.shape[0]:
            raise InvalidArgument("target", "one class label per target row is required")
        if self.space not in SPACES:
            raise InvalidArgument("target.score", f"{self.space!r} is not allowed; choices: {', '.join(SPACES)}")
        if self.loss not in CONTRAST_LOSSES:
            raise InvalidArgument("target.contrast_loss",
                                  f"{self.loss!r} is not allowed; choices: {', '.join(CONTRAST_LOSSES)}")
        if self.loss == CROSS_ENTROPY:
            if self.contrast is None:
                raise InvalidArgument("target.contrast_loss", "cross_entropy is a loss towards a contrast class Q: "
                                                              "set target.contrast_class (or use difference)")
            if self.space == "probability":
                raise InvalidArgument("target.contrast_loss", "cross_entropy is already taken on the softmax "
                                                              "probabilities; leave target.score_space unset")

    @property
    def cross_entropy(self) -> bool:
        """Whether the objective is the softmax cross-entropy towards the contrast class."""
        return self.loss == CROSS_ENTROPY

    @property
    def num_targets(self) -> int:
        return self.weights.shape[0]

    @classmethod
    def for_classes(
        cls, classes: Sequence[int], num_classes: int, *, contrast: int | None = None, space: str = "output",
        loss: str = DIFFERENCE,
    ) -> Objective:
        """One-hot rows for ``classes``; with ``contrast`` Q each row becomes ``e_P − e_Q``
        (``loss="difference"``) or ``−e_Q`` (``loss="cross_entropy"``: ``s = −log softmax(y)_Q``)."""
        for field, index in [("target.class_indices", c) for c in classes] + [("target.contrast_class", contrast)]:
            if index is not None and not 0 <= index < num_classes:
                raise InvalidArgument(field, f"class {index} is out of range; allowed: [0, {num_classes - 1}]")
        weights = np.zeros((len(classes), num_classes), np.float32)
        weights[np.arange(len(classes)), list(classes)] = 1.0
        if contrast is not None:
            if contrast in classes:
                raise InvalidArgument("target.contrast_class", f"class {contrast} cannot be contrasted with itself")
            if loss == CROSS_ENTROPY:
                weights[:] = 0.0
            weights[:, contrast] -= 1.0
        return cls(weights, tuple(int(c) for c in classes), space, contrast, loss)

    def class_scores(self, outputs: NDArray[np.floating], *, outputs_are_probabilities: bool) -> NDArray[np.float32]:
        """Model outputs [batch, classes] → the scores this objective combines, [batch, classes]."""
        outputs = outputs.astype(np.float32, copy=False)
        if self.space == "probability" and not outputs_are_probabilities:
            return softmax(outputs)
        return outputs

    def combined_scores(self, outputs: NDArray[np.floating], *, outputs_are_probabilities: bool
                        ) -> NDArray[np.floating]:
        """What the weights combine linearly, [batch, classes]: the class scores, or for the cross-entropy
        the log-probabilities ``log softmax(y)`` (``log max(p, tiny)`` from probabilities)."""
        if not self.cross_entropy:
            return self.class_scores(outputs, outputs_are_probabilities=outputs_are_probabilities)
        if outputs_are_probabilities:
            return np.log(np.maximum(np.asarray(outputs, np.float64), _PROBABILITY_FLOOR))
        return log_softmax(outputs)

    def __call__(self, outputs: NDArray[np.floating], *, outputs_are_probabilities: bool = False) -> NDArray[np.float32]:
        """Model outputs [batch, classes] → objective values [batch, targets]."""
        scores = self.combined_scores(outputs, outputs_are_probabilities=outputs_are_probabilities)
        return (scores @ self.weights.T.astype(scores.dtype)).astype(np.float32)

    def per_row(self, outputs: NDArray[np.floating], *, outputs_are_probabilities: bool) -> NDArray[np.float32]:
        """Rows [n·T, classes] where row r is seeded with target r % T → objective values [n, T]
        (the layout of the evaluator's gradient batches)."""
        scores = self.combined_scores(outputs, outputs_are_probabilities=outputs_are_probabilities)
        rows = scores.reshape(-1, self.num_targets, scores.shape[-1])
        return (rows * self.weights[None]).sum(-1).astype(np.float32)


def check_contrast_loss(objective: Objective, *, output_producer: str | None, outputs_are_probabilities: bool,
                        gradients: bool) -> None:
    """Refuse a cross-entropy objective on a model that has no softmax cross-entropy.

    ``gradients``: whether the method differentiates (it then needs the logits: a final Softmax
    is cut off; probabilities from elsewhere cannot be differentiated as logits).

    Raises:
        FailedPrecondition: a Sigmoid (multi-label) head, or, for gradients, probabilities not made
            by a final Softmax.
    """
    if not objective.cross_entropy:
        return
    if output_producer == "Sigmoid":
        raise FailedPrecondition(
            "target.contrast_loss=cross_entropy is the softmax cross-entropy of a single-label classifier; this "
            "model ends in a Sigmoid (independent per-class probabilities): use contrast_loss=difference")
    if gradients and outputs_are_probabilities and output_producer != "Softmax":
        raise FailedPrecondition(
            "target.contrast_loss=cross_entropy needs the logits for gradients, and this model outputs "
            "probabilities not made by a final Softmax: use contrast_loss=difference or a black-box method")


def logit_seeds(objective: Objective, outputs: NDArray[np.floating], *, outputs_are_probabilities: bool
                ) -> NDArray[np.float64]:
    """The objective's gradient with respect to the logits of one image, float64 [targets, classes]:
    its weights, or for the cross-entropy ``w − (Σw) softmax(y)`` (= softmax(y) − e_Q) at the model's
    ``outputs`` [classes] (probabilities are softmax(y) already)."""
    weights = objective.weights.astype(np.float64)
    if not objective.cross_entropy:
        return weights
    outputs = np.asarray(outputs, np.float64)
    probabilities = outputs if outputs_are_probabilities else softmax(outputs)
    return weights - weights.sum(axis=1, keepdims=True) * probabilities[None]
