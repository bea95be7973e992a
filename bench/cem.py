"""CEM's cost against the bare model work it does, on the digits CNN and the bundled EfficientNet-Lite0.

Each case runs ``cem`` on the top-1 class and, right after each run, its **baseline**: the same
number of model evaluations issued directly to onnxruntime, with the batch shape CEM uses —

* exact gradients: CEM runs one forward+backward of the gradient graph per FISTA step on a batch of
  ``problems × c_batch`` rows (PN + PP = 2 per target); the baseline runs that session call ``steps`` times
  (+ the 2 plain forwards of x and the black image);
* finite differences: CEM runs ``problems × (superpixels + 1)`` forwards per step in chunks of the
  model's ``max_batch``; the baseline runs the plain session on full ``max_batch`` batches for the
  same number of forwards.

``ratio`` = CEM's wall time ÷ the baseline's (median over paired runs, so a shared machine's drift
cancels): 1.0 = no overhead beyond the model evaluations (everything else — FISTA, superpixels,
feeds, the method's numpy — costs ``ratio − 1``). Usage: ``python bench/cem.py [--out bench]``.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from onnxplain.explainers import ModelConfig, Objective, OnnxClassifier, explain
from onnxplain.explainers.model import PLAIN_VARIANT, Variant

ROOT = Path(__file__).resolve().parents[1]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def baseline(classifier: OnnxClassifier, image: np.ndarray, *, exact: bool, rows: int, steps: int,
             forwards: int) -> callable:
    """The bare onnxruntime calls for the same evaluations (see the module doc)."""
    name = classifier.signature.input_name
    plain = classifier.compiled(PLAIN_VARIANT).session
    two = {name: np.ascontiguousarray(np.repeat(image[None], 2, axis=0))}
    if exact:
        compiled = classifier.compiled(Variant.gradient())
        session, graph = compiled.session, compiled.gradient
        seeds = np.zeros((rows, classifier.num_classes), np.float32)
        seeds[:, 0], seeds[:, 1] = 1, -1
        feed = {name: np.ascontiguousarray(np.repeat(image[None], rows, axis=0)), "class_weights": seeds}

        def run() -> None:
            plain.run(None, two)
            for _ in range(steps):
                session.run([graph.score_output, graph.input_grad], feed)
    else:
        batch = classifier.max_batch
        feed = {name: np.ascontiguousarray(np.repeat(image[None], batch, axis=0))}
        last = {name: feed[name][: (forwards - 2) % batch or batch]}

        def run() -> None:
            plain.run(None, two)
            full = (forwards - 2) // batch
            for _ in range(full):
                plain.run(None, feed)
            if (forwards - 2) % batch:
                plain.run(None, last)
    return run


def case(label: str, classifier: OnnxClassifier, image: np.ndarray, params: dict, runs: int) -> dict:
    top1 = int(np.argmax(classifier.predict(image[None])[0]))
    objective = Objective.for_classes([top1], classifier.num_classes)
    finals = []

    def once() -> None:
        *_, final = explain(classifier, image, "cem", objective, params)
        finals.append(final)

    once()  # warm-up: builds the gradient graph, SLIC's first call
    final = finals[-1]
    exact = bool(final.extras["exact_gradient"])
    rows = (2 if params.get("mode", "both") == "both" else 1) * params.get("c_batch", 1)
    steps = params["iterations"] * params["search_steps"]
    run = baseline(classifier, image, exact=exact, rows=rows, steps=steps, forwards=final.forward)
    run()
    pairs = [(timed(once), timed(run)) for _ in range(runs)]
    latency = statistics.median(p[0] for p in pairs)
    raw = statistics.median(p[1] for p in pairs)
    passes = final.forward + final.backward
    found = {k: v for k, v in final.extras.items() if k.endswith("_found[0]") or k.endswith("_class[0]")}
    return {"case": label, "exact": exact, "forward": final.forward, "backward": final.backward,
            "latency_s": round(latency, 3), "baseline_s": round(raw, 3),
            "passes_per_s": round(passes / latency, 1), "baseline_passes_per_s": round(passes / raw, 1),
            "ratio": round(statistics.median(a / b for a, b in pairs), 2), **found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write cem.json and cem.md here")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    import digits

    cnn, x = digits.classifier(), digits.held_out()[0][0]
    lite0 = ROOT / "models" / "efficientnet_lite0"
    effnet = OnnxClassifier.load(lite0 / "model.onnx", config=ModelConfig.from_file(lite0 / "config.json"))
    buffer = io.BytesIO()
    Image.fromarray(skimage.data.coffee()).save(buffer, format="PNG")
    coffee, _ = effnet.preprocess(buffer.getvalue())
    cases = [
        ("digits, exact, defaults (5 × 100 steps)", cnn, x, {"iterations": 100, "search_steps": 5}),
        ("digits, exact, c_batch 4, 2 × 100 steps", cnn, x, {"iterations": 100, "search_steps": 2, "c_batch": 4}),
        ("digits, finite differences, 16 superpixels, 3 × 50", cnn, x,
         {"iterations": 50, "search_steps": 3, "gradient": "finite_differences", "segments": 16}),
        ("efficientnet_lite0, exact, 2 × 10 steps", effnet, coffee, {"iterations": 10, "search_steps": 2}),
        ("efficientnet_lite0, finite differences, 50 superpixels, 1 × 3", effnet, coffee,
         {"iterations": 3, "search_steps": 1, "gradient": "finite_differences"}),
    ]
    results = []
    for label, classifier, image, params in cases:
        results.append(case(label, classifier, image, params, args.runs))
        print(json.dumps(results[-1]), flush=True)
    if args.out:
        (args.out / "cem.json").write_text(json.dumps(results, indent=1) + "\n")
        keys = list(results[0])[:9] + ["pn_class[0]", "pp_class[0]"]
        lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in results]
        (args.out / "cem.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
