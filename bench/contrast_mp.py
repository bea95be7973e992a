"""Meaningful perturbation and contrastive (cross-entropy) Grad-CAM on the bundled EfficientNet-Lite0.

One process, back to back: the raw forward rate (the plain session at batch 1 and 8, the best kept) and the
forward+backward rate of the input-gradient graph at batch 1, then ``meaningful_perturbation`` on coffee
(espresso, default parameters unless ``--iterations``) with its latency, passes and
``vs_passes = latency / (forwards / raw forward rate + backwards × F+B time)`` (1.0 = no overhead over the
bare passes), then Grad-CAM of "tiger cat rather than tabby" on chelsea with ``contrast_loss`` difference
and cross_entropy (median of ``--runs``) and their ratio. Usage:
``python bench/contrast_mp.py [--iterations N] [--runs R]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from onnxplain.explainers import Evaluator, ModelConfig, Objective, OnnxClassifier, explain_once
from onnxplain.explainers.model import preprocess

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "efficientnet_lite0"


def timed(call, runs: int) -> float:
    """Median seconds of ``runs`` calls after one warm-up."""
    call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300, help="meaningful perturbation steps (paper: 300)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    config = ModelConfig.from_file(MODEL_DIR / "config.json")
    classifier = OnnxClassifier.load(MODEL_DIR / "model.onnx", config=config, name="efficientnet_lite0")

    def photo(array):
        return preprocess(Image.fromarray(array), config.preprocessing, size=(224, 224), channels=3)[0]

    coffee, chelsea = photo(skimage.data.coffee()), photo(skimage.data.chelsea())
    rates = {}
    for batch in (1, 8):
        images = np.repeat(coffee[None], batch, axis=0)
        rates[batch] = batch / timed(lambda images=images: classifier.predict(images), args.runs)
    forward_rate = max(rates.values())
    espresso = classifier.labels.index("espresso")
    plain = Objective.for_classes([espresso], 1000)
    evaluator = Evaluator(classifier)
    fb_seconds = timed(lambda: list(evaluator.gradients(1, lambda a, b: coffee[None], plain)), args.runs)

    start = time.perf_counter()
    result = explain_once(classifier, coffee, "meaningful_perturbation", plain, {"iterations": args.iterations},
                          seed=0)
    latency = time.perf_counter() - start
    ideal = result.forward / forward_rate + result.backward * fb_seconds

    tiger, tabby = classifier.labels.index("tiger cat"), classifier.labels.index("tabby")
    cams = {loss: timed(lambda loss=loss: explain_once(classifier, chelsea, "grad_cam", Objective.for_classes(
        [tiger], 1000, contrast=tabby, loss=loss)), args.runs) for loss in ("difference", "cross_entropy")}
    print(json.dumps({
        "raw_forward_passes_per_s": {str(b): round(r, 2) for b, r in rates.items()},
        "forward_backward_s_batch1": round(fb_seconds, 4),
        "meaningful_perturbation": {
            "iterations": args.iterations, "latency_s": round(latency, 2), "forward": result.forward,
            "backward": result.backward, "exact_gradient": result.extras["exact_gradient"],
            "score": float(result.scores[0]), "score_deleted": result.extras["score_deleted"],
            "deleted_area": result.extras["deleted_area"], "ideal_s": round(ideal, 2),
            "vs_passes": round(latency / ideal, 2),
            "vs_raw_forward_throughput": round(latency * forward_rate / (result.forward + result.backward), 2),
        },
        "grad_cam_s": {loss: round(s, 4) for loss, s in cams.items()},
        "grad_cam_cross_entropy_over_difference": round(cams["cross_entropy"] / cams["difference"], 3),
    }, indent=2))


if __name__ == "__main__":
    main()
