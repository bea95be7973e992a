"""The view of a classifier that methods get: bound to one request's :class:`RunContext`.

The Evaluator is the methods' only handle to the model. Methods never batch, count or check
cancellation themselves; they describe *what* to evaluate (a lazily built batch of images and an
objective, or a graph variant's feed) and iterate over the results. Row-level operations yield
:class:`~.loop.Chunk`; objective-level ones fold the targets of an :class:`Objective` in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..autodiff import CLASS_WEIGHTS, INPUT_GRAD
from ..context import RunContext
from ..errors import FailedPrecondition
from ..graph.baseline_pass import BASELINE_IMAGE, SCORE_DELTA
from ..graph.perturbation import SOURCE_BASELINE, SOURCE_IMAGE, MaskSource
from ..objectives import Objective, check_contrast_loss
from .classifier import OnnxClassifier
from .companions import CompanionHandle, CompanionModel, CompanionResolver, resolver
from .introspect import Introspection
from .loop import IMAGE, Chunk, concatenate
from .signature import Signature
from .variants import Variant


def layer_gradient(layer: str) -> str:
    """The key of ``layer``'s gradient in a gradient chunk (its activation is keyed ``layer``)."""
    return f"{layer}:gradient"


@dataclass(frozen=True)
class GradientBatch:
    """Images ``[start, stop)``, each differentiated for every target of the objective.

    ``scores`` [n, T] objective values (from the logits the gradients are taken of);
    ``input_grad`` [n, T, C, H, W] (None when not requested); ``layers`` maps a layer to (activation, gradient), both
    [n, T, *layer shape]. ``score_delta`` [n, T], with a baseline x′: the objective on the
    differentiated scores at x minus at x′ (what DeepLIFT's attributions must sum to).
    """

    start: int
    stop: int
    scores: NDArray[np.float32]
    input_grad: NDArray[np.float32] | None
    layers: dict[str, tuple[NDArray[np.float32], NDArray[np.float32]]]
    score_delta: NDArray[np.float32] | None = None


def _prefix_inputs(image: NDArray, baseline: NDArray, per_request: Mapping[str, NDArray] | None) -> dict[str, NDArray]:
    """The per-request inputs of a perturbation prefix: image and baseline [1, C, H, W], plus extras."""
    return {SOURCE_IMAGE: image[None].astype(np.float32), SOURCE_BASELINE: baseline[None].astype(np.float32),
            **(per_request or {})}


def _weighted(rows: NDArray, objective: Objective) -> NDArray[np.float32]:
    """Per-(image, target) score differences [n·T, classes] → the linear objective's differences [n, T]."""
    targets = objective.num_targets
    return (rows.reshape(-1, targets, rows.shape[-1]) * objective.weights[None]).sum(-1).astype(np.float32)


