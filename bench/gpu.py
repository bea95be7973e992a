"""The GPU check: onnxplain on onnxruntime's CUDA execution provider, against its CPU provider, on the
bundled EfficientNet-Lite0 and skimage's coffee photo. Run through ``bench/gpu.sh`` (which makes the
virtual environment); under 5 minutes on any CUDA GPU.

1. **Correctness.** Saliency, Grad-CAM and Integrated Gradients (the defaults, top-1 class) on CUDA
   against the same calls on CPU: the largest heatmap difference ÷ the CPU map's largest magnitude must
   stay ≤ ``TOLERANCE`` (1e-3), and the Pearson r ≥ 0.9999. Why 1e-3: both run float32, but cuDNN picks
   other convolution algorithms (Winograd/FFT, other summation orders) than MLAS; each layer's relative
   rounding error is ~√K·2⁻²⁴ ≈ 1e-5 for K ~ 10⁴-term sums, and it compounds through the ~60 layers of
   the forward and again through the backward, so 1e-4–1e-3 of the map's scale is expected, while a
   wrong gradient (a missed rule, a wrong layout) is off by O(1). TF32 is switched off (``use_tf32=0``),
   whose 10-bit mantissa would not meet it; the speed rows run with the provider's defaults.
2. **IO binding.** onnxplain binds the static inputs of its perturbation graphs (the image and the
   baseline) to the device once per request (``explainers/model/loop.py``, ``bind_static``). The check
   also times a raw forward with the input bound on the device and the output left there
   (``run_with_iobinding``) against a plain ``session.run`` from numpy, at batch 1 and 64.
3. **fp16** (``--fp16``, needs ``onnxconverter-common``): the model converted to float16 (inputs and
   outputs kept float32), raw forward time vs float32 and top-1 agreement / largest probability
   difference. onnxplain itself runs the float32 model; this says whether an fp16 export is worth it.
4. **Ratios**, as ``bench/run.py``'s: each method's latency (defaults, top-1, after a warm-up call) ÷
   the raw batch-1 forward measured in the same run.

Exits 2 with a message when onnxruntime has no working CUDA provider (a session asked for it must
actually run on it: onnxruntime silently falls back to CPU when the CUDA libraries do not load), and 1
when a correctness check fails. Writes ``gpu.json`` and ``gpu.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "efficientnet_lite0"
CUDA = "CUDAExecutionProvider"
TOLERANCE = 1e-3
"""Largest |CUDA − CPU| heatmap difference ÷ the CPU map's largest magnitude (see the module doc)."""
CHECKED = ("saliency", "grad_cam", "integrated_gradients")
TIMED = ("occlusion", "rise", "lime", "score_cam", "saliency", "grad_cam", "grad_cam_plus_plus",
         "integrated_gradients", "smoothgrad")
NO_CUDA = 2


def cuda_or_exit() -> None:
    """Exit with NO_CUDA and a message unless a session asked for CUDA really runs on it."""
    offered = ort.get_available_providers()
    if CUDA not in offered:
        print(f"bench/gpu.py: no CUDA execution provider in this onnxruntime {ort.__version__} "
              f"(providers: {', '.join(offered)}); install onnxruntime-gpu (bench/gpu.sh does) on a machine "
              "with an NVIDIA GPU and its driver", file=sys.stderr)
        sys.exit(NO_CUDA)
    session = ort.InferenceSession(str(MODEL_DIR / "model.onnx"), providers=[CUDA, "CPUExecutionProvider"])
    if session.get_providers()[0] != CUDA:
        print(f"bench/gpu.py: onnxruntime {ort.__version__} offers CUDA but a session fell back to "
              f"{session.get_providers()} (CUDA/cuDNN libraries missing or no GPU visible: check nvidia-smi "
              "and the onnxruntime-gpu CUDA requirements)", file=sys.stderr)
        sys.exit(NO_CUDA)


