"""Shared fixtures: tiny analytic models, the bundled model, an in-process server on port 0."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import builders
import numpy as np
import onnx
import pytest
from builders import png
from skimage import data

from onnxplain.explainers import ModelConfig, OnnxClassifier

# tests build their graphs afresh: no entries left in (or read from) the user's graph cache;
# tests/test_graph_cache.py exercises the cache with its own folders
os.environ["ONNXPLAIN_GRAPH_CACHE"] = "off"

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "models" / "efficientnet_lite0"


@pytest.fixture(scope="session")
def bundled() -> OnnxClassifier:
    return OnnxClassifier.load(BUNDLED / "model.onnx", config=ModelConfig.from_file(BUNDLED / "config.json"),
                               name="efficientnet_lite0")


@pytest.fixture(scope="session")
def coffee_png() -> bytes:
    return png(data.coffee())


@pytest.fixture(scope="session")
def chelsea_png() -> bytes:
    return png(data.chelsea())


@pytest.fixture(scope="session")
def repository(tmp_path_factory) -> Path:
    """A model repository: the bundled model, a small linear model and CNN, a companion generator, and a
    corrupt one."""
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(BUNDLED, root / "efficientnet_lite0")
    rng = np.random.default_rng(1)
    (root / "linear").mkdir()
    onnx.save(builders.linear(rng.standard_normal((4, 3, 32, 32)).astype(np.float32)), root / "linear" / "model.onnx")
    (root / "linear" / "config.json").write_text('{"labels": ["a", "b", "c", "d"]}')
    (root / "cnn").mkdir()
    onnx.save(builders.small_cnn(size=16), root / "cnn" / "model.onnx")
    (root / "generator").mkdir()  # a companion model, for methods that need one (tests/test_conformance.py)
    onnx.save(builders.small_generator(), root / "generator" / "model.onnx")
    (root / "generator" / "config.json").write_text('{"kind": "companion"}')
    (root / "corrupt").mkdir()
    (root / "corrupt" / "model.onnx").write_bytes(b"this is not an onnx model")
    return root
