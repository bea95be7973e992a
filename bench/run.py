"""Throughput benchmark of onnxplain on the bundled EfficientNet-Lite0, on a real image (skimage's coffee).

Every case yields one row: ``passes`` forward passes (images through the model) that took ``wall_s``
seconds (the median of several timed runs, after a warm-up), hence ``passes_per_s = passes / wall_s``.
The JSON also keeps ``wall_min_s``, the fastest run: a wide gap to ``wall_s`` means a noisy machine.

* ``raw onnxruntime`` — the baseline: the cached plain InferenceSession called directly with a batch
  of ``batch`` copies of the image, nothing else timed. The best of these rows is ``best_raw``.
* ``occlusion`` — ``explain(..., "occlusion", top-1 class)`` drained with default parameters (window 16,
  stride 8: 28·28 windows + 1 reference = 785 passes) through the project's batched loop, with the
  classifier's ``max_batch`` set to the row's value; ``batch`` is the largest chunk the loop ran.
* ``rise`` — default RISE (4000 masks, grid 7, p 0.5) of the top-1 class: 4001 passes; ``notes`` compare the
  bytes fed per batch (grids + shifts) with the full perturbed images a prefix-less loop would feed.
  ``rise aggregation`` times the numpy side alone (per-shift sums + one partial map per chunk) on recorded
  scores. ``rise time-to-quality`` rows: one streamed run per sampling (seed 0, at most 16,000 random or
  4000 quasi-random masks); ``passes`` = masks of the first partial map whose Pearson r with a 16,000-mask
  quasi-random reference (seed 1000, computed once: the ``rise reference`` row) is >= 0.95, ``wall_s`` = time
  from the call to that partial map (the correlations themselves not counted). Target: < 19 s on 2 cores.

``efficiency = (passes / best_raw) / wall_s = passes_per_s / best_raw``: the share of the best raw
onnxruntime throughput that a case achieves (1.0 = no overhead over the fastest bare forward loop;
raw rows show how they compare with the best batch size). The target for occlusion is >= 0.9 on CPU.
Raw and explanation rows are timed a minute apart, so on a shared machine efficiency is noisy (±10%).

Add a case by writing ``def my_case(bench: Bench) -> dict`` (returning ``row(...)``) and appending it
to ``CASES``. Usage: ``python bench/run.py --out bench [--quick]``.
"""

from __future__ import annotations

import argparse
import collections
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

from onnxplain.explainers.events import Progress
from onnxplain.explainers.explain import explain
from onnxplain.explainers.methods import get_method
from onnxplain.explainers.model import PLAIN_VARIANT, ModelConfig, OnnxClassifier, Variant, preprocess
from onnxplain.explainers.objectives import Objective

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shapes  # noqa: E402 — bench/shapes.py, next to this file

try:  # the on-disk graph cache (absent before it existed: its rows say n/a)
    from onnxplain.explainers.model import graph_cache
    from onnxplain.explainers.model.variants import build_variant_cached
    NO_DISK_CACHE: dict = {"graph_cache": None}
except ImportError:
    graph_cache = build_variant_cached = None
    NO_DISK_CACHE = {}

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "efficientnet_lite0"
COLUMNS = ("case", "batch", "passes", "wall_s", "passes_per_s", "efficiency", "vs_forward", "vs_passes", "notes")


@dataclasses.dataclass
class Bench:
    """What the cases share: the model config, the image and the repetition settings."""

    config: ModelConfig
    image: np.ndarray  # canonical [3, 224, 224] float32
    runs: int  # timed runs per case; the median is reported
    raw_seconds: float  # target duration of one timed raw run
    _classifiers: dict[int, OnnxClassifier] = dataclasses.field(default_factory=dict)
    quick: bool = False  # smoke run: the long RISE runs shrink too
    shared: dict[str, object] = dataclasses.field(default_factory=dict)  # results cases reuse (RISE reference)

    def classifier(self, max_batch: int | None = None) -> OnnxClassifier:
        """The bundled model with ``max_batch`` (default: the config's), loaded once."""
        max_batch = max_batch or self.config.max_batch
        if max_batch not in self._classifiers:
            config = dataclasses.replace(self.config, max_batch=max_batch)
            self._classifiers[max_batch] = OnnxClassifier.load(MODEL_DIR / "model.onnx", config=config, name="lite0")
        return self._classifiers[max_batch]

    def shaped(self, name: str) -> OnnxClassifier:
        """A full-size architecture of bench/shapes.py (random weights), loaded once."""
        if name not in self.shared:
            self.shared[name] = OnnxClassifier(getattr(shapes, name)(), config=ModelConfig(max_batch=32), name=name,
                                               **NO_DISK_CACHE)
        return self.shared[name]


