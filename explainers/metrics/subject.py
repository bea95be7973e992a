"""The explanation under evaluation, and the means to recompute it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..events import Event, Explanation
from ..model import Evaluator, OnnxClassifier
from ..objectives import Objective
from ..params import MethodParams


@dataclass(frozen=True)
class Subject:
    """What a metric evaluates: ``method`` (with ``method_params``, ``objective`` and ``seed``) ran on
    ``image`` (canonical [C, H, W], read-only) of ``classifier`` and gave ``explanation``
    (``.heatmaps`` [T, H, W]).

    ``model`` is bound to the request's :class:`~explainers.context.RunContext`: a metric's own
    passes go through it, so they are counted, budgeted and cancelled with the request. Metrics that
    rewrite the graph derive new classifiers from ``classifier``.
    """

    classifier: OnnxClassifier
    model: Evaluator
    image: NDArray[np.float32]
    objective: Objective
    method: str
    method_params: MethodParams
    explanation: Explanation
    seed: int
    companions: Any = None  # what explain() takes as companions (the models a method uses by name)

    @property
    def heatmaps(self) -> NDArray[np.float32]:
        """The maps under evaluation, [T, H, W]."""
        return self.explanation.heatmaps

    def reexplain(self, *, image: NDArray[np.float32] | None = None,
                  classifier: OnnxClassifier | None = None) -> Iterator[Event]:
        """The same method, parameters, objective and seed on another ``image`` [C, H, W] and/or
        ``classifier``; its passes are charged to (and cancelled with) this request's context."""
        from ..explain import explain  # the front door imports the metrics: import it when used

        return explain(classifier or self.classifier, self.image if image is None else image, self.method,
                       self.objective, self.method_params, seed=self.seed, context=self.model.context,
                       companions=self.companions)

    def reexplain_once(self, **kwargs) -> Explanation:
        """:meth:`reexplain` drained: its final :class:`Explanation`."""
        result = None
        for event in self.reexplain(**kwargs):
            result = event
        assert isinstance(result, Explanation), "a method must end with an Explanation"
        return result
