"""onnxplain against its peers, side by side: the same methods on the same model and image, paired runs.

Run with ``bash bench/peers/run.sh`` (sets up .venv-peers, then runs this file with the project's
.venv python). This process runs onnxplain's library ``explain()`` on the ONNX model; a worker
subprocess in .venv-peers (bench/peers/worker.py) runs the peers on the torch model the ONNX file was
exported from:

    method                 peer (torch 2.13 CPU)                               onnxplain
    saliency               Captum Saliency (abs=True)                          saliency
    input_x_gradient       Captum InputXGradient                               input_x_gradient
    integrated_gradients   Captum IntegratedGradients, 50 steps, Gauss–Legendre,  integrated_gradients, same
                           zero baseline
    guided_backprop        Captum GuidedBackprop                               guided_backprop
    deeplift               Captum DeepLift (rescale), zero baseline            deeplift, baseline zero
    grad_cam               pytorch-grad-cam GradCAM                            grad_cam
    grad_cam_plus_plus     pytorch-grad-cam GradCAMPlusPlus                    grad_cam_plus_plus
    score_cam              pytorch-grad-cam ScoreCAM (batch 32)                score_cam (max_batch 32)
    lime                   lime LimeImageExplainer: 1000 samples, batch 32,    lime (defaults: 1000 samples,
                           onnxplain's SLIC segmentation, segment-mean fill,   SLIC 50, segment mean) — its
                           kernel 0.25, Ridge α 1                              SLIC is inside the timed call

The model (worker.py ``SmallResNet``): a seeded ResNet-like CNN, [1, 3, 128, 128] → 10 logits, exported
at run time with the TorchScript exporter (tools/fixtures/legacy_export.py, as the golden fixtures).
The image: skimage's coffee photo, 128×128, ImageNet mean/std normalised. Target: the top-1 class.

Before timing it checks that both sides agree, and stops otherwise: the logits of the image and a
seeded noise image match (max |Δ| ≤ 1e-4 · max |logit|, same top-1), and each method's two maps have
Pearson r ≥ ``MIN_R[method]`` (gradient maps ~1; LIME's samples differ, so lower).

Timing: one warm-up call each (builds onnxplain's gradient graphs and the peers' hooks), then
``--runs`` pairs, each the peer's call then onnxplain's, alternating so drift on a shared machine hits
both; each side's median, and the median of the per-pair ratios ours / theirs. The peer's time is its
library call alone (measured in the worker); ours is ``explain()`` drained. Both sides use ``--threads``
threads (torch.set_num_threads; onnxruntime intra_op_num_threads; BLAS env vars in the worker), and the
worker runs with OMP_WAIT_POLICY=PASSIVE (see ``OMP_WAIT_POLICY``); onnxruntime keeps its defaults.
Writes bench/peers/results.json and replaces the ``## Peers`` section of bench/results.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import skimage.data
from PIL import Image

from onnxplain.explainers.events import Explanation
from onnxplain.explainers.explain import explain
from onnxplain.explainers.model import ModelConfig, OnnxClassifier
from onnxplain.explainers.objectives import Objective
from onnxplain.explainers.perturb.masks import superpixels

ROOT = Path(__file__).resolve().parents[2]
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
MAX_BATCH = 32
PEER = {
    "saliency": "Captum Saliency", "input_x_gradient": "Captum InputXGradient",
    "integrated_gradients": "Captum IntegratedGradients (50 steps)", "guided_backprop": "Captum GuidedBackprop",
    "deeplift": "Captum DeepLift", "grad_cam": "pytorch-grad-cam GradCAM",
    "grad_cam_plus_plus": "pytorch-grad-cam GradCAMPlusPlus", "score_cam": "pytorch-grad-cam ScoreCAM",
    "lime": "lime LimeImageExplainer (1000 samples)",
}
OURS_PARAMS = {"integrated_gradients": {"baseline": "zero", "steps": 50, "rule": "gauss_legendre"},
               "deeplift": {"baseline": "zero"}, "lime": {"segments": 50, "compactness": 10.0, "samples": 1000}}
# torch's OpenMP threads sleep instead of spinning while they wait: with the default (active) policy two torch
# threads on this shared 2-core machine took 0.15-1.5 s per Captum saliency call instead of 0.04 s (each spinning
# thread waits for a descheduled partner), which would time the machine's load rather than the library.
OMP_WAIT_POLICY = "PASSIVE"
MIN_R = {"lime": 0.8}  # every other method: 0.99
LIME_SEGMENTS = (50, 10.0)  # onnxplain's lime defaults (segments, compactness), given to lime as segmentation_fn


class Worker:
    """The .venv-peers subprocess (worker.py), one JSON line per command."""

    def __init__(self, threads: int, log: Path):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   OPENBLAS_NUM_THREADS=str(threads), OMP_WAIT_POLICY=OMP_WAIT_POLICY)
        self.log = log.open("w")
        self.process = subprocess.Popen([str(PEERS_PYTHON), str(Path(__file__).with_name("worker.py")), str(threads)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                        env=env)

    def ask(self, **command) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            self.log.flush()
            raise RuntimeError("peers worker died:\n" + Path(self.log.name).read_text()[-3000:])
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)
        self.log.close()


def make_image(size: int) -> np.ndarray:
    """skimage's coffee, resized to size×size, ImageNet-normalised: float32 [3, size, size]."""
    photo = np.asarray(Image.fromarray(skimage.data.coffee()).resize((size, size), Image.BILINEAR), np.float32) / 255
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    return np.ascontiguousarray(((photo - mean) / std).transpose(2, 0, 1))