def later_sections(path: Path) -> str:
    """The ``## …`` sections after the table in an existing results.md, which other scripts own
    (bench/peers/run.py writes ``## Peers``): kept when this script rewrites the table."""
    text = path.read_text() if path.exists() else ""
    start = text.find("\n## ")
    return text[start:] if start >= 0 else ""


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
    session = classifier.compiled(PLAIN_VARIANT).session
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


def gradient_step(bench: Bench, batch: int, layers: list[str], classifier: OnnxClassifier | None = None
                  ) -> Callable[[], object]:
    """One run of the gradient graph (input gradient + ``layers``' gradients) on ``batch`` copies of
    the image, seeded with the espresso class (coffee's top-1); ``classifier`` default: the bundled one."""
    classifier = classifier or bench.classifier()
    seeds = np.zeros((batch, classifier.num_classes), np.float32)
    seeds[:, 967] = 1
    compiled = classifier.compiled(Variant.gradient(layers=tuple(layers)))
    session, graph = compiled.session, compiled.gradient
    names = [graph.score_output, graph.input_grad, *(name for layer in layers for name in graph.layers[layer])]
    feed = {classifier.signature.input_name: np.ascontiguousarray(np.repeat(bench.image[None], batch, axis=0)),
            "class_weights": seeds}
    return lambda: session.run(names, feed)


def gradient(bench: Bench, batch: int, cam_layer: bool = True, shape: str = "") -> dict:
    """One forward+backward through the gradient graph (input gradient, + the CAM layer's with
    ``cam_layer``), ``batch`` samples per run; ``vs_forward`` = its time ÷ the plain forward's time at
    the same batch, the median of ≥ 5 paired runs (each ~raw_seconds of gradient runs, then as many
    forwards). ``shape``: a full-size architecture of bench/shapes.py instead of the bundled model."""
    classifier = bench.shaped(shape) if shape else bench.classifier()
    step = gradient_step(bench, batch, [classifier.cam_layer] if cam_layer else [], classifier)
    plain = classifier.compiled(PLAIN_VARIANT).session
    plain_feed = {classifier.signature.input_name: np.ascontiguousarray(np.repeat(bench.image[None], batch, axis=0))}
    warmup = walls(step, 2) + walls(lambda: plain.run(None, plain_feed), 2)
    reps = max(1, round(bench.raw_seconds / max(warmup)))
    grad_times, ratios = [], []
    for _ in range(max(bench.runs, 5)):  # paired: the machine's drift cancels out of each ratio
        (grad,) = walls(lambda: [step() for _ in range(reps)], 1)
        (forward,) = walls(lambda: [plain.run(None, plain_feed) for _ in range(reps)], 1)
        grad_times.append(grad)
        ratios.append(grad / forward)
    result = row(batch, batch * reps, grad_times)
    result["vs_forward"] = round(statistics.median(ratios), 2)
    return result


def gradient_build(bench: Bench) -> dict:
    """Building the gradient graph of the bundled model (456 nodes) from scratch, without compiling it."""
    from onnxplain.explainers.autodiff import build_gradient_model

    classifier = bench.classifier()
    hints = classifier.introspection.tensor_shapes()
    build = partial(build_gradient_model, classifier.model, layers=[classifier.cam_layer], shape_hints=hints)
    return row(0, 0, walls(build, bench.runs))


def top1(bench: Bench, classifier: OnnxClassifier) -> Objective:
    return Objective.for_classes([int(np.argmax(classifier.predict(bench.image[None])[0]))], classifier.num_classes)


