"""Gradients of the bundled EfficientNet-Lite0 (legacy export, Pad subgraphs, ReLU6) against torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from builders import png
from skimage import data

from onnxplain.explainers.autodiff import INPUT_GRAD
from onnxplain.explainers.model import Evaluator, decode_image, layer_gradient, preprocess

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
