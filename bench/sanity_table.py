"""Sanity checks on the bundled EfficientNet-Lite0: the table of issue 13 for skimage's coffee photo.

For each method (default: saliency, grad_cam, guided_backprop, integrated_gradients, paper-default
parameters, the model's best class), one ``evaluate`` request with

* ``sanity_cascading`` (``--steps`` cascade points, default 6, from the logits layer down to the whole
  model; Adebayo et al. 2018): ``final`` = Spearman ρ of |maps| with the original once every layer is
  random (the metric's value; lower = the map depends on the weights), ``mean`` = that ρ averaged over
  the steps (how long the map survives the cascade), and the curve;
* ``input_shift_invariance`` (shift ``--shift`` in model-input units, default 1.0 on every channel;
  Kindermans et al. 2019): ``change`` = ‖m′ − m‖ / (‖m‖ + ‖m′‖) (0 = invariant) and the Spearman ρ.

``seconds`` is the wall time of the whole request (the method once, plus ``steps`` + 1 re-explanations,
each on a classifier compiled from a rewritten graph). The machine may be shared: compare methods
measured in the same run, not across runs.

Usage: ``python bench/sanity_table.py [--steps 6] [--methods saliency,grad_cam] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from bundled import load_bundled, photo_tensor

import onnxplain.explainers.metrics.randomisation  # noqa: F401  (registers the sanity metrics)
import onnxplain.explainers.metrics.shift_invariance  # noqa: F401
from onnxplain.explainers import Objective, evaluate_once

METHODS = ("saliency", "grad_cam", "guided_backprop", "integrated_gradients")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--shift", type=float, default=1.0)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    classifier = load_bundled()
    image = photo_tensor(classifier, "coffee")
    best = int(np.argmax(classifier.predict(image[None])[0]))
    objective = Objective.for_classes([best], classifier.num_classes)
    print(f"efficientnet_lite0 on coffee, class {best} ({classifier.labels[best]}), cascade steps {args.steps}, "
          f"shift {args.shift}", flush=True)
    print(f"{'method':22} {'final ρ|·|':>10} {'mean ρ|·|':>10} {'shift Δ':>9} {'shift ρ':>8} {'seconds':>8}  curve ρ|·|")
    rows = []
    for method in args.methods.split(","):
        start = time.perf_counter()
        _, results = evaluate_once(classifier, image, method, objective, None,
                                   {"sanity_cascading": {"steps": args.steps},
                                    "input_shift_invariance": {"shift": [args.shift]}}, seed=args.seed)
        seconds = time.perf_counter() - start
        cascade, shift = results["sanity_cascading"], results["input_shift_invariance"]
        curve = next(c for c in cascade.curves if c.name == "spearman_abs")
        row = {"method": method, "final_spearman_abs": float(cascade.values[0]),
               "mean_spearman_abs": cascade.extras["mean_spearman_abs"],
               "curve_spearman_abs": [round(float(v), 3) for v in curve.y[0]], "curve_layers": list(curve.x_ticks),
               "curves": {c.name: [round(float(v), 3) for v in c.y[0]] for c in cascade.curves},
               "shift_change": float(shift.values[0]), "shift_spearman": shift.extras["spearman"],
               "shift_in_bias": shift.extras["compensation_in_bias"], "seconds": round(seconds, 1),
               "forward": cascade.forward + shift.forward, "backward": cascade.backward + shift.backward}
        rows.append(row)
        print(f"{method:22} {row['final_spearman_abs']:10.3f} {row['mean_spearman_abs']:10.3f} "
              f"{row['shift_change']:9.2e} {row['shift_spearman']:8.3f} {seconds:8.1f}  {row['curve_spearman_abs']}",
              flush=True)
    print("cascade points (deepest layer randomised):", rows[0]["curve_layers"] if rows else [])
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "shift": args.shift, "class": best, "rows": rows},
                                        indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
