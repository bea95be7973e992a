"""The view of a classifier that methods get: bound to one request's :class:`RunContext`.

Methods never batch, count or check cancellation themselves; they describe *what* to evaluate
(a lazily built batch of images and an objective) and iterate over the results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np
from numpy.typing import NDArray

from ..context import RunContext
from ..graph.perturbation import MaskSource
from ..objectives import Objective
from .classifier import IMAGE, OnnxClassifier


class Evaluator:
    """``classifier`` + ``context``. ``shape`` is the canonical image shape (C, H, W)."""

    def __init__(self, classifier: OnnxClassifier, context: RunContext | None = None):
        self.classifier = classifier
        self.context = context or RunContext()

    @property
    def shape(self) -> tuple[int, int, int]:
        c = self.classifier
        return c.channels, c.height, c.width

    @property
    def max_batch(self) -> int:
        return self.classifier.max_batch

    def objective_values(
        self,
        count: int,
        make_images: Callable[[int, int], NDArray[np.float32]],
        objective: Objective,
    ) -> Iterator[tuple[int, int, NDArray[np.float32]]]:
        """Evaluate ``count`` images built chunk by chunk by ``make_images(start, stop)``
        ([n, C, H, W] float32) and yield ``(start, stop, values)`` with values [n, targets]."""
        probabilities = self.classifier.outputs_are_probabilities
        for chunk in self.classifier.run(count, lambda a, b: {IMAGE: make_images(a, b)}, context=self.context):
            outputs = next(iter(chunk.outputs.values()))
            yield chunk.start, chunk.stop, objective(outputs, outputs_are_probabilities=probabilities)

    def perturbed_values(
        self,
        count: int,
        make_masks: Callable[[int, int], Mapping[str, NDArray]],
        objective: Objective,
        *,
        source: MaskSource,
        image: NDArray[np.float32],
        baseline: NDArray[np.float32],
        per_request: Mapping[str, NDArray] | None = None,
    ) -> Iterator[tuple[int, int, NDArray[np.float32]]]:
        """Like :meth:`objective_values`, for perturbations built inside the graph by ``source``
        (see :mod:`explainers.graph.perturbation`): ``make_masks(start, stop)`` returns only the
        small per-sample mask descriptions."""
        probabilities = self.classifier.outputs_are_probabilities
        for chunk in self.classifier.perturbed(count, make_masks, source=source, image=image, baseline=baseline,
                                               context=self.context, per_request=per_request):
            outputs = next(iter(chunk.outputs.values()))
            yield chunk.start, chunk.stop, objective(outputs, outputs_are_probabilities=probabilities)

    def objective_value(self, image: NDArray[np.float32], objective: Objective) -> NDArray[np.float32]:
        """Objective values [targets] of one canonical image [C, H, W]."""
        (_, _, values), = self.objective_values(1, lambda a, b: image[None], objective)
        return values[0]
