"""Latency of ``cdeepex`` on the digits pair (tests/fixtures/digits) against the raw rates of its models,
measured back to back in one process.

CDeepEx is sequential: each Adam step needs the previous one, so with one target every pass is a batch of
one. The baselines are therefore batch-1 calls, timed on the same plain sessions the method uses:

* ``classifier forward``: the digits CNN's plain InferenceSession on one image (and on 32, for scale);
* ``classifier forward+backward``: one row through its gradient graph (``Evaluator.gradient_rows``);
* ``generator forward`` / ``generator vjp``: one latent through the decoder's plain / VJP graph
  (``CompanionHandle``).

``cdeepex`` rows drain ``explain(..., "cdeepex")`` with its defaults on held-out digit 0 ("7 rather than 9").
``ideal_s`` = what the method's passes would cost at the raw batch-1 latencies (each Adam step of z′ is
G fwd + f fwd + f fwd/bwd + G vjp; each reconstruction step G fwd + G vjp; plus the few end passes);
``overhead = wall_s / ideal_s`` is the method's own cost (numpy, the loop, feeds) over that floor, and
``vs_forward = wall_s · forward_rate / passes``: how many classifier forwards' time each pass costs.

Usage: ``.venv/bin/python bench/cdeepex_digits.py [--repeats 3]`` (writes bench/cdeepex_digits.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import digits  # noqa: E402

from onnxplain.explainers import Objective, RunContext, explain_once  # noqa: E402
from onnxplain.explainers.model import PLAIN_VARIANT, CompanionHandle, Evaluator  # noqa: E402


def timed(call, repeats: int, inner: int = 1) -> float:
    """Median seconds of one ``call`` over ``repeats`` timings of ``inner`` calls each (after one warm-up)."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            call()
        times.append((time.perf_counter() - start) / inner)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "cdeepex_digits.json"))
    args = parser.parse_args()
    classifier, companions = digits.classifier(), digits.companions()
    x_test, _ = digits.held_out()
    x = x_test[0]
    order = np.argsort(-classifier.predict(x[None])[0])
    objective = Objective.for_classes([int(order[0])], 10, contrast=int(order[1]))
    session, name = classifier.compiled(PLAIN_VARIANT).session, classifier.signature.input_name
    evaluator = Evaluator(classifier, RunContext())
    generator = CompanionHandle(companions["digits_decoder"], RunContext())
    z = np.zeros((1, 10), np.float32)
    weights = np.zeros((1, 10), np.float32)
    weights[0, order[0]], weights[0, order[1]] = 1, -1
    batch32 = np.repeat(x[None], 32, axis=0)

    rows = {
        "classifier_forward_s": timed(lambda: session.run(None, {name: x[None]}), args.repeats, 200),
        "classifier_forward_batch32_s": timed(lambda: session.run(None, {name: batch32}), args.repeats, 50) / 32,
        "classifier_forward_backward_s": timed(
            lambda: list(evaluator.gradient_rows(1, lambda a, b: (x[None], weights))), args.repeats, 100),
        "generator_forward_s": timed(lambda: generator.forward(z), args.repeats, 200),
        "generator_vjp_s": timed(lambda: generator.vjp(z, x[None]), args.repeats, 100),
    }
    results = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = explain_once(classifier, x, "cdeepex", objective,
                              {"generator": "digits_decoder", "encoder": "digits_encoder"}, companions=companions)
        results.append((time.perf_counter() - start, result))
    wall = statistics.median(t for t, _ in results)
    result = results[0][1]
    inner, reconstruction, outer = 10 * 20, 200, 10
    ideal = (reconstruction * (rows["generator_forward_s"] + rows["generator_vjp_s"])
             + inner * (rows["generator_forward_s"] + rows["generator_vjp_s"]
                        + rows["classifier_forward_s"] + rows["classifier_forward_backward_s"])
             + (outer + 1) * (rows["generator_forward_s"] + rows["classifier_forward_s"])
             + rows["classifier_forward_s"] + rows["generator_forward_s"])  # f(x), the encoder ≈ a G forward
    passes = result.forward + result.backward
    report = {
        **{key: round(value * 1e6, 1) for key, value in rows.items()} | {"unit": "microseconds per sample"},
        "cdeepex_wall_s": round(wall, 3), "cdeepex_wall_min_s": round(min(t for t, _ in results), 3),
        "cdeepex_forward": result.forward, "cdeepex_backward": result.backward,
        "cdeepex_passes_per_s": round(passes / wall, 1),
        "classifier_forward_per_s": round(1 / rows["classifier_forward_s"], 1),
        "ideal_s": round(ideal, 3), "overhead": round(wall / ideal, 2),
        "vs_forward": round(wall / rows["classifier_forward_s"] / passes, 2),
        "score_gap_ratio": round(result.extras["score_gap_ratio"], 4),
        "latent_distance": round(result.extras["latent_distance"], 4),
        "converged": result.extras["converged"],
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
