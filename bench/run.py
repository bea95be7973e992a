"""Throughput benchmark of onnxplain on the bundled EfficientNet-Lite0, on a real image (skimage's coffee).

Every case yields one row: ``passes`` forward passes (images through the model) that took ``wall_s``
seconds (the median of several timed runs, after a warm-up), hence ``passes_per_s = passes / wall_s``.
The JSON also keeps ``wall_min_s``, the fastest run: a wide gap to ``wall_s`` means a noisy machine.

* ``raw onnxruntime`` — the baseline: the cached plain InferenceSession called directly with a batch
  of ``batch`` copies of the image, nothing else timed. The best of these rows is ``best_raw``.
* ``occlusion`` — ``explain(..., "occlusion", top-1 class)`` drained with default parameters (window 16,
  stride 8: 28·28 windows + 1 reference = 785 passes) through the project's batched loop, with the
  classifier's ``max_batch`` set to the row's value; ``batch`` is the largest chunk the loop ran.

``efficiency = (passes / best_raw) / wall_s = passes_per_s / best_raw``: the share of the best raw
onnxruntime throughput that a case achieves (1.0 = no overhead over the fastest bare forward loop;
raw rows show how they compare with the best batch size). The target for occlusion is >= 0.9 on CPU.
Raw and explanation rows are timed a minute apart, so on a shared machine efficiency is noisy (±10%).

Add a case by writing ``def my_case(bench: Bench) -> dict`` (returning ``row(...)``) and appending it
to ``CASES``. Usage: ``python bench/run.py --out bench [--quick]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
import skimage.data
from PIL import Image

from explainers.events import Progress
from explainers.explain import explain
from explainers.model import PLAIN, ModelConfig, OnnxClassifier, preprocess
from explainers.objectives import Objective

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "efficientnet_lite0"
COLUMNS = ("case", "batch", "passes", "wall_s", "passes_per_s", "efficiency", "vs_forward")


@dataclasses.dataclass
class Bench:
    """What the cases share: the model config, the image and the repetition settings."""

    config: ModelConfig
    image: np.ndarray  # canonical [3, 224, 224] float32
    runs: int  # timed runs per case; the median is reported
    raw_seconds: float  # target duration of one timed raw run
    _classifiers: dict[int, OnnxClassifier] = dataclasses.field(default_factory=dict)

    def classifier(self, max_batch: int | None = None) -> OnnxClassifier:
        """The bundled model with ``max_batch`` (default: the config's), loaded once."""
        max_batch = max_batch or self.config.max_batch
        if max_batch not in self._classifiers:
            config = dataclasses.replace(self.config, max_batch=max_batch)
            self._classifiers[max_batch] = OnnxClassifier.load(MODEL_DIR / "model.onnx", config=config, name="lite0")
        return self._classifiers[max_batch]


def walls(fn: Callable[[], object], runs: int) -> list[float]:
    """Wall times of ``runs`` calls of ``fn``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def row(batch: int, passes: int, times: list[float]) -> dict:
    """A table row from timed runs: the median counts; the JSON keeps the fastest run as a noise indicator."""
    wall = statistics.median(times)
    return {
        "batch": batch,
        "passes": passes,
        "wall_s": round(wall, 4),
        "wall_min_s": round(min(times), 4),
        "passes_per_s": round(passes / wall, 2) if passes else "",
    }


def raw_forward(bench: Bench, batch: int) -> dict:
    """``batch`` copies of the image through the plain session, repeated for ~raw_seconds per timed run."""
    classifier = bench.classifier()
    assert classifier.signature.layout == "NCHW" and classifier.signature.input_datatype == "FP32"
    session = classifier.session(PLAIN, lambda: classifier.model)
    feed = {classifier.signature.input_name: np.ascontiguousarray(np.repeat(bench.image[None], batch, axis=0))}
    warmup = walls(lambda: session.run(None, feed), 3)  # also allocates the arena for this shape
    reps = max(1, round(bench.raw_seconds / min(warmup)))  # ~raw_seconds per timed run
    return row(batch, batch * reps, walls(lambda: [session.run(None, feed) for _ in range(reps)], bench.runs))


def occlusion(bench: Bench, max_batch: int | None) -> dict:
    """Default occlusion of the top-1 class; ``batch`` is the largest chunk the batched loop ran."""
    classifier = bench.classifier(max_batch)
    top1 = int(np.argmax(classifier.predict(bench.image[None])[0]))
    objective = Objective.for_classes([top1], classifier.num_classes)
    classifier.predict(np.repeat(bench.image[None], classifier.max_batch, axis=0))  # warm-up
    chunks, passes = [], 0

    def once() -> None:
        nonlocal passes
        chunks.clear()
        for event in explain(classifier, bench.image, "occlusion", objective):
            if isinstance(event, Progress):
                chunks.append(event.done - sum(chunks))
        passes = event.forward  # the final Explanation

    times = walls(once, bench.runs)  # before max(chunks): once() fills it
    return row(max(chunks), passes, times)


def gradient(bench: Bench, batch: int) -> dict:
    """One forward+backward through the gradient graph (input gradient + the CAM layer's), ``batch``
    samples per run; ``vs_forward`` = its time ÷ the plain forward's time at the same batch."""
    classifier = bench.classifier()
    images = np.ascontiguousarray(np.repeat(bench.image[None], batch, axis=0))
    seeds = np.zeros((batch, classifier.num_classes), np.float32)
    seeds[:, 967] = 1
    variant, graph = classifier.gradient_model(layers=[classifier.cam_layer])
    session = classifier.session(variant, lambda: graph.model)
    names = [graph.score_output, graph.input_grad, *graph.layers[classifier.cam_layer]]
    grad_feed = {classifier.signature.input_name: images, "class_weights": seeds}
    plain = classifier.session(PLAIN, lambda: classifier.model)
    plain_feed = {classifier.signature.input_name: images}
    warmup = walls(lambda: session.run(names, grad_feed), 2) + walls(lambda: plain.run(None, plain_feed), 2)
    reps = max(1, round(bench.raw_seconds / max(warmup)))
    grad_times = walls(lambda: [session.run(names, grad_feed) for _ in range(reps)], bench.runs)
    forward_times = walls(lambda: [plain.run(None, plain_feed) for _ in range(reps)], bench.runs)
    result = row(batch, batch * reps, grad_times)
    result["vs_forward"] = round(statistics.median(grad_times) / statistics.median(forward_times), 2)
    return result


def gradient_build(bench: Bench) -> dict:
    """Building the gradient graph of the bundled model (456 nodes) from scratch, without compiling it."""
    from explainers.autodiff import build_gradient_model

    classifier = bench.classifier()
    hints = classifier.tensor_shapes()
    build = partial(build_gradient_model, classifier.model, layers=[classifier.cam_layer], shape_hints=hints)
    return row(0, 0, walls(build, bench.runs))


RAW = "raw onnxruntime"
CASES: list[tuple[str, Callable[[Bench], dict]]] = [
    *((RAW, partial(raw_forward, batch=b)) for b in (1, 8, 16, 32, 64)),
    ("gradient graph build (s)", gradient_build),
    ("forward+backward, batch 1", partial(gradient, batch=1)),
    ("forward+backward, batch 32", partial(gradient, batch=32)),
    ("occlusion, max_batch 8", partial(occlusion, max_batch=8)),
    ("occlusion, config max_batch", partial(occlusion, max_batch=None)),
    ("occlusion, max_batch 32", partial(occlusion, max_batch=32)),
]
"""(name, fn(bench) -> row(...)) in run order; the raw rows must come first. Add rows here."""


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(str(r.get(c, "")) for c in COLUMNS) + " |" for r in rows]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="folder for results.*")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    args = parser.parse_args()
    started, clock, load = datetime.datetime.now(datetime.timezone.utc), time.perf_counter(), os.getloadavg()[0]
    config = ModelConfig.from_file(MODEL_DIR / "config.json")
    image, _ = preprocess(Image.fromarray(skimage.data.coffee()), config.preprocessing, size=(224, 224), channels=3)
    bench = Bench(config, image, runs=1 if args.quick else 3, raw_seconds=0.3 if args.quick else 1.5)
    rows = []
    for name, run in CASES:
        rows.append({"case": name, **run(bench)})
        print(f"  {name}: {rows[-1]}", file=sys.stderr, flush=True)
    best_raw = max(r["passes_per_s"] for r in rows if r["case"] == RAW)
    for r in rows:
        if r["passes"]:
            r["efficiency"] = round(r["passes_per_s"] / best_raw, 3)
    table = markdown(rows)
    result = {
        "timestamp": started.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - clock, 1),
        "quick": args.quick,
        "model": MODEL_DIR.name,
        "image": "skimage.data.coffee()",
        "best_raw_passes_per_s": best_raw,
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_avg_1m_at_start": load,  # other work on the machine skews every number
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "onnxruntime": ort.__version__,
            "providers": list(bench.classifier().providers),
        },
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "results.md").write_text(table)
    print(table, end="")


if __name__ == "__main__":
    main()
