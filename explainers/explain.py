"""The library's front door: run a registered method on one image."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .blas import one_blas_thread
from .context import RunContext
from .errors import InvalidArgument, NonFiniteResult
from .events import Event, Explanation
from .methods import get_method
from .model import Evaluator, OnnxClassifier
from .objectives import Objective
from .params import MethodParams


def explain(
    classifier: OnnxClassifier,
    image: NDArray[np.float32],
    method: str,
    objective: Objective,
    params: MethodParams | Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    context: RunContext | None = None,
) -> Iterator[Event]:
    """Run ``method`` on a canonical ``image`` [C, H, W]; yields the method's events.

    ``params`` is the method's parameter dataclass or a mapping of its fields (paper defaults
    for the rest). The image is passed read-only: a method cannot mutate the caller's array.
    While the method works (not while the caller holds an event) numpy's BLAS uses one thread,
    when iterated on the main thread (:mod:`explainers.blas`).

    Raises:
        NotFound: unknown method. InvalidArgument: bad parameter or image.
    """
    spec = get_method(method)
    params = method_params(method, params)
    expected = (classifier.channels, classifier.height, classifier.width)
    if image.shape != expected:
        raise InvalidArgument("image", f"shape {list(image.shape)}; allowed: {list(expected)} (C, H, W)")
    if not np.all(np.isfinite(image)):
        raise InvalidArgument("image", "contains NaN or infinite values")
    if objective.weights.shape[1] != classifier.num_classes:
        raise InvalidArgument(
            "target.class_weights", f"{objective.weights.shape[1]} classes; the model has {classifier.num_classes}"
        )
    frozen = np.array(image, dtype=np.float32, copy=True)
    frozen.setflags(write=False)
    evaluator = Evaluator(classifier, context)
    steps = spec.explain(evaluator, frozen, objective, params, rng=np.random.default_rng(seed))
    try:
        while True:
            with one_blas_thread():  # onnxruntime owns the cores while the method works (explainers/blas.py)
                event = next(steps, None)
            if event is None:
                return
            if isinstance(event, Explanation) and not np.all(np.isfinite(event.heatmaps)):
                raise NonFiniteResult(f"{method} produced NaN or infinite heatmap values from a finite input "
                                      "(a bug, or a model whose scores overflow); nothing is returned as a result")
            yield event
    finally:
        steps.close()  # a caller that stops early (cancel, deadline) ends the method now


def method_params(method: str, params: MethodParams | Mapping[str, Any] | None) -> MethodParams:
    """``params`` as ``method``'s parameter dataclass: built from a mapping (paper defaults for the rest),
    or checked to be of the method's type.

    Raises:
        NotFound: unknown method. InvalidArgument: a bad parameter, or another method's dataclass.
    """
    spec = get_method(method)
    if params is None or isinstance(params, Mapping):
        return spec.params.from_mapping(params or {})
    if not isinstance(params, spec.params):
        raise InvalidArgument("params", f"{type(params).__name__} given; {method} takes {spec.params.__name__}")
    return params


def explain_once(*args: Any, **kwargs: Any) -> Explanation:
    """Drain :func:`explain` and return its final :class:`Explanation`."""
    result = None
    for event in explain(*args, **kwargs):
        result = event
    assert isinstance(result, Explanation), "a method must end with an Explanation"
    return result


def top_classes(scores: NDArray[np.floating], k: int) -> list[int]:
    """Indices of the ``k`` largest scores [classes], best first (ties: lower index first)."""
    if not 1 <= k <= len(scores):
        raise InvalidArgument("target.top_k", f"{k} is out of range; allowed: [1, {len(scores)}]")
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    return [int(i) for i in order[:k]]
