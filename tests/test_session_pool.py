"""The session pool: one compiled session per graph variant, bounded in bytes (LRU), built once."""

from __future__ import annotations

import threading
from pathlib import Path

import builders
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnxplain.explainers import ModelConfig, Objective, OnnxClassifier, explain_once
from onnxplain.explainers.errors import InvalidArgument
from onnxplain.explainers.graph.skeleton import is_weight, serialized_bytes
from onnxplain.explainers.model import PLAIN_VARIANT, SessionPool, Variant
from onnxplain.explainers.perturb.masks.grid import grid_masks

GRIDS = list(range(2, 14))  # 12 distinct RISE grids: 12 perturbation-prefix variants
IMAGE = np.random.default_rng(3).standard_normal((3, 16, 16)).astype(np.float32)
OBJECTIVE = Objective.for_classes([1], 3)


def open_session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def rise(classifier: OnnxClassifier, grid: int) -> np.ndarray:
    return explain_once(classifier, IMAGE, "rise", OBJECTIVE, {"grid": grid, "masks": 8}, seed=0).heatmaps


def variant_bytes() -> dict[Variant, int]:
    """What each variant weighs, measured in an unbounded pool."""
    classifier = OnnxClassifier(builders.small_cnn())
    sizes = {PLAIN_VARIANT: classifier.sessions.stats().nbytes}
    for grid in GRIDS:
        variant = Variant.prefix(grid_masks(16, 16, grid))
        sizes[variant] = classifier.compiled(variant).nbytes
    return sizes


def test_a_sweep_of_rise_grids_stays_within_the_bound_and_evicts_least_recently_used_first():
    sizes = variant_bytes()
    prefixes = [Variant.prefix(grid_masks(16, 16, grid)) for grid in GRIDS]
    assert len(set(prefixes)) == 12 and all(sizes[v] > 0 for v in prefixes)
    bound = sizes[PLAIN_VARIANT] + sum(sizes[v] for v in prefixes[-3:])  # the plain graph and the last 3 grids
    classifier = OnnxClassifier(builders.small_cnn(), config=ModelConfig(max_cache_bytes=bound))
    for grid in GRIDS:
        rise(classifier, grid)
        assert classifier.sessions.stats().nbytes <= bound
    held = classifier.sessions.variants()  # least recently used first
    assert PLAIN_VARIANT in held  # pinned
    assert [v for v in held if v != PLAIN_VARIANT] == prefixes[-3:]
    stats = classifier.sessions.stats()
    assert (stats.entries, stats.builds, stats.evictions) == (4, 13, 9)
    rise(classifier, GRIDS[-3])  # touched: now the most recently used
    rise(classifier, 2)  # rebuilt: evicts the least recently used, grid 12
    held = [v for v in classifier.sessions.variants() if v != PLAIN_VARIANT]
    assert held == [prefixes[-1], prefixes[-3], prefixes[0]]


def test_an_evicted_variant_is_rebuilt_transparently_with_identical_results():
    roomy = OnnxClassifier(builders.small_cnn())
    expected = rise(roomy, 5)
    tight = OnnxClassifier(builders.small_cnn(), config=ModelConfig(max_cache_bytes=0))
    first = rise(tight, 5)
    rise(tight, 6)  # a bound of 0 keeps only the newest variant (and the pinned plain graph)
    assert Variant.prefix(grid_masks(16, 16, 5)) not in tight.sessions.variants()
    again = rise(tight, 5)
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(again, expected)
    assert tight.sessions.stats().builds == 4  # plain, grid 5, grid 6, grid 5 again


def test_the_same_variant_asked_from_several_threads_is_built_once():
    built, started = [], threading.Barrier(8)
    release = threading.Event()
    classifier = OnnxClassifier(builders.small_cnn())

    def slow_build(variant):
        built.append(variant)
        release.wait(5)  # hold the build until every thread has asked
        return classifier.model, None

    pool = SessionPool(slow_build, open_session, max_bytes=1 << 30)
    results = []

    def ask():
        started.wait()
        results.append(pool.get(Variant.exposing(("act",))))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    threading.Timer(0.3, release.set).start()
    for thread in threads:
        thread.join(10)
    assert len(built) == 1 and len(results) == 8
    assert all(result is results[0] for result in results)
    assert pool.stats().builds == 1


def test_a_failed_build_is_not_kept_and_is_retried():
    calls = []
    classifier = OnnxClassifier(builders.small_cnn())

    def failing_once(variant):
        calls.append(variant)
        if len(calls) == 1:
            raise RuntimeError("first build fails")
        return classifier.model, None

    pool = SessionPool(failing_once, open_session, max_bytes=1 << 30)
    with pytest.raises(RuntimeError, match="first build fails"):
        pool.get(PLAIN_VARIANT)
    assert pool.stats().entries == 0
    assert pool.get(PLAIN_VARIANT).session is not None and len(calls) == 2


@pytest.mark.parametrize("value", [-1, 2.5, "1"])
def test_max_cache_bytes_is_checked(value):
    with pytest.raises(InvalidArgument, match="config.max_cache_bytes"):
        ModelConfig(max_cache_bytes=value)


@pytest.mark.parametrize("path", ["tests/fixtures/vgg_legacy.onnx", "models/efficientnet_lite0/model.onnx"])
def test_a_graphs_estimated_bytes_are_its_serialized_size(path):
    """serialized_bytes skips walking the weights' bytes, and still gives ByteSize to within a few bytes each."""
    model = onnx.load(Path(__file__).resolve().parents[1] / path)
    weights = sum(is_weight(t) for t in model.graph.initializer)
    assert weights and abs(serialized_bytes(model) - model.ByteSize()) <= 16 * weights


def test_weights_in_typed_fields_are_measured_not_estimated():
    """float16 weights kept in int32_data are varint-encoded, 3 bytes a value here rather than 2."""
    model = builders.small_cnn()
    values = np.full(64_000, 1.5, np.float16)
    model.graph.initializer.append(onnx.helper.make_tensor("half", onnx.TensorProto.FLOAT16, [64_000],
                                                           values.view(np.uint16).astype(np.int32), raw=False))
    assert abs(serialized_bytes(model) - model.ByteSize()) <= 64  # estimated from the item size: 64,000 off


def test_loading_a_classifier_compiles_its_model_once():
    """The session the batch check compiled is the plain session (a large model's compile took seconds)."""
    compiled = []

    class Counting(OnnxClassifier):
        def _open_session(self, model, providers=None):
            compiled.append(model)
            return super()._open_session(model, providers)

    classifier = Counting(builders.small_cnn())
    assert len(compiled) == 1 and classifier.batch_mode == "dynamic"
    assert classifier.sessions.variants() == [PLAIN_VARIANT] and classifier.sessions.stats().builds == 1
    assert classifier.predict(np.zeros((2, 3, 16, 16), np.float32)).shape == (2, 3)
