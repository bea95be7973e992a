"""Scores of blended images and their gradients with respect to the mask, for the mask-optimising
methods (extremal perturbation [19], meaningful perturbation [20]).

Sample i is ``m_i ⊙ x + (1 − m_i) ⊙ x′`` built inside the graph by a perturbation prefix fed low-resolution
masks ``q`` [n, 1, h, w] (:meth:`~explainers.perturb.extremal.SmoothMask.source`), scored with target
``rows[i]`` of the objective. The gradient ``d score / d q`` is exact — the gradient graph of
(prefix ∘ model) seeded as :func:`~explainers.perturb.extremal.gradient_seed` says (one forward and one
backward a mask: a seed that depends on the outputs is computed in the graph) — or, black-box, estimated by
antithetic finite differences along multiscale Rademacher directions (2·directions forwards a mask).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from ..autodiff import CLASS_WEIGHTS, INPUT_GRAD, GradientError
from ..autodiff.builder import FINAL_ACTIVATIONS
from ..errors import FailedPrecondition, InvalidModel
from ..graph.perturbation import MaskSource
from ..model import Evaluator
from ..objectives import Objective, check_contrast_loss
from ..params import MethodParams, param
from ..perturb.extremal import (
    antithetic_gradient,
    gradient_seed,
    multiscale_rademacher,
)

LOW_MASKS = "low_masks"  # the input of the upsampled_masks prefix
GRADIENTS = ("auto", "exact", "finite_differences")
PROBE_STEP = 0.05  # finite-difference step c on the (fed) mask parameters, which live in [0, 1]
DIRECTION_GRIDS = (4, 8, 16)  # finite-difference directions: Rademacher on these grids (multiscale_rademacher)


@dataclass(frozen=True, kw_only=True)
class MaskGradientParams(MethodParams):
    """The parameters of :class:`MaskScores`' gradient, shared by the mask-optimising methods."""

    gradient: str = param("auto", choices=GRADIENTS,
                          doc="auto: exact through the gradient graph when it builds, else finite differences")
    directions: int = param(16, low=1, high=256,
                            doc="antithetic random directions per finite-difference step (2x forward passes)")


@dataclass(frozen=True)
class MaskScores:
    """``image`` x and ``baseline`` x′ [C, H, W] blended by ``source``; ``rows`` [count]: the target of
    each mask; ``exact``: gradients through the gradient graph, else ``directions`` antithetic pairs."""

    model: Evaluator
    objective: Objective
    source: MaskSource
    image: NDArray[np.float32]
    baseline: NDArray[np.float32]
    rows: NDArray[np.integer]
    exact: bool
    directions: int

    @classmethod
    def create(cls, model: Evaluator, objective: Objective, source: MaskSource, image: NDArray[np.float32],
               baseline: NDArray[np.float32], rows: NDArray[np.integer], *, gradient: str, directions: int
               ) -> MaskScores:
        """``gradient``: one of :data:`GRADIENTS`; ``auto`` builds (once per model) the gradient graph,
        evaluating nothing, and falls back to finite differences when it cannot be built.

        Raises:
            GradientError, InvalidModel, FailedPrecondition: ``gradient="exact"`` and the model does not
                differentiate (an op without a rule, or a cross-entropy objective without softmax logits).
        """
        scores = cls(model, objective, source, image, baseline, np.asarray(rows), gradient != "finite_differences",
                     directions)
        if not scores.exact:
            return scores
        try:
            check_contrast_loss(objective, output_producer=model.signature.output_producer,
                                outputs_are_probabilities=model.outputs_are_probabilities, gradients=True)
            for _ in model.perturbation_gradients(0, dict, source=source, wrt=LOW_MASKS, image=image,
                                                  baseline=baseline):
                pass
        except (GradientError, InvalidModel, FailedPrecondition):
            if gradient == "exact":
                raise
            return replace(scores, exact=False)
        return scores

    def moved(self, image: NDArray[np.float32], baseline: NDArray[np.float32]) -> MaskScores:
        """The same scorer on another image and baseline (e.g. both jittered)."""
        return replace(self, image=image, baseline=baseline)

    @property
    def count(self) -> int:
        return len(self.rows)

    @property
    def _cut(self) -> str | None:
        producer = self.model.signature.output_producer
        return producer if producer in FINAL_ACTIVATIONS else None

    def passes_per_step(self) -> tuple[int, int]:
        """(forward, backward) evaluations of one :meth:`gradients` call."""
        if self.exact:
            return self.count, self.count
        return self.count * 2 * self.directions, 0

    def values(self, fed: NDArray[np.floating], rows: NDArray[np.integer] | None = None) -> NDArray[np.float64]:
        """Objective values [n] of masks ``fed`` [n, h, w], mask i scored with target ``rows[i]``
        (default: :attr:`rows`)."""
        rows = self.rows if rows is None else rows
        flat = np.ascontiguousarray(fed[:, None], dtype=np.float32)
        values = np.empty(len(fed))
        for start, stop, chunk in self.model.perturbed_values(
                len(fed), lambda a, b: {LOW_MASKS: flat[a:b]}, self.objective, source=self.source, image=self.image,
                baseline=self.baseline):
            values[start:stop] = chunk[np.arange(stop - start), rows[start:stop]]
        return values

    def gradients(self, fed: NDArray[np.floating], rng: np.random.Generator) -> NDArray[np.float64]:
        """``d score / d fed`` [count, h, w] at masks ``fed`` [count, h, w] (``rng`` draws the
        finite-difference directions)."""
        if self.exact:
            return self._exact(fed)
        directions, weights = multiscale_rademacher(rng, self.count, self.directions, fed.shape[1:], DIRECTION_GRIDS)

        def probe(probes: NDArray[np.float64]) -> NDArray[np.float64]:  # [count, 2K, h, w] -> [count, 2K]
            rows = np.repeat(self.rows, probes.shape[1])
            return self.values(probes.reshape(-1, *fed.shape[1:]), rows).reshape(self.count, -1)

        _, grads = antithetic_gradient(probe, fed, directions, step=PROBE_STEP, weights=weights)
        return grads

    def _exact(self, fed: NDArray[np.floating]) -> NDArray[np.float64]:
        model = self.model
        flat = np.ascontiguousarray(fed[:, None], dtype=np.float32)
        cut, seed = gradient_seed(self.objective, outputs_are_probabilities=model.outputs_are_probabilities,
                                  cut=self._cut)
        weights = self.objective.weights[self.rows].astype(np.float32)
        grads = np.empty(fed.shape)
        for chunk in model.perturbation_gradients(
                len(fed), lambda a, b: {LOW_MASKS: flat[a:b], CLASS_WEIGHTS: weights[a:b]}, source=self.source,
                wrt=LOW_MASKS, image=self.image, baseline=self.baseline, cut_final_activation=cut,
                score_seed=seed):
            grads[chunk.start:chunk.stop] = chunk.outputs[INPUT_GRAD][:, 0]
        return grads
