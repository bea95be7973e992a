#!/usr/bin/env python3
"""Every registered method × (deletion AUC, insertion AUC, sanity-check final Spearman, seconds) on the
bundled EfficientNet-Lite0 and the three demo photos (scikit-image's chelsea, coffee, rocket, top-1
class): the closing table of issue 13.

    .venv/bin/python bench/evaluation_table.py [--methods grad_cam,rise] [--photos coffee] [--quick]
        [--steps 20] [--sanity-steps 3] [--out bench]

One ``evaluate`` request per (photo, method) with three metrics:

* ``deletion`` (Petsiuk et al. 2018; the metric's default ``zero`` baseline, MoRF, probability of the
  top-1 class; lower = better) and ``insertion`` (its default ``blur`` canvas; higher = better), each
  with ``--steps`` steps instead of the default 100;
* ``sanity_cascading`` (Adebayo et al. 2018) with ``--sanity-steps`` cascade points instead of 6: the
  Spearman ρ of |maps| once the whole model is randomised (lower = the map depends on the weights; a
  map that stays near 1 fails the check). It re-runs the method ``steps`` times, so it dominates the
  metric seconds of expensive methods.

A ``random`` row (i.i.d. uniform map, no method) is the floor for deletion/insertion: with the zero
baseline a random map's deletion AUC is already low (removing random pixels to black hurts the score
quickly), so read deletion against that row. Expensive methods run with reduced budgets (:data:`BUDGETS`,
shown in the table); methods that need more than an image and a class (a contrast class or a companion
model) are listed as ``n/a`` with the reason (:data:`NOT_APPLICABLE`). Writes ``OUT/evaluation_table.json``
(rows, budgets, load average at start, wall time) and ``OUT/evaluation_table.md`` (a table per photo and
the mean over photos). Seconds are wall-clock on a possibly shared machine: compare rows within a run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from bundled import PHOTOS, load_bundled, photo_tensor, random_map_evaluation, timed_evaluation

from onnxplain.explainers import Objective, list_methods

RANDOM = "random"
BUDGETS: dict[str, dict] = {
    "rise": {"masks": 400},
    "lime": {"samples": 250},
    "occlusion": {"window": 32, "stride": 16},
    "score_cam": {"skip_constant": True, "top_channels": 64},
    "extremal_perturbation": {"areas": [0.1], "iterations": 30},
    "meaningful_perturbation": {"iterations": 30},
    "integrated_gradients": {"steps": 16},
    "smoothgrad": {"samples": 16},
    "cem": {"mode": "pp", "search_steps": 2, "iterations": 10},
}
"""Reduced parameters (the rest stay at the method's defaults)."""
QUICK_BUDGETS: dict[str, dict] = {
    "rise": {"masks": 200}, "lime": {"samples": 100}, "score_cam": {"skip_constant": True, "top_channels": 16},
    "extremal_perturbation": {"areas": [0.1], "iterations": 10}, "meaningful_perturbation": {"iterations": 10},
    "integrated_gradients": {"steps": 8}, "smoothgrad": {"samples": 8},
}
"""``--quick`` overrides on top of :data:`BUDGETS`."""
NOT_APPLICABLE = {
    "cdeepex": "needs a contrast class (P rather than Q) and a companion generator model",
}
"""Methods that do not apply to a plain (image, top-1 class) target, with the reason; listed in the table
even when this build does not register them. (CEM does apply: a one-hot class needs no contrast and the
autoencoder is optional; it runs in ``pp`` mode, whose map — the part of the image that alone keeps
the class — is an importance map, with a small search budget.)"""


def metric_request(steps: int, sanity_steps: int, *, sanity: bool = True) -> dict[str, dict]:
    request = {"deletion": {"steps": steps}, "insertion": {"steps": steps}}
    if sanity:
        request["sanity_cascading"] = {"steps": sanity_steps}
    return request


def evaluate_row(classifier, image, objective, method: str, params: dict, metrics: dict) -> dict:
    """One table row: AUCs, the final Spearman ρ|·| (``None`` for the random map), seconds."""
    if method == RANDOM:
        results, seconds = random_map_evaluation(classifier, image, objective, metrics)
    else:
        results, seconds = timed_evaluation(classifier, image, method, objective, params, metrics)
    sanity = results.get("sanity_cascading")
    return {"method": method, "params": params,
            "deletion_auc": float(results["deletion"].values[0]),
            "insertion_auc": float(results["insertion"].values[0]),
            "sanity_final_spearman_abs": None if sanity is None else float(sanity.values[0]),
            "explain_s": round(seconds["explain"], 2),
            "metrics_s": round(sum(seconds[name] for name in results), 2),
            "metric_s": {name: round(seconds[name], 2) for name in results}}


def fmt(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def budget_text(params: dict) -> str:
    return ", ".join(f"{k}={'/'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in params.items())


def markdown_table(rows: list[dict]) -> list[str]:
    lines = ["| method | budget | deletion AUC ↓ | insertion AUC ↑ | sanity final ρ\\|·\\| ↓ | explain s | metrics s |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['method']} | {budget_text(row.get('params', {}))} | {row['error']} | | | | |")
        else:
            lines.append(f"| {row['method']} | {budget_text(row['params'])} | {fmt(row['deletion_auc'])} | "
                         f"{fmt(row['insertion_auc'])} | {fmt(row['sanity_final_spearman_abs'])} | "
                         f"{row['explain_s']:.1f} | {row['metrics_s']:.1f} |")
    return lines


def mean_rows(per_photo: dict[str, list[dict]]) -> list[dict]:
    """The mean over photos of each method's numbers (a method that failed on any photo keeps its error)."""
    by_method: dict[str, list[dict]] = {}
    for rows in per_photo.values():
        for row in rows:
            by_method.setdefault(row["method"], []).append(row)
    means = []
    for method, rows in by_method.items():
        failed = [row for row in rows if "error" in row]
        if failed:
            means.append(failed[0])
            continue
        mean = {"method": method, "params": rows[0]["params"]}
        for key in ("deletion_auc", "insertion_auc", "sanity_final_spearman_abs", "explain_s", "metrics_s"):
            values = [row[key] for row in rows]
            mean[key] = None if None in values else float(np.mean(values))
        means.append(mean)
    return means


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", help="comma-separated method names (default: every registered one); "
                                          f"'{RANDOM}' is the random-map row")
    parser.add_argument("--photos", default=",".join(PHOTOS), help=f"comma-separated, from {', '.join(PHOTOS)}")
    parser.add_argument("--steps", type=int, default=20, help="deletion/insertion steps (metric default 100)")
    parser.add_argument("--sanity-steps", type=int, default=3, help="sanity_cascading points (metric default 6)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 steps, 2 cascade points, smaller budgets")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    registered = [spec.name for spec in list_methods()]
    methods = args.methods.split(",") if args.methods else [*registered, *NOT_APPLICABLE, RANDOM]
    photos = args.photos.split(",")
    unknown = [m for m in methods if m not in registered and m != RANDOM and m not in NOT_APPLICABLE]
    unknown += [p for p in photos if p not in PHOTOS]
    if unknown:
        parser.error(f"unknown method or photo: {', '.join(unknown)}")
    steps, sanity_steps = (10, 2) if args.quick else (args.steps, args.sanity_steps)
    budgets = {m: {**BUDGETS.get(m, {}), **(QUICK_BUDGETS.get(m, {}) if args.quick else {})} for m in methods}

    load_at_start, started = os.getloadavg(), time.perf_counter()
    classifier = load_bundled()
    per_photo: dict[str, list[dict]] = {}
    classes: dict[str, str] = {}
    for photo in photos:
        image = photo_tensor(classifier, photo)
        top = int(np.argmax(classifier.predict(image[None])[0]))
        classes[photo] = f"{top} ({classifier.labels[top]})"
        objective = Objective.for_classes([top], classifier.num_classes)
        rows = per_photo[photo] = []
        for method in methods:
            if method in NOT_APPLICABLE:
                absent = "" if method in registered else " (not registered in this build)"
                rows.append({"method": method, "params": {}, "error": f"n/a: {NOT_APPLICABLE[method]}{absent}"})
            else:
                metrics = metric_request(steps, sanity_steps, sanity=method != RANDOM)
                try:
                    rows.append(evaluate_row(classifier, image, objective, method, budgets[method], metrics))
                except Exception as error:  # noqa: BLE001  (a failing method is a row of the table, not the end of it)
                    rows.append({"method": method, "params": budgets[method],
                                 "error": f"failed: {type(error).__name__}: {str(error)[:160]}"})
            print(photo, json.dumps(rows[-1]), flush=True)
    wall = time.perf_counter() - started

    header = [
        "# Evaluation table: every method on the bundled model",
        "",
        f"`{' '.join(['bench/evaluation_table.py', *sys.argv[1:]])}` — efficientnet_lite0 (224×224), top-1 class, "
        f"one `evaluate` request per photo × method; total wall {wall / 60:.1f} min, load average at start "
        f"{', '.join(f'{x:.2f}' for x in load_at_start)} on {os.cpu_count()} cores (shared machine: seconds are noisy).",
        "",
        "Cost control (all named per row in `budget`):",
        f"- deletion: {steps} steps (default 100), the metric's default **zero** baseline (black pixels), MoRF, "
        "probability scores; with this baseline a random map already deletes well, so compare with the "
        f"`{RANDOM}` row, not with 0.",
        f"- insertion: {steps} steps, the metric's default blur canvas.",
        f"- sanity_cascading: {sanity_steps} cascade points (default 6), value = Spearman ρ of |maps| with the "
        "whole model randomised (lower = the map depends on the weights; near 1 = fails the check). "
        f"Not defined for the `{RANDOM}` map (no method to re-run).",
        "- reduced method budgets: " + "; ".join(f"{m} {budget_text(p)}" for m, p in budgets.items() if p) + ".",
        "- `explain s`: the explanation itself; `metrics s`: the three metrics (the cascade re-runs the method "
        f"{sanity_steps} times).",
        "",
    ]
    lines = [*header]
    for photo, rows in per_photo.items():
        lines += [f"## {photo} — class {classes[photo]}", "", *markdown_table(rows), ""]
    lines += [f"## Mean over photos ({', '.join(photos)})", "", *markdown_table(mean_rows(per_photo)), ""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "evaluation_table.md").write_text("\n".join(lines))
    (args.out / "evaluation_table.json").write_text(json.dumps({
        "model": "efficientnet_lite0", "steps": steps, "sanity_steps": sanity_steps, "quick": args.quick,
        "deletion_baseline": "zero (metric default)", "insertion_baseline": "blur (metric default)",
        "budgets": budgets, "not_applicable": {m: r for m, r in NOT_APPLICABLE.items() if m in methods},
        "classes": classes, "load_average_at_start": load_at_start, "cpus": os.cpu_count(),
        "machine": platform.platform(), "wall_s": round(wall, 1), "rows": per_photo,
        "mean": mean_rows(per_photo)}, indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
