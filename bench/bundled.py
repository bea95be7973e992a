"""Shared by the metric benchmarks (``metrics_table.py``, ``sanity_table.py``, ``evaluation_table.py``):
the bundled EfficientNet-Lite0, the three demo photos prepared as the server prepares an uploaded PNG
(``tools/demo.py`` serves the same scikit-image samples), and timed evaluation of a method or of a
random map. Import it from a script in ``bench/`` (the script's folder is on ``sys.path``)."""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from skimage import data

from onnxplain.explainers import Evaluator, Explanation, MetricResult, ModelConfig, OnnxClassifier, evaluate
from onnxplain.explainers.methods.occlusion import OcclusionParams
from onnxplain.explainers.metrics import Subject, get_metric
from onnxplain.explainers.metrics.registry import metric_rng

BUNDLED = Path(__file__).resolve().parents[1] / "models" / "efficientnet_lite0"
PHOTOS = {"chelsea": data.chelsea, "coffee": data.coffee, "rocket": data.rocket}


def load_bundled() -> OnnxClassifier:
    """``models/efficientnet_lite0`` with its ``config.json`` (224×224, ImageNet labels)."""
    return OnnxClassifier.load(BUNDLED / "model.onnx", config=ModelConfig.from_file(BUNDLED / "config.json"),
                               name="efficientnet_lite0")


def photo_png(name: str) -> bytes:
    """One of :data:`PHOTOS` encoded as PNG, as a client uploads it."""
    buffer = io.BytesIO()
    Image.fromarray(PHOTOS[name]()).save(buffer, format="PNG")
    return buffer.getvalue()


def photo_tensor(classifier: OnnxClassifier, name: str) -> np.ndarray:
    """A demo photo as the server sees the uploaded PNG: decoded, resized, normalised, [3, H, W]."""
    tensor, _ = classifier.preprocess(photo_png(name))
    return tensor


def timed_evaluation(classifier, image, method, objective, params, metrics, *, seed: int = 0) -> tuple[dict, dict]:
    """Run ``evaluate()``; the metric results by name and the seconds of the explanation (``explain``) and
    of each metric (by name), measured between the events that close them."""
    seconds, results, clock = {}, {}, time.perf_counter()
    for event in evaluate(classifier, image, method, objective, params, metrics, seed=seed):
        if isinstance(event, Explanation | MetricResult):
            now = time.perf_counter()
            name = "explain" if isinstance(event, Explanation) else event.metric
            seconds[name], clock = now - clock, now
            if isinstance(event, MetricResult):
                results[name] = event
    return results, seconds


def random_map_evaluation(classifier, image, objective, metrics: Mapping[str, Mapping[str, Any]],
                          seed: int = 0) -> tuple[dict, dict]:
    """The same metrics on a map of i.i.d. uniform noise [1, H, W] (no method run): the floor a method's
    map should beat. Only metrics that read the map alone make sense here (not the sanity checks, which
    re-run a method)."""
    rng = np.random.default_rng(seed)
    heatmaps = rng.random((1, classifier.height, classifier.width)).astype(np.float32)
    subject = Subject(classifier, Evaluator(classifier), image, objective, "occlusion", OcclusionParams(),
                      Explanation(heatmaps, np.zeros(1, np.float32), 0), seed)
    seconds, results = {"explain": 0.0}, {}
    for name, params in metrics.items():
        spec = get_metric(name)
        clock = time.perf_counter()
        *_, result = spec.evaluate(subject, spec.params.from_mapping(params), rng=metric_rng(seed, name))
        seconds[name], results[name] = time.perf_counter() - clock, result
    return results, seconds
