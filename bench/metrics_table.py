#!/usr/bin/env python3
"""Deletion and insertion AUC (Petsiuk et al. 2018) of several methods on the bundled model and the
three demo photos (scikit-image's coffee, chelsea, rocket, prepared as ``tools/demo.py`` serves them),
with a random map as the floor every method should beat. Prints a markdown table.

    .venv/bin/python bench/metrics_table.py [--steps 50] [--rise-masks 500] [--deletion-baseline zero]

Scores are probabilities of the top-1 class (the paper's reading). Seconds are wall-clock on this
machine, for the explanation and for each metric; compare them within one run only.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from onnxplain.explainers import Evaluator, Explanation, MetricResult, ModelConfig, Objective, OnnxClassifier, evaluate
from onnxplain.explainers.methods.occlusion import OcclusionParams
from onnxplain.explainers.metrics import Subject, get_metric
from onnxplain.explainers.metrics.registry import metric_rng
from onnxplain.explainers.model import decode_image, preprocess

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "efficientnet_lite0"
PHOTOS = {"coffee": data.coffee, "chelsea": data.chelsea, "rocket": data.rocket}


def photo_tensor(classifier: OnnxClassifier, photo: np.ndarray) -> np.ndarray:
    """A photo as the server sees an uploaded PNG: decoded, resized and normalised, canonical [3, H, W]."""
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="PNG")
    tensor, _ = preprocess(decode_image(buffer.getvalue()), classifier.config.preprocessing,
                           size=(classifier.height, classifier.width), channels=classifier.channels)
    return tensor


def timed_evaluation(classifier, image, method, objective, params, metrics) -> tuple[dict, dict]:
    """Run evaluate(); the seconds of the explanation and of each metric, and the results by name."""
    seconds, results, clock = {}, {}, time.perf_counter()
    for event in evaluate(classifier, image, method, objective, params, metrics):
        if isinstance(event, Explanation | MetricResult):
            now = time.perf_counter()
            name = "explain" if isinstance(event, Explanation) else event.metric
            seconds[name], clock = now - clock, now
            if isinstance(event, MetricResult):
                results[name] = event
    return results, seconds


def random_map_evaluation(classifier, image, objective, metrics, seed: int = 0) -> tuple[dict, dict]:
    """The same metrics on a map of i.i.d. uniform noise (no method run)."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50, help="deletion/insertion steps")
    parser.add_argument("--rise-masks", type=int, default=500)
    parser.add_argument("--occlusion-stride", type=int, default=16)
    parser.add_argument("--deletion-baseline", default="zero", help="zero (the paper's code), mean or blur")
    args = parser.parse_args()
    classifier = OnnxClassifier.load(MODEL_DIR / "model.onnx", config=ModelConfig.from_file(MODEL_DIR / "config.json"),
                                     name="efficientnet_lite0")
    metrics = {"deletion": {"steps": args.steps, "baseline": args.deletion_baseline},
               "insertion": {"steps": args.steps}}
    methods = {"grad_cam": {}, "saliency": {}, "rise": {"masks": args.rise_masks},
               "occlusion": {"window": 2 * args.occlusion_stride, "stride": args.occlusion_stride}, "random": None}
    print(f"bundled model, top-1 class, deletion ({args.deletion_baseline} baseline) / insertion (blur canvas), {args.steps} steps, "
          "probability scores, MoRF\n")
    print("| photo (top-1) | method | deletion AUC ↓ | insertion AUC ↑ | explain s | deletion s | insertion s |")
    print("|---|---|---|---|---|---|---|")
    for photo, load in PHOTOS.items():
        image = photo_tensor(classifier, load())
        top = int(np.argmax(classifier.predict(image[None])[0]))
        objective = Objective.for_classes([top], classifier.num_classes)
        for method, params in methods.items():
            if params is None:
                results, seconds = random_map_evaluation(classifier, image, objective, metrics)
            else:
                results, seconds = timed_evaluation(classifier, image, method, objective, params, metrics)
            print(f"| {photo} ({classifier.labels[top]}) | {method} | {results['deletion'].values[0]:.3f} | "
                  f"{results['insertion'].values[0]:.3f} | {seconds['explain']:.1f} | {seconds['deletion']:.1f} | "
                  f"{seconds['insertion']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
