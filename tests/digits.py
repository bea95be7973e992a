"""The committed digits fixtures (tests/fixtures/digits/, made by tools/train_digits.py) for tests."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from onnxplain.explainers import CompanionModel, ModelConfig, OnnxClassifier

DIGITS = Path(__file__).parent / "fixtures" / "digits"
"""A model repository: digits_cnn (classifier), digits_decoder, digits_encoder, digits_autoencoder (companions)."""


@cache
def classifier() -> OnnxClassifier:
    folder = DIGITS / "digits_cnn"
    return OnnxClassifier.load(folder / "model.onnx", config=ModelConfig.from_file(folder / "config.json"),
                               name="digits_cnn")


@cache
def companion(name: str) -> CompanionModel:
    return CompanionModel.from_folder(DIGITS / name)


def companions() -> dict[str, CompanionModel]:
    return {name: companion(name) for name in ("digits_decoder", "digits_encoder", "digits_autoencoder")}


@cache
def held_out() -> tuple[np.ndarray, np.ndarray]:
    """The held-out split the fixtures were scored on: images [360, 1, 8, 8] in [0, 1], labels [360]."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    _, x_test, _, y_test = train_test_split(images, digits.target, test_size=0.2, random_state=0,
                                            stratify=digits.target)
    return x_test, y_test