def rise(bench: Bench, max_batch: int | None) -> dict:
    """Default RISE (4000 masks) of the top-1 class; notes: bytes per batch fed with the in-graph prefix
    vs the full perturbed images a plain loop would feed."""
    classifier = bench.classifier(max_batch)
    objective = top1(bench, classifier)
    list(explain(classifier, bench.image, "rise", objective, {"masks": classifier.max_batch}))  # compiles the prefix
    finals = collections.deque(maxlen=1)  # the last event of the last run: its Explanation
    times = walls(lambda: finals.extend(explain(classifier, bench.image, "rise", objective)), bench.runs)
    final = finals[0]
    batch = classifier.max_batch
    result = row(batch, final.forward, times)
    prefix_bytes, full_bytes = final.extras["bytes_per_sample"] * batch, bench.image.nbytes * batch
    result["notes"] = (f"{prefix_bytes / 1024:.1f} KiB per batch of {batch} in-graph vs {full_bytes / 2**20:.1f} MiB "
                       f"of full images ({full_bytes / prefix_bytes:,.0f}x)")
    return result


def rise_aggregation(bench: Bench, masks: int = 4000, batch: int = 16) -> dict:
    """The numpy side of RISE alone on a 224x224 input, on recorded scores: per-shift sums of ``masks`` grids
    added ``batch`` at a time, a partial map rendered every 1% of the masks as the method does; notes: the
    same with full-resolution masks built per chunk (the direct way)."""
    from onnxplain.explainers.perturb.masks.grid import GridMaskSum, GridSampler, GridTables

    tables = GridTables.build(224, 224, 7)
    grids, shifts = GridSampler(masks, 7, 0.5, tables.cells, "random", np.random.default_rng(0)).take(0, masks)
    values = np.random.default_rng(1).standard_normal((masks, 1))
    chunks = [slice(start, start + batch) for start in range(0, masks, batch)]

    def aggregate() -> None:
        total, rendered = GridMaskSum(tables, 1, 0.5), 0
        for chunk in chunks:
            total.add(grids[chunk], shifts[chunk], values[chunk])
            if total.count >= rendered + masks / 100 or total.count == masks:
                rendered = total.count
                total.render()

    def full_masks() -> None:
        total = np.zeros((224, 224))
        for chunk in chunks:
            total += np.tensordot(values[chunk, 0], tables.masks(grids[chunk], shifts[chunk]), 1)

    result = row(0, 0, walls(aggregate, bench.runs))
    result["notes"] = (f"{masks} masks in chunks of {batch}; full-resolution masks per chunk instead: "
                       f"{statistics.median(walls(full_masks, bench.runs)):.2f} s")
    return result


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def rise_reference(bench: Bench, masks: int = 16000) -> dict:
    """The 16,000-mask quasi-random reference map (seed 1000, config max_batch) the time-to-quality rows
    compare with; computed once, timed once (4000 masks with ``--quick``)."""
    masks = 4000 if bench.quick else masks
    classifier = bench.classifier()
    objective = top1(bench, classifier)
    start = time.perf_counter()
    params = {"masks": masks, "sampling": "quasi_random"}
    final = collections.deque(explain(classifier, bench.image, "rise", objective, params, seed=1000), maxlen=1)[0]
    bench.shared["rise_reference"] = final.heatmaps[0]
    result = row(classifier.max_batch, final.forward, [time.perf_counter() - start])
    result["notes"] = f"quasi_random, seed 1000; last_10pct_change {final.extras['last_10pct_change']:.2g}"
    return result


def rise_time_to_quality(bench: Bench, sampling: str, masks: int, quality: float = 0.95) -> dict:
    """Masks and time until a streamed partial map first reaches Pearson r >= ``quality`` with the reference;
    the run (at most ``masks``; 4000 with ``--quick``) stops there. Partial maps come every 1% of ``masks``."""
    masks = min(masks, 4000) if bench.quick else masks
    classifier = bench.classifier()
    objective = top1(bench, classifier)
    reference = bench.shared["rise_reference"]
    excluded, r = 0.0, float("nan")  # time spent correlating (not counted); the last correlation
    start = time.perf_counter()
    events = explain(classifier, bench.image, "rise", objective, {"masks": masks, "sampling": sampling}, seed=0)
    for event in events:
        if isinstance(event, Progress) and event.heatmaps is not None:
            tick = time.perf_counter()
            elapsed, r = tick - start - excluded, pearson(event.heatmaps[0], reference)
            excluded += time.perf_counter() - tick
            if r >= quality:
                events.close()
                result = row(classifier.max_batch, event.done - 1, [elapsed])
                result["notes"] = f"r = {r:.4f} at {event.done - 1} masks (partial maps every {masks // 100})"
                return result
    result = row(classifier.max_batch, 0, [time.perf_counter() - start - excluded])
    result.update(passes="", passes_per_s="", notes=f"r >= {quality} not reached: r = {r:.4f} at {masks} masks")
    return result