def check_logits(classifier: OnnxClassifier, worker: Worker, image: np.ndarray, scratch: Path) -> dict:
    """The ONNX model (onnxruntime) and the torch model give the same logits; raises otherwise."""
    batch = np.stack([image, np.random.default_rng(0).standard_normal(image.shape).astype(np.float32)])
    np.save(scratch / "batch.npy", batch)
    theirs = np.load(worker.ask(cmd="logits", x=str(scratch / "batch.npy"))["out"])
    ours = classifier.predict(batch)
    difference = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
    if difference > 1e-4 or not np.array_equal(ours.argmax(1), theirs.argmax(1)):
        raise SystemExit(f"the ONNX and torch models disagree: relative logit difference {difference:.2e}")
    return {"max_relative_logit_difference": difference, "top1": int(theirs[0].argmax())}


def ours_once(classifier: OnnxClassifier, image: np.ndarray, method: str, objective: Objective) -> tuple[float, Explanation]:
    start = time.perf_counter()
    result = None
    for event in explain(classifier, image, method, objective, OURS_PARAMS.get(method), seed=0):
        if isinstance(event, Explanation):
            result = event
    return time.perf_counter() - start, result


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def bench_method(method: str, runs: int, classifier: OnnxClassifier, worker: Worker, image: np.ndarray,
                 target: int, scratch: Path) -> dict:
    """Warm-up + agreement check, then ``runs`` pairs (theirs, ours)."""
    objective = Objective.for_classes([target], classifier.num_classes)
    command = {"cmd": "run", "method": method, "x": str(scratch / "image.npy"), "target": target,
               "out": str(scratch / f"{method}.npy")}
    if method == "lime":
        command["segments"] = str(scratch / "segments.npy")
    load = os.getloadavg()[0]
    worker.ask(**command)  # warm-up
    _, explanation = ours_once(classifier, image, method, objective)
    r = pearson(np.load(command["out"]), explanation.heatmaps[0])
    if not r >= MIN_R.get(method, 0.99):
        raise SystemExit(f"{method}: the maps disagree (Pearson r {r:.4f} < {MIN_R.get(method, 0.99)})")
    theirs, ours = [], []
    for _ in range(runs):
        theirs.append(worker.ask(**command)["seconds"])
        ours.append(ours_once(classifier, image, method, objective)[0])
    ratios = [o / t for o, t in zip(ours, theirs)]
    row = {"method": method, "peer": PEER[method], "theirs_s": round(statistics.median(theirs), 4),
           "ours_s": round(statistics.median(ours), 4), "ours_over_theirs": round(statistics.median(ratios), 3),
           "pearson_r": round(r, 4), "theirs_runs_s": [round(t, 4) for t in theirs],
           "ours_runs_s": [round(t, 4) for t in ours], "ours_passes": explanation.forward + explanation.backward,
           "load_average_1min": [round(load, 2), round(os.getloadavg()[0], 2)]}
    if method == "lime":
        row["ours_slic_s"] = round(float(explanation.extras.get("slic_seconds", float("nan"))), 4)
    print(f"{method:22s} theirs {row['theirs_s']:8.4f} s  ours {row['ours_s']:8.4f} s  "
          f"ours/theirs {row['ours_over_theirs']:6.3f}  r {r:.4f}  load {row['load_average_1min']}", flush=True)
    return row


