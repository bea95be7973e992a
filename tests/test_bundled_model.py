"""The bundled EfficientNet-Lite0: real predictions on real photos, and occlusion on the cup."""

from __future__ import annotations

import numpy as np
from builders import png
from skimage import data

from onnxplain.explainers import Objective, explain_once
from onnxplain.explainers.model import decode_image, preprocess
from onnxplain.explainers.objectives import softmax

CATS = {"tiger cat", "Egyptian cat", "tabby"}


def prepare(bundled, photo):
    image = decode_image(png(photo))
    return preprocess(image, bundled.config.preprocessing, size=(224, 224), channels=3)


def top(bundled, photo, k=3):
    tensor, _ = prepare(bundled, photo)
    probabilities = softmax(bundled.predict(tensor[None])[0].astype(np.float64))
    order = np.argsort(-probabilities)[:k]
    return [(bundled.labels[i], probabilities[i]) for i in order]


def test_model_info(bundled):
    info = bundled.info
    assert (info.layout, info.output_kind, info.num_classes, info.batch_mode) == ("NCHW", "logits", 1000, "dynamic")
    assert (info.channels, info.height, info.width) == (3, 224, 224) and info.opset == 17


def test_coffee_is_an_espresso(bundled):
    label, probability = top(bundled, data.coffee())[0]
    assert label == "espresso" and 0.93 < probability < 0.98


def test_chelsea_is_a_cat(bundled):
    assert {label for label, _ in top(bundled, data.chelsea())} == CATS


def test_occlusion_heat_is_on_the_cup(bundled):
    tensor, geometry = prepare(bundled, data.coffee())
    espresso = bundled.labels.index("espresso")
    result = explain_once(bundled, tensor, "occlusion", Objective.for_classes([espresso], 1000))
    heat = np.nan_to_num(np.clip(geometry.to_original(result.heatmaps)[0], 0, None))
    assert heat.shape == (400, 600)
    cup = np.zeros(heat.shape, bool)
    cup[10:240, 170:420] = True  # the cup and the coffee in it, original pixels (y, x)
    assert heat[cup].sum() > 1.5 * heat[~cup].sum()
    assert heat[cup].mean() > 3 * heat[~cup].mean()