def method(bench: Bench, name: str, params: dict | None = None, fb_samples: int = 0) -> dict:
    """Latency of any registered method on the top-1 class with the config's batch sizes (after one
    warm-up call that builds its graphs). ``passes`` counts forward + backward evaluations. With
    ``fb_samples``, ``vs_passes`` is the issue's cost measure for IG and SmoothGrad: latency ÷ the
    time of fb_samples forward+backward samples of the input-gradient graph at its best batch size,
    each method run paired with a baseline run right after it (the median ratio: a shared machine's
    drift cancels out)."""
    classifier = bench.classifier()
    top1 = int(np.argmax(classifier.predict(bench.image[None])[0]))
    objective = Objective.for_classes([top1], classifier.num_classes)
    finals = []

    def once() -> None:
        *_, final = explain(classifier, bench.image, name, objective, params)
        finals.append(final)

    once()
    batch = classifier.max_batch if get_method(name).black_box else classifier.gradient_max_batch
    if fb_samples:
        baseline = input_gradient_samples(bench, fb_samples)
        times, ratios = [], []
        for _ in range(max(bench.runs, 5)):
            (elapsed,) = walls(once, 1)
            times.append(elapsed)
            ratios.append(elapsed / baseline())
        result = row(batch, finals[-1].forward + finals[-1].backward, times)
        result["vs_passes"] = round(statistics.median(ratios), 2)
        notes_prefix = [f"baseline batch {bench.shared['fb_best_batch']}"]
    else:
        result = row(batch, finals[-1].forward + finals[-1].backward, walls(once, bench.runs))
        notes_prefix = []
        if not get_method(name).black_box:  # vs_passes is filled in by main() from the best raw rates
            input_gradient_samples(bench, 1)
            result.update(forward=finals[-1].forward, backward=finals[-1].backward)
    extras = finals[-1].extras
    notes = notes_prefix + [f"{key}={extras[key]:.3g}" for key in ("slic_seconds", "r2", "completeness_gap_relative")
                            if key in extras]
    if notes:
        result["notes"] = " ".join(notes)
    return result


