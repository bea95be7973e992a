"""Gradients of the bundled EfficientNet-Lite0 (legacy export, Pad subgraphs, ReLU6) against torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from builders import png
from skimage import data

from onnxplain.explainers.autodiff import INPUT_GRAD
from onnxplain.explainers.explain import explain_once
from onnxplain.explainers.methods.cam_base import class_activation_maps, layer_gradients
from onnxplain.explainers.methods.grad_cam import grad_cam_weights
from onnxplain.explainers.model import Evaluator, decode_image, layer_gradient, preprocess
from onnxplain.explainers.objectives import Objective

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "bundled_efficientnet_lite0.npz"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_preprocessing_matches_the_reference_pipeline(bundled):
    golden = np.load(GOLDEN)
    tensor, _ = preprocess(decode_image(png(data.coffee())), bundled.config.preprocessing, size=(224, 224), channels=3)
    np.testing.assert_allclose(tensor, golden["x"][0], atol=1e-6)


def test_input_and_cam_layer_gradients_match_torch(bundled):
    golden = np.load(GOLDEN)
    x, seeds, layer = golden["x"], golden["class_weights"], str(golden["layer"])
    assert bundled.cam_layer == layer
    images = np.repeat(x, 2, axis=0)
    (chunk,) = Evaluator(bundled).gradient_rows(2, lambda a, b: (images[a:b], seeds[a:b]), layers=[layer])
    np.testing.assert_allclose(chunk.outputs[bundled.signature.output_name][:1], golden["logits"], rtol=1e-4, atol=2e-4)
    for i in range(2):
        # ReLU6 kinks flipped by float32 rounding make a handful of pixels differ (AUTODIFF.md)
        assert cosine(chunk.outputs[INPUT_GRAD][i], golden["input_grad"][i]) > 0.99999
        assert cosine(chunk.outputs[layer_gradient(layer)][i], golden["layer_grad"][i]) > 0.99999


def test_grad_cam_maps_from_the_head_only_graph_equal_the_full_graphs(bundled):
    """Grad-CAM no longer back-propagates to the pixels; its map is the one the full graph gave."""
    golden = np.load(GOLDEN)
    x, layer = golden["x"][0], str(golden["layer"])
    objective = Objective.for_classes([int(np.argmax(golden["class_weights"][0]))], golden["class_weights"].shape[1])
    evaluator = Evaluator(bundled)
    activation, gradient, input_grad, _ = layer_gradients(evaluator, x, objective, layer)
    assert input_grad is None
    full_activation, full_gradient, full_input_grad, _ = layer_gradients(evaluator, x, objective, layer,
                                                                        input_gradient=True)
    assert full_input_grad is not None
    assert cosine(gradient[0], golden["layer_grad"][0]) > 0.99999
    expected = class_activation_maps(full_activation, grad_cam_weights(full_activation, full_gradient), (224, 224))
    np.testing.assert_allclose(explain_once(bundled, x, "grad_cam", objective).heatmaps, expected,
                               rtol=1e-5, atol=1e-6 * expected.max())