def markdown(result: dict) -> str:
    """The ``## Peers`` section of bench/results.md."""
    info = result["info"]
    lines = [
        "## Peers",
        "",
        f"`bash bench/peers/run.sh` ({info['timestamp']}, {info['runs']} paired runs per method, "
        f"{info['threads']} threads on both sides (torch with OMP_WAIT_POLICY=PASSIVE), load average {info['load_average_start']} at start, "
        f"{info['load_average_end']} at end). Model: a seeded ResNet-like CNN (bench/peers/worker.py), "
        f"[1, 3, 128, 128] → 10 logits, torch {info['versions']['torch']} CPU on their side, its ONNX export on "
        f"onnxruntime {info['versions']['onnxruntime']} on ours (logits agree to "
        f"{info['max_relative_logit_difference']:.1e} relative); skimage's coffee, top-1 class. Peers: "
        f"Captum {info['versions']['captum']}, pytorch-grad-cam {info['versions']['grad_cam']}, "
        f"lime {info['versions']['lime']}. Times are medians; ours/theirs is the median of the per-pair ratios "
        "(< 1: onnxplain faster). r: Pearson correlation of the two heatmaps.",
        "",
        "| method | peer | theirs s | ours s | ours/theirs | r |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(f"| {row['method']} | {row['peer']} | {row['theirs_s']:.4f} | {row['ours_s']:.4f} | "
                     f"{row['ours_over_theirs']:.3f} | {row['pearson_r']:.4f} |")
    lines += ["", "Left out: " + result["info"]["left_out"], ""]
    return "\n".join(lines)


def replace_section(path: Path, section: str) -> None:
    """Replace ``## Peers`` (up to the next ``## `` heading) in ``path``, or append it."""
    text = path.read_text() if path.exists() else ""
    start = text.find("\n## Peers\n") + 1 if "\n## Peers\n" in text else (0 if text.startswith("## Peers\n") else -1)
    if start < 0:
        path.write_text(text.rstrip("\n") + "\n\n" + section)
        return
    end = text.find("\n## ", start + 1)
    rest = text[end + 1:] if end >= 0 else ""
    path.write_text(text[:start] + section + ("\n" + rest if rest else ""))


LEFT_OUT = ("openvino-xai: it implements none of these methods (white-box ReciproCAM, ViT-ReciproCAM and "
            "activation maps; black-box RISE and AISE), and openvino-xai 1.1.0 pins numpy 1.* and openvino-dev 2024.4, "
            "which cannot share .venv-peers with torch 2.13 and numpy 2.4 (bench/README.md, Peers).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed pairs per method (after one warm-up each)")
    parser.add_argument("--threads", type=int, default=2, help="threads for torch and onnxruntime alike")
    parser.add_argument("--only", default="", help="comma-separated methods (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "peers", help="folder of results.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "bench" / "results.md",
                        help="file whose '## Peers' section is replaced")
    args = parser.parse_args()
    methods = [m for m in PEER if not args.only or m in args.only.split(",")]
    load_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="onnxplain-peers-") as folder:
        scratch = Path(folder)
        worker = Worker(args.threads, scratch / "worker.log")
        try:
            exported = worker.ask(cmd="export", dir=str(scratch))
            classifier = OnnxClassifier.load(exported["model"], config=ModelConfig(max_batch=MAX_BATCH),
                                             name="peers", threads=args.threads)
            image = make_image(exported["shape"][-1])
            np.save(scratch / "image.npy", image)
            np.save(scratch / "segments.npy", superpixels.slic_segments(image, *LIME_SEGMENTS))
            agreement = check_logits(classifier, worker, image, scratch)
            print(f"logits agree: {agreement}", flush=True)
            rows = [bench_method(m, args.runs, classifier, worker, image, agreement["top1"], scratch) for m in methods]
        finally:
            worker.close()
    versions = {k: exported[k] for k in ("torch", "captum", "grad_cam", "lime")}
    versions["onnxruntime"] = ort.__version__
    result = {"info": {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "runs": args.runs, "threads": args.threads, "omp_wait_policy": OMP_WAIT_POLICY, "torch_threads": exported["threads"],
        "load_average_start": load_start, "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(), "machine": platform.platform(), "python": sys.version.split()[0],
        "versions": versions, "image": "skimage.data.coffee() 128x128, ImageNet-normalised",
        "model": "bench/peers/worker.py SmallResNet, seeded, TorchScript ONNX export (opset 17)",
        "max_relative_logit_difference": agreement["max_relative_logit_difference"], "target": agreement["top1"],
        "left_out": LEFT_OUT}, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    replace_section(args.markdown, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