class Evaluator:
    """``classifier`` + ``context``: what a method may ask of the model, and every evaluation it runs.

    ``shape`` is the canonical image shape (C, H, W). ``companions``: the companion models a method
    may ask for by name (:mod:`.companions`): a mapping (the library), a lookup (the server's
    repository) or None (none configured).
    """

    def __init__(self, classifier: OnnxClassifier, context: RunContext | None = None, *,
                 companions: Mapping[str, CompanionModel] | CompanionResolver | None = None):
        self._classifier = classifier
        self.context = context or RunContext()
        self._companion = resolver(companions)

    def companion(self, name: str) -> CompanionHandle:
        """The companion model ``name`` (a generator, an autoencoder), bound to this request's context.

        Raises:
            NotFound: no companion of that name (the message lists those there are).
            FailedPrecondition: it exists but cannot serve (not loaded, failed to load, not a companion).
        """
        return CompanionHandle(self._companion(name), self.context)

    # ---------------------------------------------------------------- what the model is
    @property
    def shape(self) -> tuple[int, int, int]:
        return self._classifier.model_input.shape

    @property
    def max_batch(self) -> int:
        return self._classifier.max_batch

    @property
    def signature(self) -> Signature:
        """The model's image input and class-score output."""
        return self._classifier.signature

    @property
    def outputs_are_probabilities(self) -> bool:
        return self._classifier.outputs_are_probabilities

    @property
    def introspection(self) -> Introspection:
        """Graph questions: tensor shapes, CAM layers, the simplified graph."""
        return self._classifier.introspection

    def black_image(self) -> NDArray[np.float32]:
        """The all-black image as this model sees it: canonical [C, H, W]."""
        return self._classifier.black_image()

    def white_image(self) -> NDArray[np.float32]:
        """The all-white image as this model sees it: canonical [C, H, W]."""
        return self._classifier.white_image()

    # ---------------------------------------------------------------- row-level evaluations
    def layer_activations(self, images: NDArray[np.float32], layers: Sequence[str]) -> dict[str, NDArray[np.float32]]:
        """Forward only, returning the activations of ``layers`` [n, K, h, w] (channels first, whatever
        a layer's layout in the graph, as input gradients are) and the class scores under the
        output's name, for canonical images [n, C, H, W].

        Raises:
            NotFound: a layer is not a candidate layer.
        """
        found = [self.introspection.layer(layer) for layer in layers]
        names = [self.signature.output_name, *layers]
        chunks = list(self._classifier.run(len(images), lambda a, b: {IMAGE: images[a:b]}, context=self.context,
                                           variant=Variant.exposing(tuple(layers)), outputs=names))
        outputs = concatenate(chunks)
        return {**outputs, **{layer.name: layer.canonical(outputs[layer.name]) for layer in found}}

    def gradient_rows(
        self,
        count: int,
        make_batch: Callable[[int, int], tuple[NDArray[np.float32], NDArray[np.float32]]],
        *,
        layers: Sequence[str] = (),
        rules: str = "vanilla",
        cut_final_activation: bool = True,
        max_batch: int | None = None,
        baseline: NDArray[np.float32] | None = None,
        score_seed: str = "linear",
        input_gradient: bool = True,
    ) -> Iterator[Chunk]:
        """Forward + backward through the gradient graph of (``layers``, ``rules``).

        With ``input_gradient=False`` (``layers`` needed) the graph stops back-propagating at the
        layers — Grad-CAM's backward is the head's, a small fraction of a forward — and chunks
        carry no ``INPUT_GRAD``.

        ``make_batch(start, stop)`` returns canonical images [n, C, H, W] and class weights
        [n, classes] (the seed: one-hot for one class, e_P − e_Q for a contrast; with
        ``score_seed="log_softmax"`` the graph seeds ``w − (Σw) softmax(logits)`` from them, e.g.
        softmax − e_Q for ``w = −e_Q``, the cross-entropy towards Q), in chunks of
        ``max_batch`` (default the classifier's ``gradient_max_batch``). Each sample is charged one
        forward and one backward evaluation. With a ``baseline`` x′ (canonical [C, H, W], the same
        for every sample: fed once) the graph has a baseline pass (see
        :mod:`explainers.graph.baseline_pass`), each sample is charged a second forward (its x′
        twin), and chunks carry :data:`SCORE_DELTA`.

        Yields:
            :class:`Chunk` with the class scores under the output's name [n, classes],
            ``INPUT_GRAD`` [n, C, H, W] in the canonical layout, each layer's activation under its
            name and its gradient under :func:`layer_gradient`, and :data:`SCORE_DELTA` [n, classes].

        Raises:
            GradientError: the model has an op without a gradient rule (named in the message).
        """
        classifier = self._classifier
        variant = Variant.gradient(layers=tuple(layers), rules=rules, cut_final_activation=cut_final_activation,
                                   baseline_pass=baseline is not None, score_seed=score_seed,
                                   input_gradient=input_gradient)
        graph = classifier.compiled(variant).gradient
        keys = {graph.score_output: self.signature.output_name}
        if input_gradient:
            keys[graph.input_grad] = INPUT_GRAD
        for layer in layers:
            activation, gradient = graph.layers[layer]
            keys.update({activation: layer, gradient: layer_gradient(layer)})
        static = None
        if baseline is not None:
            keys[SCORE_DELTA] = SCORE_DELTA
            static = {BASELINE_IMAGE: classifier.model_input.to_model_layout(np.asarray(baseline, np.float32)[None])}

        def feed(start: int, stop: int) -> dict[str, NDArray]:
            images, weights = make_batch(start, stop)
            return {IMAGE: images, CLASS_WEIGHTS: np.ascontiguousarray(weights, dtype=np.float32)}

        for chunk in classifier.run(count, feed, context=self.context, variant=variant, outputs=list(keys),
                                    backward=True, max_batch=max_batch or classifier.gradient_max_batch,
                                    static=static, forwards=1 if baseline is None else 2):
            outputs = {keys[name]: value for name, value in chunk.outputs.items()}
            if input_gradient:
                if self.signature.layout == "NHWC":
                    outputs[INPUT_GRAD] = outputs[INPUT_GRAD].transpose(0, 3, 1, 2)
                outputs[INPUT_GRAD] = np.ascontiguousarray(outputs[INPUT_GRAD], dtype=np.float32)
            yield Chunk(chunk.start, chunk.stop, outputs)

    def perturbed(
        self,
        count: int,
        make_masks: Callable[[int, int], Mapping[str, NDArray]],
        *,
        source: MaskSource,
        image: NDArray[np.float32],
        baseline: NDArray[np.float32],
        per_request: Mapping[str, NDArray] | None = None,
        max_batch: int | None = None,
    ) -> Iterator[Chunk]:
        """Evaluate ``count`` perturbations of ``image`` [C, H, W] built in the graph.

        ``make_masks(start, stop)`` returns ``source``'s per-sample inputs; ``per_request`` its
        per-request ones (e.g. the superpixel map). Sample i is ``m_i ⊙ image + (1 − m_i) ⊙ baseline``.
        Chunks hold the class scores under the output's name.
        """
        yield from self._classifier.run(count, make_masks, context=self.context, variant=Variant.prefix(source),
                                        static=_prefix_inputs(image, baseline, per_request), max_batch=max_batch)

    def perturbation_gradients(
        self,
        count: int,
        make_batch: Callable[[int, int], Mapping[str, NDArray]],
        *,
        source: MaskSource,
        wrt: str,
        image: NDArray[np.float32],
        baseline: NDArray[np.float32],
        per_request: Mapping[str, NDArray] | None = None,
        max_batch: int | None = None,
        cut_final_activation: bool = True,
        score_seed: str = "linear",
    ) -> Iterator[Chunk]:
        """Forward + backward through (perturbation prefix ∘ classifier), differentiated with respect
        to the prefix input ``wrt`` (e.g. ``low_masks``): exact mask gradients for extremal
        perturbation. ``make_batch`` returns the prefix inputs and ``class_weights`` [n, classes];
        ``cut_final_activation`` and ``score_seed`` choose what is differentiated (see
        ``build_gradient_model``). Chunks hold the class scores and ``INPUT_GRAD`` (shaped like ``wrt``).

        Raises:
            GradientError: an op of the classifier has no gradient rule.
        """
        classifier = self._classifier
        variant = Variant.prefix_gradient(source, wrt, cut_final_activation=cut_final_activation,
                                          score_seed=score_seed)
        graph = classifier.compiled(variant).gradient
        yield from classifier.run(count, make_batch, context=self.context, variant=variant,
                                  static=_prefix_inputs(image, baseline, per_request), backward=True,
                                  outputs=[graph.score_output, graph.input_grad],
                                  max_batch=max_batch or classifier.gradient_max_batch)

    # ---------------------------------------------------------------- objective-level evaluations
    def objective_values(
        self,
        count: int,
        make_images: Callable[[int, int], NDArray[np.float32]],
        objective: Objective,
    ) -> Iterator[tuple[int, int, NDArray[np.float32]]]:
        """Evaluate ``count`` images built chunk by chunk by ``make_images(start, stop)``
        ([n, C, H, W] float32) and yield ``(start, stop, values)`` with values [n, targets]."""
        probabilities = self.outputs_are_probabilities
        for chunk in self._classifier.run(count, lambda a, b: {IMAGE: make_images(a, b)}, context=self.context):
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
        probabilities = self.outputs_are_probabilities
        for chunk in self.perturbed(count, make_masks, source=source, image=image, baseline=baseline,
                                    per_request=per_request):
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
        baseline: NDArray[np.float32] | None = None,
        input_gradient: bool = True,
    ) -> Iterator[GradientBatch]:
        """Gradients of every target for ``count`` images built by ``make_images(start, stop)``.

        Each (image, target) pair is one sample of the gradient graph, seeded with the target's
        weights row (one forward + one backward each); chunks always hold whole images. The
        gradient graph differentiates the logits when the model ends in Softmax/Sigmoid (the scores
        stay those of the model's output), and the probabilities when the objective asks for them: the
        model's own output when it is probabilities, else softmax(logits), seeded in the graph
        (``score_seed="softmax"``, still one forward + one backward per pair). A
        ``baseline`` x′ [C, H, W] adds a baseline pass (one more forward per pair) for rule sets
        that read it (DeepLIFT) and fills ``score_delta``. A cross-entropy objective
        (``contrast_loss``) is seeded in the graph with ``softmax(logits) − e_Q``. ``input_gradient=False``: only the
        ``layers``' gradients are computed (the backward stops at them) and ``input_grad`` is None.

        Raises:
            FailedPrecondition: a baseline pass with an objective not linear in the model's output
                (softmax probabilities of a logits model, or a cross-entropy: its rescale multipliers
                assume a linear score); a cross-entropy objective on a model without softmax logits.
            GradientError: the model has an op without a gradient rule.
        """
        check_contrast_loss(objective, output_producer=self.signature.output_producer,
                            outputs_are_probabilities=self.outputs_are_probabilities, gradients=True)
        if objective.cross_entropy and baseline is not None:
            raise FailedPrecondition(
                "target.contrast_loss=cross_entropy is not linear in the logits, which the baseline pass's "
                "rescale multipliers (DeepLIFT) assume: use contrast_loss=difference with this method")
        probability = objective.space == "probability"
        softmax_of_logits = probability and not self.outputs_are_probabilities
        if softmax_of_logits and baseline is not None:
            raise FailedPrecondition(
                "target.score_space=probability on a model that outputs logits is softmax(logits), not linear in "
                "them, which the baseline pass's rescale multipliers (DeepLIFT) assume: leave the score space "
                "unset with this method")
        score_seed = "log_softmax" if objective.cross_entropy else "softmax" if softmax_of_logits else "linear"
        targets = objective.num_targets
        rows_per_chunk = max(targets, (self._classifier.gradient_max_batch // targets) * targets)

        def make_batch(start: int, stop: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
            rows = np.arange(start, stop)  # row r is image r // T seeded with target r % T
            first = start // targets
            images = make_images(first, (stop - 1) // targets + 1)
            return images[rows // targets - first], objective.weights[rows % targets]

        def per_image(rows: NDArray, n: int) -> NDArray:
            """The first n·T rows [n·T, ...] → [n, T, ...]."""
            return rows[: n * targets].reshape(n, targets, *rows.shape[1:])

        pending: list[Chunk] = []  # rows of a partly evaluated image (per-sample models run one row a time)
        first_image = 0
        for chunk in self.gradient_rows(count * targets, make_batch, layers=layers, rules=rules,
                                        max_batch=rows_per_chunk, baseline=baseline,
                                        cut_final_activation=not probability, input_gradient=input_gradient,
                                        score_seed=score_seed):
            pending.append(chunk)
            rows = sum(c.stop - c.start for c in pending)
            if rows < targets:
                continue
            whole = rows - rows % targets
            merged = Chunk(pending[0].start, chunk.stop, concatenate(pending))
            outputs, n = merged.outputs, whole // targets
            yield GradientBatch(
                first_image, first_image + n,
                objective.per_row(outputs[self.signature.output_name][:whole],
                                  outputs_are_probabilities=self.outputs_are_probabilities),
                per_image(outputs[INPUT_GRAD], n) if input_gradient else None,
                {layer: (per_image(outputs[layer], n), per_image(outputs[layer_gradient(layer)], n))
                 for layer in layers},
                _weighted(outputs[SCORE_DELTA][:whole], objective) if SCORE_DELTA in outputs else None,
            )
            first_image += n
            pending = [] if whole == rows else [merged.tail(rows - whole)]

    def objective_value(self, image: NDArray[np.float32], objective: Objective) -> NDArray[np.float32]:
        """Objective values [targets] of one canonical image [C, H, W]."""
        (_, _, values), = self.objective_values(1, lambda a, b: image[None], objective)
        return values[0]
