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

import numpy as np
from bundled import PHOTOS, load_bundled, photo_tensor, random_map_evaluation, timed_evaluation

from onnxplain.explainers import Objective


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50, help="deletion/insertion steps")
    parser.add_argument("--rise-masks", type=int, default=500)
    parser.add_argument("--occlusion-stride", type=int, default=16)
    parser.add_argument("--deletion-baseline", default="zero", help="zero (the paper's code), mean or blur")
    args = parser.parse_args()
    classifier = load_bundled()
    metrics = {"deletion": {"steps": args.steps, "baseline": args.deletion_baseline},
               "insertion": {"steps": args.steps}}
    methods = {"grad_cam": {}, "saliency": {}, "rise": {"masks": args.rise_masks},
               "occlusion": {"window": 2 * args.occlusion_stride, "stride": args.occlusion_stride}, "random": None}
    print(f"bundled model, top-1 class, deletion ({args.deletion_baseline} baseline) / insertion (blur canvas), {args.steps} steps, "
          "probability scores, MoRF\n")
    print("| photo (top-1) | method | deletion AUC ↓ | insertion AUC ↑ | explain s | deletion s | insertion s |")
    print("|---|---|---|---|---|---|---|")
    for photo in PHOTOS:
        image = photo_tensor(classifier, photo)
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