def median_time(step: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-check"))
    parser.add_argument("--runs", type=int, default=5, help="timed runs per row (median)")
    parser.add_argument("--fp16", action="store_true", help="also time a float16 conversion (onnxconverter-common)")
    parser.add_argument("--timed", default=",".join(TIMED), help="comma-separated methods of the latency rows")
    parser.add_argument("--rehearse-on-cpu", action="store_true",
                        help="run every step with the CPU provider standing in for CUDA (tests this script)")
    args = parser.parse_args()
    device = "cpu" if args.rehearse_on_cpu else "cuda"
    if not args.rehearse_on_cpu:
        cuda_or_exit()

    import skimage.data
    from PIL import Image

    from onnxplain.explainers.explain import explain
    from onnxplain.explainers.model import PLAIN_VARIANT, ModelConfig, OnnxClassifier, preprocess
    from onnxplain.explainers.objectives import Objective

    config = ModelConfig.from_file(MODEL_DIR / "config.json")
    image, _ = preprocess(Image.fromarray(skimage.data.coffee()), config.preprocessing, size=(224, 224), channels=3)
    providers = {"cpu": ["CPUExecutionProvider"], "cuda": [(CUDA, {"use_tf32": "0"}), "CPUExecutionProvider"],
                 "cuda_default": [CUDA, "CPUExecutionProvider"]}
    if args.rehearse_on_cpu:
        providers.update(cuda=["CPUExecutionProvider"], cuda_default=["CPUExecutionProvider"])
    load = {name: OnnxClassifier.load(MODEL_DIR / "model.onnx", config=config, name="lite0", providers=chosen)
            for name, chosen in providers.items()}
    top1 = int(np.argmax(load["cpu"].predict(image[None])[0]))
    objective = Objective.for_classes([top1], load["cpu"].num_classes)

    def final(classifier, method: str):
        *_, result = explain(classifier, image, method, objective)
        return result

    failures, checks = [], []
    for method in CHECKED:  # 1. correctness
        cpu, cuda = final(load["cpu"], method).heatmaps, final(load["cuda"], method).heatmaps
        relative = float(np.max(np.abs(cuda - cpu)) / max(float(np.max(np.abs(cpu))), 1e-30))
        r = float(np.corrcoef(cpu.ravel(), cuda.ravel())[0, 1])
        ok = relative <= TOLERANCE and r >= 0.9999
        checks.append({"method": method, "max_difference_relative": relative, "pearson_r": r, "ok": ok})
        print(f"  check {checks[-1]}", file=sys.stderr, flush=True)
        if not ok:
            failures.append(method)

    classifier = load["cuda_default"]  # 2. IO binding and 4. ratios, with the provider's defaults
    session = classifier.compiled(PLAIN_VARIANT).session
    name = classifier.signature.input_name
    rows = []
    for batch in (1, 64):
        batch_images = np.ascontiguousarray(np.repeat(image[None], batch, axis=0))
        session.run(None, {name: batch_images})
        plain = median_time(lambda b=batch_images: session.run(None, {name: b}), args.runs * 4)
        on_device = ort.OrtValue.ortvalue_from_numpy(batch_images, device, 0)
        binding = session.io_binding()
        binding.bind_ortvalue_input(name, on_device)
        for output in session.get_outputs():
            binding.bind_output(output.name, device)
        session.run_with_iobinding(binding)
        bound = median_time(lambda b=binding: session.run_with_iobinding(b), args.runs * 4)
        rows.append({"case": f"raw forward, batch {batch}", "seconds": plain, "vs_forward": "",
                     "notes": f"io binding (input and output on the device): {bound:.5f} s = {bound / plain:.2f}x"})
    forward = rows[0]["seconds"]
    for method in filter(None, args.timed.split(",")):
        final(classifier, method)  # builds and compiles its graphs
        runs, result = [], None
        for _ in range(max(1, args.runs // 2)):
            start = time.perf_counter()
            result = final(classifier, method)
            runs.append(time.perf_counter() - start)
        seconds = statistics.median(runs)
        rows.append({"case": method, "seconds": seconds, "vs_forward": round(seconds / forward, 2),
                     "notes": f"{result.forward} F + {result.backward} B"})
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)

    fp16 = fp16_row(image, args.runs, device) if args.fp16 else None  # 3.
    if fp16:
        rows.append(fp16)
    table = "\n".join(["| case | seconds | ÷ raw batch-1 forward | notes |", "|---|---|---|---|"]
                      + [f"| {r['case']} | {r['seconds']:.5f} | {r['vs_forward']} | {r['notes']} |" for r in rows])
    checks_md = "\n".join(["| method | max diff ÷ max | r | ok |", "|---|---|---|---|"]
                          + [f"| {c['method']} | {c['max_difference_relative']:.2e} | {c['pearson_r']:.6f} | "
                             f"{c['ok']} |" for c in checks])
    result = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "tolerance": TOLERANCE,
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "onnxruntime": ort.__version__,
                          "device": ort.get_device(), "rehearsal_on_cpu": args.rehearse_on_cpu}, "checks": checks, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "gpu.md").write_text(f"## CUDA vs CPU heatmaps\n\n{checks_md}\n\n## Latency on CUDA\n\n{table}\n")
    print((args.out / "gpu.md").read_text(), end="")
    if failures:
        print(f"bench/gpu.py: CUDA heatmaps differ from CPU beyond {TOLERANCE}: {', '.join(failures)}",
              file=sys.stderr)
        return 1
    return 0


def fp16_row(image: np.ndarray, runs: int, device: str) -> dict:
    """The raw batch-1 forward of a float16 conversion (float32 inputs/outputs kept) vs float32, on CUDA."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(MODEL_DIR / "model.onnx")
    half = float16.convert_float_to_float16(model, keep_io_types=True)
    sessions = {kind: ort.InferenceSession(m.SerializeToString(), providers=[CUDA if device == "cuda" else "CPUExecutionProvider"]) for kind, m in
                (("fp32", model), ("fp16", half))}
    name = sessions["fp32"].get_inputs()[0].name
    feed = {name: image[None].astype(np.float32)}
    outputs = {kind: s.run(None, feed)[0][0] for kind, s in sessions.items()}
    times = {kind: median_time(lambda s=s: s.run(None, feed), runs * 4) for kind, s in sessions.items()}
    same = int(np.argmax(outputs["fp32"])) == int(np.argmax(outputs["fp16"]))
    difference = float(np.max(np.abs(outputs["fp32"] - outputs["fp16"])))
    return {"case": "fp16 raw forward, batch 1", "seconds": times["fp16"], "vs_forward": "",
            "notes": f"fp16 ÷ fp32 {times['fp16'] / times['fp32']:.2f}; same top-1: {same}; "
                     f"largest output difference {difference:.2e}"}


if __name__ == "__main__":
    sys.exit(main())
