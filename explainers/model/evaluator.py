"""The view of a classifier that methods get: bound to one request's :class:`RunContext`.

Methods never batch, count or check cancellation themselves; they describe *what* to evaluate
(a lazily built batch of images and an objective) and iterate over the results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..context import RunContext
from ..errors import FailedPrecondition
from ..graph.perturbation import MaskSource
from ..objectives import Objective
from .classifier import IMAGE, OnnxClassifier


@dataclass(frozen=True)
class GradientBatch:
    """Images ``[start, stop)``, each differentiated for every target of the objective.

    ``scores`` [n, T] objective values (from the logits the gradients are taken of);
    ``input_grad`` [n, T, C, H, W]; ``layers`` maps a layer to (activation, gradient), both
    [n, T, *layer shape]. ``score_delta`` [n, T], with a reference x′: the objective on the
    differentiated scores at x minus at x′ (what DeepLIFT's attributions must sum to).
    """

    start: int
    stop: int
    scores: NDArray[np.float32]
    input_grad: NDArray[np.float32]
    layers: dict[str, tuple[NDArray[np.float32], NDArray[np.float32]]]
    score_delta: NDArray[np.float32] | None = None


def _concat_rows(chunks: list) -> tuple[NDArray, NDArray, dict, NDArray | None]:
    scores = np.concatenate([c.scores for c in chunks])
    grads = np.concatenate([c.input_grad for c in chunks])
    layers = {name: tuple(np.concatenate([c.layers[name][i] for c in chunks]) for i in range(2))
              for name in chunks[0].layers}
    deltas = None if chunks[0].score_delta is None else np.concatenate([c.score_delta for c in chunks])
    return scores, grads, layers, deltas


def _tail(chunk, rows: int):
    """The last ``rows`` rows of a classifier GradientChunk."""
    from .classifier import GradientChunk

    return GradientChunk(chunk.stop - rows, chunk.stop, chunk.scores[-rows:], chunk.input_grad[-rows:],
                         {name: (a[-rows:], g[-rows:]) for name, (a, g) in chunk.layers.items()},
                         None if chunk.score_delta is None else chunk.score_delta[-rows:])


def _weighted(rows: NDArray, objective: Objective) -> NDArray[np.float32]:
    """Per-(image, target) rows [n·T, classes] → objective values [n, T]."""
    targets = objective.num_targets
    return (rows.reshape(-1, targets, rows.shape[-1]) * objective.weights[None]).sum(-1).astype(np.float32)


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

    def gradients(
        self,
        count: int,
        make_images: Callable[[int, int], NDArray[np.float32]],
        objective: Objective,
        *,
        layers: Sequence[str] = (),
        rules: str = "vanilla",
        reference: NDArray[np.float32] | None = None,
    ) -> Iterator[GradientBatch]:
        """Gradients of every target for ``count`` images built by ``make_images(start, stop)``.

        Each (image, target) pair is one sample of the gradient graph, seeded with the target's
        weights row (one forward + one backward each); chunks always hold whole images. The
        gradient graph differentiates the logits when the model ends in Softmax/Sigmoid (the scores
        stay those of the model's output), and the probabilities when the objective asks for them. A
        ``reference`` x′ [C, H, W] adds a reference pass (one more forward per pair) for rule sets
        that read it (DeepLIFT) and fills ``score_delta``.
        """
        probability = objective.space == "probability"
        if probability and self.classifier.signature.output_producer != "Softmax":
            raise FailedPrecondition(
                "gradients of probabilities need a model whose class-score output is a Softmax; this model "
                "outputs logits, so explain them instead (leave target.score_space unset)"
            )
        targets = objective.num_targets
        rows_per_chunk = max(targets, (self.classifier.gradient_max_batch // targets) * targets)

        def make_batch(start: int, stop: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
            rows = np.arange(start, stop)  # row r is image r // T seeded with target r % T
            first = start // targets
            images = make_images(first, (stop - 1) // targets + 1)
            return images[rows // targets - first], objective.weights[rows % targets]

        pending: list = []  # rows of a partly evaluated image (per-sample models run one row a time)
        first_image = 0
        for chunk in self.classifier.gradients(count * targets, make_batch, context=self.context, layers=layers,
                                               rules=rules, max_batch=rows_per_chunk, reference=reference,
                                               cut_final_activation=not probability):
            pending.append(chunk)
            rows = sum(c.stop - c.start for c in pending)
            if rows < targets:
                continue
            whole = rows - rows % targets
            scores, grads, layer_parts, deltas = _concat_rows(pending)
            n = whole // targets
            yield GradientBatch(
                first_image, first_image + n,
                _weighted(scores[:whole], objective),
                grads[:whole].reshape(n, targets, *grads.shape[1:]),
                {name: tuple(a[:whole].reshape(n, targets, *a.shape[1:]) for a in pair)
                 for name, pair in layer_parts.items()},
                None if deltas is None else _weighted(deltas[:whole], objective),
            )
            first_image += n
            pending = [] if whole == rows else [_tail(chunk, rows - whole)]

    def objective_value(self, image: NDArray[np.float32], objective: Objective) -> NDArray[np.float32]:
        """Objective values [targets] of one canonical image [C, H, W]."""
        (_, _, values), = self.objective_values(1, lambda a, b: image[None], objective)
        return values[0]
