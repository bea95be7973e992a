"""Perturbation-prefixed graphs: the masks built in the graph equal independent computations."""

from __future__ import annotations

import builders
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from onnxplain.explainers import ModelConfig, OnnxClassifier, RunContext
from onnxplain.explainers.graph.perturbation import MASK, prefixed_model
from onnxplain.explainers.model import Evaluator
from onnxplain.explainers.perturb.masks.grid import grid_masks
from onnxplain.explainers.perturb.masks.superpixels import segment_masks
from onnxplain.explainers.perturb.masks.upsampled import upsampled_masks
from onnxplain.explainers.perturb.masks.windows import window_masks

RNG = np.random.default_rng(4)
H, W = 12, 10


def identity_classifier(layout: str = "NCHW"):
    """A 'classifier' whose logits are its input pixels: the blended image comes back out."""
    return builders.linear(np.eye(3 * H * W, dtype=np.float32).reshape(3 * H * W, 3, H, W), layout=layout)


def run_prefix(source, feeds, *, layout="NCHW", image=None, baseline=None):
    model = prefixed_model(identity_classifier(layout), "x", layout=layout, input_type=TensorProto.FLOAT, source=source)
    model.graph.output.append(helper.make_tensor_value_info(MASK, TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    image = RNG.standard_normal((1, 3, H, W)).astype(np.float32) if image is None else image
    baseline = np.zeros_like(image) if baseline is None else baseline
    logits, mask = session.run(None, {**feeds, "source_image": image, "source_baseline": baseline})
    return logits.reshape(-1, 3, H, W), mask, image


def test_windows_blend_the_baseline_into_the_box():
    boxes = np.array([[0, 0, 0, 0], [2, 3, 5, 9], [10, 8, 12, 10]], np.int64)
    baseline = np.full((1, 3, H, W), 7.0, np.float32)
    blended, mask, image = run_prefix(window_masks(H, W), {"windows": boxes}, baseline=baseline)
    for box, sample in zip(boxes, blended):
        expected = image[0].copy()
        top, left, bottom, right = box
        expected[:, top:bottom, left:right] = 7.0
        np.testing.assert_allclose(sample, expected, atol=1e-5)


def test_segments_switch_superpixels_on_and_off():
    segments = RNG.integers(0, 5, (H, W)).astype(np.int64)
    on = RNG.integers(0, 2, (4, 5)).astype(np.float32)
    _, mask, _ = run_prefix(segment_masks(H, W), {"segments_on": on, "segments": segments})
    np.testing.assert_array_equal(mask[:, 0], on[:, segments])


def test_rise_grids_match_a_bilinear_resize_and_shifted_crop():
    grid = 4
    cell_h, cell_w = -(-H // grid), -(-W // grid)
    grids = RNG.integers(0, 2, (3, grid, grid)).astype(np.float32)
    shifts = np.array([[0, 0], [1, 2], [cell_h - 1, cell_w - 1]], np.int64)
    _, mask, _ = run_prefix(grid_masks(H, W, grid), {"grids": grids, "shifts": shifts})
    # independent reference: onnxruntime's own Resize (linear, half_pixel), then crop
    resize = helper.make_model(helper.make_graph(
        [helper.make_node("Resize", ["g", "", "", "sizes"], ["u"], mode="linear",
                          coordinate_transformation_mode="half_pixel")],
        "r", [helper.make_tensor_value_info("g", TensorProto.FLOAT, [1, 1, grid, grid]),
              helper.make_tensor_value_info("sizes", TensorProto.INT64, [4])],
        [helper.make_tensor_value_info("u", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(resize.SerializeToString(), providers=["CPUExecutionProvider"])
    sizes = np.array([1, 1, (grid + 1) * cell_h, (grid + 1) * cell_w], np.int64)
    for i, (dy, dx) in enumerate(shifts):
        up = session.run(None, {"g": grids[i][None, None], "sizes": sizes})[0][0, 0]
        np.testing.assert_allclose(mask[i, 0], up[dy : dy + H, dx : dx + W], atol=1e-5)


@pytest.mark.parametrize("normalise", [False, True])
def test_upsampled_masks(normalise):
    low = RNG.random((2, 1, 3, 4)).astype(np.float32)
    _, mask, _ = run_prefix(upsampled_masks(H, W, 3, 4, normalise=normalise), {"low_masks": low})
    assert mask.shape == (2, 1, H, W)
    if normalise:
        np.testing.assert_allclose(mask.min(axis=(2, 3)), 0, atol=1e-6)
        np.testing.assert_allclose(mask.max(axis=(2, 3)), 1, atol=1e-6)
    else:  # bilinear with clamped edges keeps the corner values and the mean roughly
        np.testing.assert_allclose(mask[:, 0, 0, 0], low[:, 0, 0, 0], atol=1e-6)


def test_nhwc_models_get_the_blend_in_their_layout():
    boxes = np.array([[1, 1, 4, 4]], np.int64)
    nchw, _, image = run_prefix(window_masks(H, W), {"windows": boxes})
    nhwc, _, _ = run_prefix(window_masks(H, W), {"windows": boxes}, layout="NHWC", image=image)
    np.testing.assert_allclose(nhwc, nchw, rtol=1e-6)


def test_classifier_counts_only_the_small_per_sample_inputs():
    classifier = OnnxClassifier(builders.small_cnn(size=16), config=ModelConfig(max_batch=4))
    image = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    boxes = np.tile(np.array([[0, 0, 4, 4]], np.int64), (10, 1))
    context = RunContext()
    chunks = list(Evaluator(classifier, context).perturbed(10, lambda a, b: {"windows": boxes[a:b]},
                                                            source=window_masks(16, 16), image=image,
                                                            baseline=np.zeros_like(image)))
    occluded = image.copy()
    occluded[:, :4, :4] = 0
    np.testing.assert_allclose(chunks[0].outputs["logits"][0], classifier.predict(occluded[None])[0], rtol=1e-5)
    assert context.forward == 10 and context.bytes_fed == 10 * 4 * 8  # 32 bytes a sample, not 3 KB
