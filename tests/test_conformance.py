"""Conformance suite: every registered method obeys the method contract.

Shape and finiteness, event order, evaluation accounting, seed determinism, batch-size
invariance, the streamed partial result converging to the final one, the caller's input left
untouched, and out-of-range parameters rejected with the parameter named.
"""

from __future__ import annotations

import dataclasses

import builders
import numpy as np
import pytest

from onnxplain.explainers import (
    CompanionModel,
    Explanation,
    ModelConfig,
    Objective,
    OnnxClassifier,
    Planned,
    Progress,
    explain,
    list_methods,
)
from onnxplain.explainers.errors import InvalidArgument

# Cheaper-than-default parameters so the suite stays fast on a 16x16 model (one line per method).
FAST = {
    "occlusion": {"window": 4, "stride": 2},
    "rise": {"masks": 64, "grid": 4},
    "lime": {"segments": 8, "samples": 40},
    "score_cam": {},
    "extremal_perturbation": {"areas": [0.1], "iterations": 8, "mask_step": 4},
    "meaningful_perturbation": {"iterations": 8, "mask_step": 4},
    "integrated_gradients": {"steps": 8},
    "smoothgrad": {"samples": 4},
    "cem": {"iterations": 6, "search_steps": 2},
    "cdeepex": {"generator": "generator", "reconstruction_steps": 3, "outer_steps": 2, "inner_steps": 2},
}
METHODS = [spec.name for spec in list_methods()]


def classifier(max_batch: int = 8) -> OnnxClassifier:
    return OnnxClassifier(builders.small_cnn(), config=ModelConfig(max_batch=max_batch))


def image() -> np.ndarray:
    return np.random.default_rng(11).standard_normal((3, 16, 16)).astype(np.float32)


OBJECTIVE = Objective.for_classes([0, 2], 3)
CONTRASTS = {"cdeepex": Objective.for_classes([0, 2], 3, contrast=1)}
"""Methods that explain "P rather than Q" only get the same targets with a contrast class."""


def companions() -> dict[str, CompanionModel]:
    """What methods that need companion models get (the test server's repository holds the same)."""
    return {"generator": CompanionModel(builders.small_generator(), name="generator")}


def run(method: str, *, max_batch: int = 8, seed: int = 0, x: np.ndarray | None = None):
    return list(explain(classifier(max_batch), image() if x is None else x, method,
                        CONTRASTS.get(method, OBJECTIVE), FAST.get(method), seed=seed, companions=companions()))


@pytest.mark.parametrize("method", METHODS)
def test_event_order_shape_and_accounting(method):
    events = run(method)
    planned, *middle, final = events
    assert isinstance(planned, Planned) and isinstance(final, Explanation)
    assert all(isinstance(e, Progress) for e in middle)
    done = [e.done for e in middle]
    assert done == sorted(done) and all(0 < d <= planned.total for d in done)
    assert final.heatmaps.shape == (2, 16, 16) and final.heatmaps.dtype == np.float32
    assert np.all(np.isfinite(final.heatmaps)) and final.scores.shape == (2,)
    assert final.forward + final.backward == planned.total


@pytest.mark.parametrize("method", METHODS)
def test_streamed_partial_result_ends_at_the_final_result(method):
    events = run(method)
    partials = [e.heatmaps for e in events if isinstance(e, Progress) and e.heatmaps is not None]
    if partials:
        np.testing.assert_allclose(partials[-1], events[-1].heatmaps, rtol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_result_and_batch_size_invariance(method):
    reference = run(method, seed=5)[-1].heatmaps
    np.testing.assert_array_equal(run(method, seed=5)[-1].heatmaps, reference)
    for max_batch in (1, 3):
        np.testing.assert_allclose(run(method, seed=5, max_batch=max_batch)[-1].heatmaps, reference, rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_input_is_not_mutated(method):
    x = image()
    before = x.copy()
    run(method, x=x)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("method", METHODS)
def test_out_of_range_parameters_are_rejected_by_name(method):
    from onnxplain.explainers import get_method

    spec = get_method(method)
    for p in spec.params.describe():
        bad = []
        if p.low is not None:
            bad.append(p.low - 1)
        if p.high is not None:
            bad.append(p.high + 1)
        if p.choices:
            bad.append("not-a-choice")
        for value in bad:
            with pytest.raises(InvalidArgument) as info:
                spec.params.from_mapping({p.name: value})
            assert info.value.field == f"params.{p.name}" and p.name in str(info.value)


@pytest.mark.parametrize("method", METHODS)
def test_parameters_are_frozen_keyword_only_dataclasses(method):
    from onnxplain.explainers import get_method

    params_type = get_method(method).params
    params = params_type()
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.__setattr__(next((p.name for p in params_type.describe()), "anything"), 1)
    with pytest.raises(TypeError):
        params_type(1)