def input_gradient_samples(bench: Bench, samples: int) -> Callable[[], float]:
    """A function timing ``samples`` forward+backward samples through the input-gradient graph in
    batches of its best size (1 to 32, chosen once per benchmark run by per-sample time)."""
    if "fb_best_batch" not in bench.shared:
        rows = bench.shared["fb_rows"] = {batch: gradient(bench, batch, cam_layer=False) for batch in (1, 2, 4, 8, 16, 32)}
        bench.shared["fb_best_batch"] = min(rows, key=lambda b: rows[b]["wall_s"] / rows[b]["passes"])
        bench.shared["fb_per_sample"] = min(r["wall_s"] / r["passes"] for r in rows.values())
    batch = bench.shared["fb_best_batch"]
    step = gradient_step(bench, batch, [])
    runs = -(-samples // batch)  # whole batches: at least ``samples`` samples

    def timed() -> float:
        """Seconds for ``samples`` samples (whole batches run, scaled to ``samples``)."""
        start = time.perf_counter()
        for _ in range(runs):
            step()
        return (time.perf_counter() - start) * samples / (runs * batch)

    return timed


def time_to_quality(bench: Bench, name: str, fast: dict, base: dict | None = None,
                    report: tuple[str, ...] = ()) -> dict:
    """A faster mode of ``name`` (params ``fast``) against its default run (``base``, None = the
    defaults), alternated run by run on the top-1 class so a shared machine's drift hits both alike.
    The row is the fast mode's; ``vs_passes`` = its median time ÷ the default's, ``notes``: the
    Pearson r of its map with the default's map, both runs' passes, and the ``report`` extras of each."""
    classifier = bench.classifier()
    objective = top1(bench, classifier)
    finals: dict[str, object] = {}

    def once(label: str, params: dict | None) -> Callable[[], None]:
        def run() -> None:
            *_, finals[label] = explain(classifier, bench.image, name, objective, params)
        return run

    list(explain(classifier, bench.image, name, objective, WARM_UP[name]))  # builds and compiles the graphs
    times: dict[str, list[float]] = {"base": [], "fast": []}
    for _ in range(bench.runs):
        for label, params in (("base", base), ("fast", fast)):
            times[label] += walls(once(label, params), 1)
    fast_final, base_final = finals["fast"], finals["base"]
    result = row(classifier.max_batch if get_method(name).black_box else classifier.gradient_max_batch,
                 fast_final.forward + fast_final.backward, times["fast"])
    result["vs_passes"] = round(statistics.median(times["fast"]) / statistics.median(times["base"]), 3)

    def described(final) -> str:
        extras = " ".join(f"{key}={final.extras[key]:.3g}" for key in report if key in final.extras)
        return f"{final.forward + final.backward} passes{' ' + extras if extras else ''}"

    result["notes"] = (f"time ÷ default {result['vs_passes']}; r with default map "
                       f"{pearson(fast_final.heatmaps, base_final.heatmaps):.4f}; fast: {described(fast_final)}; "
                       f"default ({statistics.median(times['base']):.2f} s): {described(base_final)}")
    return result


WARM_UP = {"integrated_gradients": {"steps": 2}, "lime": {"samples": 16}, "score_cam": {"top_channels": 1}}
"""Cheap calls of each time-to-quality method that build and compile the same graphs as a full run."""
IG_REPORT = ("steps", "steps_evaluated", "completeness_gap_relative", "converged")
LIME_REPORT = ("samples_used", "coefficient_change", "r2")
SCORE_CAM_REPORT = ("channels_scored", "channels_used")
TIME_TO_QUALITY = [
    ("ttq integrated_gradients, gap <= 1% vs 50 steps", partial(
        time_to_quality, name="integrated_gradients", fast={"completeness_tolerance": 0.01}, report=IG_REPORT)),
    ("ttq integrated_gradients, gap <= 1% within 256 steps vs 50 steps", partial(
        time_to_quality, name="integrated_gradients", fast={"completeness_tolerance": 0.01, "steps": 256},
        report=IG_REPORT)),
    ("ttq integrated_gradients, gap <= 5% vs 50 steps", partial(
        time_to_quality, name="integrated_gradients", fast={"completeness_tolerance": 0.05}, report=IG_REPORT)),
    ("ttq lime, tolerance 0.2 vs 1000 samples", partial(
        time_to_quality, name="lime", fast={"convergence_tolerance": 0.2}, report=LIME_REPORT)),
    ("ttq lime, quasi_random + tolerance 0.2 vs 1000 samples", partial(
        time_to_quality, name="lime", fast={"convergence_tolerance": 0.2, "sampling": "quasi_random"},
        report=LIME_REPORT)),
    ("ttq score_cam, skip_constant vs all 1280 channels", partial(
        time_to_quality, name="score_cam", fast={"skip_constant": True}, report=SCORE_CAM_REPORT)),
    ("ttq score_cam, skip_constant + top 128 channels vs all", partial(
        time_to_quality, name="score_cam", fast={"skip_constant": True, "top_channels": 128},
        report=SCORE_CAM_REPORT)),
]
"""Time-to-quality rows (``--only ttq``): each a faster mode against the method's default, paired."""


def method_vs_forward(bench: Bench, name: str) -> dict:
    """Latency of ``name`` (top-1 class, defaults) ÷ a batch-1 forward through the same path
    (``OnnxClassifier.predict``: the batched loop every method runs in), each method run paired with
    a forward right after it (median ratio: a shared machine's drift cancels); notes: the ratio to
    the bare session call too."""
    classifier = bench.classifier()
    objective = top1(bench, classifier)
    session = classifier.compiled(PLAIN_VARIANT).session
    feed = {classifier.signature.input_name: np.ascontiguousarray(bench.image[None])}
    finals = []

    def once() -> None:
        *_, final = explain(classifier, bench.image, name, objective)
        finals.append(final)

    def forward() -> None:
        classifier.predict(bench.image[None])

    walls(once, 2), walls(forward, 2), walls(lambda: session.run(None, feed), 2)  # warm-up: graphs, arenas
    times, ratios, raw_ratios = [], [], []
    for _ in range(max(bench.runs, 9)):
        (elapsed,) = walls(once, 1)
        times.append(elapsed)
        ratios.append(elapsed / walls(forward, 1)[0])
        raw_ratios.append(elapsed / walls(lambda: session.run(None, feed), 1)[0])
    result = row(1, finals[-1].forward + finals[-1].backward, times)
    result["vs_forward"] = round(statistics.median(ratios), 2)
    result["notes"] = f"÷ bare session.run: {statistics.median(raw_ratios):.2f}"
    return result


def gradient_best_batch(bench: Bench) -> dict:
    """The input-gradient graph at the batch size (1–32) with the lowest time per sample;
    ``vs_forward`` as in the other forward+backward rows (÷ the plain forward at that batch)."""
    input_gradient_samples(bench, 1)
    best = bench.shared["fb_best_batch"]
    result = dict(bench.shared["fb_rows"][best])
    result["notes"] = "vs_forward by batch: " + ", ".join(
        f"{b}: {r['vs_forward']}" for b, r in bench.shared["fb_rows"].items())
    return result


def graph_build(bench: Bench, shape: str) -> dict:
    """Building the gradient graph (input + CAM layer gradients) of an architecture, introspection
    already done: ``wall_s`` the builder alone (cold); notes: the introspection the first gradient
    request also pays (simplified graph, probed shapes), onnxruntime's compile of the result, and
    the same graph read back from the disk cache by a freshly loaded classifier (warm start)."""
    import tempfile

    from onnxplain.explainers.model.variants import build_variant

    def load() -> OnnxClassifier:
        if shape == "efficientnet_lite0":
            return OnnxClassifier.load(MODEL_DIR / "model.onnx", config=bench.config, **NO_DISK_CACHE)
        return OnnxClassifier(getattr(shapes, shape)(), config=ModelConfig(max_batch=8), **NO_DISK_CACHE)

    classifier = load()
    variant = Variant.gradient(layers=(classifier.cam_layer,))
    introspection = walls(lambda: (classifier.introspection.tensor_shapes(), classifier.introspection.simplified_model()),
                          1)[0]
    built = []
    times = walls(lambda: built.append(build_variant(variant, classifier.introspection, classifier.model_input)),
                  1 if shape == "vgg11" else bench.runs)
    compile_s = walls(lambda: classifier._open_session(built[-1][0]), 1)[0]
    notes = [f"introspection {introspection:.2f} s", f"compile {compile_s:.2f} s"]
    if graph_cache is None:
        notes.append("disk cache n/a")
    else:
        with tempfile.TemporaryDirectory() as folder:
            cache = graph_cache.GraphCache(folder)
            restarted = load()
            cold = walls(lambda: build_variant_cached(variant, restarted.introspection, restarted.model_input,
                                                      cache=cache, model_hash=restarted._content_digest), 1)[0]
            again = load()
            warm = walls(lambda: build_variant_cached(variant, again.introspection, again.model_input, cache=cache,
                                                      model_hash=again._content_digest), 1)[0]
            notes.append(f"first start with the disk cache {cold:.2f} s (incl. introspection, hashing, writing); "
                         f"restart reading it {warm:.2f} s")
    result = row(0, 0, times)
    result["notes"] = "; ".join(notes)
    return result


RAW = "raw onnxruntime"
CASES: list[tuple[str, Callable[[Bench], dict]]] = [
    *((RAW, partial(raw_forward, batch=b)) for b in (1, 8, 16, 32, 64)),
    ("gradient graph build (s)", gradient_build),
    ("forward+backward, batch 1", partial(gradient, batch=1)),
    ("forward+backward, batch 32", partial(gradient, batch=32)),
    ("forward+backward (input gradient), best batch", gradient_best_batch),
    ("forward+backward, resnet50-shaped, batch 1", partial(gradient, batch=1, cam_layer=False, shape="resnet50")),
    ("forward+backward, resnet50-shaped, batch 8", partial(gradient, batch=8, cam_layer=False, shape="resnet50")),
    *((f"graph build, {shape} (s)", partial(graph_build, shape=shape))
      for shape in ("efficientnet_lite0", "resnet50", "vgg11")),
    *((f"{name} ÷ batch-1 forward", partial(method_vs_forward, name=name))
      for name in ("cam", "grad_cam", "grad_cam_plus_plus")),
    ("occlusion, max_batch 8", partial(occlusion, max_batch=8)),
    ("occlusion, config max_batch", partial(occlusion, max_batch=None)),
    ("occlusion, max_batch 32", partial(occlusion, max_batch=32)),
    ("rise, 4000 masks, config max_batch", partial(rise, max_batch=None)),
    ("rise aggregation, 4000 masks (s)", rise_aggregation),
    ("rise reference, 16000 quasi-random masks", rise_reference),
    ("rise time-to-quality r>=0.95, random", partial(rise_time_to_quality, sampling="random", masks=16000)),
    ("rise time-to-quality r>=0.95, quasi_random", partial(rise_time_to_quality, sampling="quasi_random", masks=4000)),
    ("lime, 1000 samples", partial(method, name="lime")),
    ("score_cam (1280 channels)", partial(method, name="score_cam")),
    ("extremal_perturbation, 1 area, 100 it, exact", partial(
        method, name="extremal_perturbation", params={"areas": [0.1], "iterations": 100, "gradient": "exact"})),
    *((name, partial(method, name=name)) for name in (
        "saliency", "input_x_gradient", "guided_backprop", "deconvnet", "cam", "grad_cam", "guided_grad_cam",
        "grad_cam_plus_plus", "deeplift", "fullgrad")),
    ("integrated_gradients, 50 steps", partial(method, name="integrated_gradients", fb_samples=50)),
    ("smoothgrad, 50 samples", partial(method, name="smoothgrad", fb_samples=50)),
    *TIME_TO_QUALITY,
]
"""(name, fn(bench) -> row(...)) in run order; the raw rows must come first. Add rows here."""


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(str(r.get(c, "")) for c in COLUMNS) + " |" for r in rows]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="folder for results.*")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    parser.add_argument("--only", default="", help="run only the cases whose name contains one of these "
                        "comma-separated words (the raw rows always run)")
    args = parser.parse_args()
    started, clock, load = datetime.datetime.now(datetime.timezone.utc), time.perf_counter(), os.getloadavg()[0]
    config = ModelConfig.from_file(MODEL_DIR / "config.json")
    image, _ = preprocess(Image.fromarray(skimage.data.coffee()), config.preprocessing, size=(224, 224), channels=3)
    bench = Bench(config, image, runs=1 if args.quick else 3, raw_seconds=0.3 if args.quick else 1.5, quick=args.quick)
    rows = []
    wanted = [word for word in args.only.split(",") if word]
    for name, run in CASES:
        if wanted and name != RAW and not any(word in name for word in wanted):
            continue
        rows.append({"case": name, **run(bench)})
        print(f"  {name}: {rows[-1]}", file=sys.stderr, flush=True)
    best_raw = max(r["passes_per_s"] for r in rows if r["case"] == RAW)
    for r in rows:
        if r["passes"] and r["passes_per_s"]:
            r["efficiency"] = round(r["passes_per_s"] / best_raw, 3)
        if "forward" in r:  # a white-box method: its latency ÷ what its passes take at the best rates
            ideal = r["backward"] * bench.shared["fb_per_sample"] + (r["forward"] - r["backward"]) / best_raw
            r["vs_passes"] = round(r["wall_s"] / ideal, 2)
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
    markdown_path = args.out / "results.md"
    markdown_path.write_text(table + later_sections(markdown_path))
    print(table, end="")


if __name__ == "__main__":
    main()
