"""Score-CAM: pytorch-grad-cam's golden maps, a hand-built net with known evidence, a literal
re-implementation, and the layer errors."""

from __future__ import annotations

from pathlib import Path

import builders
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxplain.explainers import ModelConfig, Objective, OnnxClassifier, Progress, explain, explain_once
from onnxplain.explainers.errors import FailedPrecondition, InvalidArgument, NotFound
from onnxplain.explainers.objectives import softmax
from onnxplain.explainers.perturb.masks.bilinear import bilinear_matrix

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SIZE, CELL = 16, 4  # the hand-built net: 16×16 input, 4×4 average pooling → a 4×4 CAM layer


def normalised(heatmap: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's ``scale_cam_image`` without its 1e-7."""
    shifted = heatmap - heatmap.min()
    return shifted / shifted.max()


def evidence_net(class_weights: np.ndarray, *, channels: int = 4) -> onnx.ModelProto:
    """x [N, channels, 16, 16] → AveragePool 4×4/4 → Relu (``act``) → ⊙ gate → GAP → linear.

    The gate keeps the top-left 2×2 cells of ``act`` (the top-left quadrant of the image) and zeros
    the rest: the classes see only that quadrant, ``class_weights`` [classes, channels] says how
    much each channel there counts. ``gated`` (the input of the pooling) is the default CAM layer.
    """
    gate = np.zeros((1, 1, SIZE // CELL, SIZE // CELL), np.float32)
    gate[..., :2, :2] = 1
    nodes = [
        helper.make_node("AveragePool", ["x"], ["pooled"], kernel_shape=[CELL, CELL], strides=[CELL, CELL]),
        helper.make_node("Relu", ["pooled"], ["act"]),
        helper.make_node("Mul", ["act", "gate"], ["gated"]),
        helper.make_node("GlobalAveragePool", ["gated"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w", "b"], ["logits"], transB=1),
    ]
    classes = len(class_weights)
    graph = helper.make_graph(
        nodes, "evidence", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        initializer=[numpy_helper.from_array(gate, "gate"),
                     numpy_helper.from_array(class_weights.astype(np.float32), "w"),
                     numpy_helper.from_array(np.linspace(-0.2, 0.3, classes).astype(np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", builders.OPSET)])
    model.ir_version = 8
    return model


def quadrant_blobs(channels: int = 4) -> np.ndarray:
    """Channel k is 0 except in quadrant k (top-left, top-right, bottom-left, bottom-right), where it is 4 − k."""
    x = np.zeros((channels, SIZE, SIZE), np.float32)
    half = SIZE // 2
    for k in range(min(channels, 4)):
        top, left = (k // 2) * half, (k % 2) * half
        x[k, top : top + half, left : left + half] = 4.0 - k
    return x


def corner_aligned(source: int, target: int) -> np.ndarray:
    """torch ``UpsamplingBilinear2d`` (align_corners=True) as a [target, source] matrix, written literally."""
    matrix = np.zeros((target, source))
    for i in range(target):
        position = i * (source - 1) / (target - 1)
        low = min(int(position), source - 1)
        high = min(low + 1, source - 1)
        matrix[i, low] += 1 - (position - low)
        matrix[i, high] += position - low
    return matrix


def literal_score_cam(classifier: OnnxClassifier, x: np.ndarray, layer: np.ndarray, objective: Objective) -> np.ndarray:
    """Score-CAM one channel at a time with full masked images built in numpy (pytorch-grad-cam's recipe;
    constant channels get an all-zero mask). ``layer`` [K, h, w] are the activations of x."""
    _, height, width = x.shape
    k, h, w = layer.shape
    up_rows, up_cols = corner_aligned(h, height), corner_aligned(w, width)
    scores = []
    for a in layer.astype(np.float64):
        mask = np.zeros((height, width)) if a.max() == a.min() else up_rows @ a @ up_cols.T
        if mask.any():
            mask = (mask - mask.min()) / (mask.max() - mask.min())
        scores.append(objective(classifier.predict((x * mask)[None].astype(np.float32)))[0])
    weights = softmax(np.array(scores, np.float64), axis=0)  # [K, targets]
    cams = np.maximum(np.einsum("kt,khw->thw", weights, layer), 0)
    return bilinear_matrix(h, height) @ cams @ bilinear_matrix(w, width).T


# ---------------------------------------------------------------- agreement with pytorch-grad-cam
def test_agrees_with_pytorch_grad_cam_score_cam():
    """Goldens from tools/fixtures/golden_score_cam.py: a seeded CNN (4×5 CAM layer for a 32×40 input,
    one dead channel) run through pytorch-grad-cam's ``ScoreCAM``."""
    golden = np.load(FIXTURES / "score_cam_golden.npz")
    classifier = OnnxClassifier.load(FIXTURES / "score_cam_model.onnx")
    assert classifier.cam_layer == str(golden["layer"])
    for x, target, cam in zip(golden["x"], golden["targets"], golden["cams"]):
        result = explain_once(classifier, x, "score_cam", Objective.for_classes([int(target)], classifier.num_classes))
        assert result.heatmaps.shape == (1, 32, 40) and result.forward == 16 + 1
        np.testing.assert_allclose(normalised(result.heatmaps[0]), cam, atol=2e-5)


# ---------------------------------------------------------------- analytic models
def test_heat_lands_on_the_channel_that_carries_the_class_evidence():
    # class 0 counts channel 0 (whose blob is in the only quadrant the net looks at); class 1 counts
    # it negatively; class 2 counts channel 1, which is never in that quadrant
    weights = np.array([[10, 0, 0, 0], [-10, 0, 0, 0], [0, 10, 0, 0]], np.float32)
    classifier = OnnxClassifier(evidence_net(weights))
    result = explain_once(classifier, quadrant_blobs(), "score_cam", Objective.for_classes([0, 1, 2], 3),
                          {"layer": "act"})
    half = SIZE // 2
    top_left = np.zeros((SIZE, SIZE), bool)
    top_left[:half, :half] = True
    evidence, against, absent = result.heatmaps
    row, col = np.unravel_index(evidence.argmax(), evidence.shape)
    assert row < half and col < half
    # the softmax puts (nearly) all weight on channel 0: its map, resized, ramps down across the
    # quadrant's edge (half a cell each side) and is 0 beyond
    reach = half + CELL // 2
    assert evidence[top_left].sum() > 0.85 * evidence.sum()
    assert evidence[reach:].max() < 1e-3 * evidence.max() and evidence[:, reach:].max() < 1e-3 * evidence.max()
    assert against[top_left].mean() < 0.5 * against[~top_left].mean()  # the negative evidence is the coldest
    # what class 2 counts never reaches the gate: its scores are equal, its map the plain sum of the maps
    resize = bilinear_matrix(SIZE // CELL, SIZE)
    plain_sum = resize @ quadrant_blobs().reshape(4, 4, CELL, 4, CELL).mean(axis=(2, 4)).sum(0) @ resize.T
    np.testing.assert_allclose(normalised(absent), normalised(plain_sum), atol=1e-5)


def test_the_default_layer_is_the_input_of_global_pooling():
    weights = np.array([[3, 0, 0, 0], [0, 3, 0, 0]], np.float32)
    classifier = OnnxClassifier(evidence_net(weights))
    assert classifier.cam_layer == "gated"
    result = explain_once(classifier, quadrant_blobs(), "score_cam", Objective.for_classes([0], 2))
    half = SIZE // 2
    # the gated maps are 0 outside the top-left cells (the bilinear resize spreads them one cell on)
    assert result.heatmaps[0][:half, :half].min() > 0
    np.testing.assert_array_equal(result.heatmaps[0][half + CELL // 2 :, :], 0)
    np.testing.assert_array_equal(result.heatmaps[0][:, half + CELL // 2 :], 0)


def test_equals_a_literal_reimplementation_with_several_targets_and_constant_channels():
    rng = np.random.default_rng(8)
    weights = rng.standard_normal((3, 6)).astype(np.float32) * 2
    classifier = OnnxClassifier(evidence_net(weights, channels=6), config=ModelConfig(max_batch=4))
    x = rng.standard_normal((6, SIZE, SIZE)).astype(np.float32) + 0.5
    x[4] = 1.3  # a constant channel ≠ 0: its mask must be all zeros, not float32 resize ripples scaled up
    x[5] = -1.0  # a dead channel after the ReLU
    objective = Objective.for_classes([2, 0], 3, contrast=1)
    result = explain_once(classifier, x, "score_cam", objective, {"layer": "act"})
    layer = np.maximum(x.reshape(6, 4, CELL, 4, CELL).mean(axis=(2, 4)), 0)
    np.testing.assert_allclose(result.heatmaps, literal_score_cam(classifier, x, layer, objective), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(result.scores, objective(classifier.predict(x[None]))[0], rtol=1e-6)
    assert result.forward == 6 + 1  # three targets' worth of maps from one set of passes


def _constant_channels_case():
    """evidence_net with 8 channels, three of them constant at the CAM layer (1.3, and two dead after the ReLU)."""
    rng = np.random.default_rng(8)
    weights = rng.standard_normal((3, 8)).astype(np.float32) * 2
    classifier = OnnxClassifier(evidence_net(weights, channels=8), config=ModelConfig(max_batch=3))
    x = rng.standard_normal((8, SIZE, SIZE)).astype(np.float32) + 0.5
    x[2], x[5], x[6] = 1.3, -1.0, -2.0
    layer = np.maximum(x.reshape(8, 4, CELL, 4, CELL).mean(axis=(2, 4)), 0)
    return classifier, x, layer, Objective.for_classes([2, 0], 3, contrast=1)


def test_skipping_constant_channels_scores_their_zero_mask_once_for_the_same_map():
    classifier, x, layer, objective = _constant_channels_case()
    full = explain_once(classifier, x, "score_cam", objective, {"layer": "act"})
    events = list(explain(classifier, x, "score_cam", objective, {"layer": "act", "skip_constant": True}))
    fast = events[-1]
    assert events[0].forward == 8 + 1 and fast.forward == 1 + 1 + 5  # activations, the shared zero mask, 5 others
    assert (fast.extras["channels_scored"], fast.extras["channels_used"]) == (6, 8)
    assert (full.extras["channels_scored"], full.extras["channels_used"]) == (8, 8)
    np.testing.assert_allclose(fast.heatmaps, full.heatmaps, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast.heatmaps, literal_score_cam(classifier, x, layer, objective), rtol=1e-4, atol=1e-5)
    partials = [e.heatmaps for e in events if isinstance(e, Progress) and e.heatmaps is not None]
    np.testing.assert_array_equal(partials[-1], fast.heatmaps)


def test_top_channels_keep_the_largest_activation_mass_and_leave_the_others_out():
    classifier, x, layer, objective = _constant_channels_case()
    result = explain_once(classifier, x, "score_cam", objective, {"layer": "act", "top_channels": 3})
    kept = np.sort(np.argsort(-layer.reshape(8, -1).sum(1), kind="stable")[:3])
    assert result.forward == 3 + 1 and result.extras["channels_used"] == 3
    expected = literal_score_cam(classifier, x, layer[kept], objective)  # Score-CAM over those channels alone
    np.testing.assert_allclose(result.heatmaps, expected, rtol=1e-4, atol=1e-5)


def test_near_constant_channels_count_as_constant_under_a_tolerance():
    classifier, x, layer, objective = _constant_channels_case()
    x = x.copy()
    x[3] = 0.7 + 1e-4 * np.random.default_rng(3).random((SIZE, SIZE))  # range ~1e-4 at the layer
    exact = explain_once(classifier, x, "score_cam", objective, {"layer": "act", "skip_constant": True})
    loose = explain_once(classifier, x, "score_cam", objective,
                         {"layer": "act", "skip_constant": True, "constant_tolerance": 1e-3})
    assert (exact.extras["channels_scored"], loose.extras["channels_scored"]) == (6, 5)


def test_probability_objectives_weight_the_channels_by_softmax_scores():
    weights = np.array([[3, 0, 0, 0], [0, 3, 0, 0]], np.float32)
    classifier = OnnxClassifier(evidence_net(weights))
    x = quadrant_blobs() + np.random.default_rng(2).random((4, SIZE, SIZE)).astype(np.float32)
    objective = Objective.for_classes([0], 2, space="probability")
    result = explain_once(classifier, x, "score_cam", objective, {"layer": "act"})
    layer = np.maximum(x.reshape(4, 4, CELL, 4, CELL).mean(axis=(2, 4)), 0)
    np.testing.assert_allclose(result.heatmaps, literal_score_cam(classifier, x, layer, objective), rtol=1e-4,
                               atol=1e-6)


def test_streams_maps_over_the_channels_scored_so_far():
    classifier = OnnxClassifier(builders.small_cnn(hidden=7), config=ModelConfig(max_batch=3))
    x = np.random.default_rng(1).standard_normal((3, 16, 16)).astype(np.float32)
    events = list(explain(classifier, x, "score_cam", Objective.for_classes([1], 3)))
    progress = [e for e in events if isinstance(e, Progress)]
    assert events[0].forward == 8 and [p.done for p in progress] == [1, 4, 7, 8]
    assert progress[0].heatmaps is None and all(p.heatmaps.shape == (1, 16, 16) for p in progress[1:])
    np.testing.assert_array_equal(progress[-1].heatmaps, events[-1].heatmaps)


# ---------------------------------------------------------------- layers and parameters
def test_another_layer_can_be_named():
    classifier = OnnxClassifier.load(FIXTURES / "score_cam_model.onnx")
    layer = "/features/features.1/features.1.2/Relu_output_0"  # 12 channels, 8×10
    x = np.load(FIXTURES / "score_cam_golden.npz")["x"][0]
    result = explain_once(classifier, x, "score_cam", Objective.for_classes([3], 10), {"layer": layer})
    assert result.forward == 12 + 1 and result.heatmaps.shape == (1, 32, 40)


def test_an_unknown_layer_is_rejected_with_the_layers_that_exist():
    classifier = OnnxClassifier(builders.small_cnn())
    x = np.zeros((3, 16, 16), np.float32)
    with pytest.raises(NotFound) as info:
        explain_once(classifier, x, "score_cam", Objective.for_classes([0], 3), {"layer": "features.9"})
    assert "features.9" in str(info.value) and "act" in info.value.available and "conv" in info.value.available


def test_a_model_without_4d_activations_cannot_be_explained():
    classifier = OnnxClassifier(builders.linear(np.ones((2, 3, 8, 8), np.float32)))
    with pytest.raises(FailedPrecondition, match="4-D activation"):
        explain_once(classifier, np.zeros((3, 8, 8), np.float32), "score_cam", Objective.for_classes([0], 2))


def test_the_layer_must_be_a_string():
    with pytest.raises(InvalidArgument) as info:
        explain_once(OnnxClassifier(builders.small_cnn()), np.zeros((3, 16, 16), np.float32), "score_cam",
                     Objective.for_classes([0], 3), {"layer": 3})
    assert info.value.field == "params.layer"
