"""onnxruntime's OpenVINO execution provider against its CPU provider, on the bundled EfficientNet-Lite0.

Runs in its own virtual environment, because ``onnxruntime-openvino`` replaces ``onnxruntime`` (the two
must never share one)::

    python3.11 -m venv .venv-openvino
    .venv-openvino/bin/pip install onnxruntime-openvino onnx scikit-image scikit-learn scipy pillow \\
        grpcio grpcio-health-checking grpcio-reflection grpcio-status protobuf threadpoolctl prometheus-client \\
        "setuptools>=77"
    .venv-openvino/bin/pip install --no-deps --no-build-isolation -e .
    .venv-openvino/bin/python bench/openvino.py --out /tmp/openvino

Two classifiers load the same model in one process, one on ``["CPUExecutionProvider"]``, one on
``["OpenVINOExecutionProvider", "CPUExecutionProvider"]`` (OpenVINO's CPU device; nodes it does not take
fall back to the CPU provider). Each row times both, alternated run by run (a shared machine's drift hits
both alike), and reports ``openvino ÷ cpu`` (below 1: OpenVINO is faster) and the largest difference
between their outputs (the gradient graphs' outputs included):

* ``forward, batch b`` — the plain session on b copies of the image (the occlusion/RISE workload);
* ``forward+backward, batch b`` — onnxplain's input-gradient graph on b copies, opened directly on each
  provider; then the same graph with its ``Constant`` nodes moved to initializers (the EP's ONNX reader
  fails on the graph as built — the row says so);
* ``explain METHOD`` — a whole default ``explain`` call of the top-1 class (forward-only: occlusion, RISE;
  gradient: saliency, Grad-CAM, Integrated Gradients).

Writes ``openvino.json`` and ``openvino.md`` to ``--out``; ``bench/README.md`` records a run.
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
import onnx
import onnxruntime as ort
import skimage.data
from PIL import Image

from onnxplain.explainers.autodiff import build_gradient_model
from onnxplain.explainers.explain import explain
from onnxplain.explainers.model import PLAIN_VARIANT, ModelConfig, OnnxClassifier, preprocess
from onnxplain.explainers.objectives import Objective

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "efficientnet_lite0"
PROVIDERS = {"cpu": ["CPUExecutionProvider"], "openvino": ["OpenVINOExecutionProvider", "CPUExecutionProvider"]}
METHODS = ("occlusion", "saliency", "grad_cam", "integrated_gradients")


def alternated(steps: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median wall time of each step over ``runs`` rounds, the steps alternated within a round."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(runs):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def forward_step(classifier: OnnxClassifier, image: np.ndarray, batch: int) -> Callable[[], list]:
    session = classifier.compiled(PLAIN_VARIANT).session
    feed = {classifier.signature.input_name: np.ascontiguousarray(np.repeat(image[None], batch, axis=0))}
    return lambda: session.run(None, feed)


def constants_as_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with every tensor-valued ``Constant`` node moved to an initializer: the OpenVINO EP's ONNX
    reader fails on the gradient graph otherwise ("…Constant_output_0 node not found in graph cache")."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    kept = []
    for node in copy.graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None)
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and value is not None:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value.t)
            tensor.name = node.output[0]
            copy.graph.initializer.append(tensor)
        else:
            kept.append(node)
    del copy.graph.node[:]
    copy.graph.node.extend(kept)
    return copy


def gradient_sessions(classifier: OnnxClassifier, rewrite: bool) -> tuple[object, dict[str, Callable]]:
    """onnxplain's input-gradient graph of the classifier, opened on each provider (same session options)."""
    graph = build_gradient_model(classifier.model, layers=[], shape_hints=classifier.introspection.tensor_shapes())
    model = constants_as_initializers(graph.model) if rewrite else graph.model
    options = ort.SessionOptions()
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    options.log_severity_level = 4
    return graph, {p: ort.InferenceSession(model.SerializeToString(), options, providers=providers)
                   for p, providers in PROVIDERS.items()}


def gradient_step(graph, session, classifier: OnnxClassifier, image: np.ndarray, batch: int, top1: int
                  ) -> Callable[[], list]:
    seeds = np.zeros((batch, classifier.num_classes), np.float32)
    seeds[:, top1] = 1
    feed = {graph.input_name: np.ascontiguousarray(np.repeat(image[None], batch, axis=0)), "class_weights": seeds}
    return lambda: session.run([graph.score_output, graph.input_grad], feed)


def largest_difference(a: list, b: list) -> float:
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))) for x, y in zip(a, b))


def compare(name: str, steps: dict[str, Callable[[], object]], runs: int, reps: int = 1, warm_ups: int = 2) -> dict:
    """One row: both providers' outputs compared (the first warm-up: it compiles OpenVINO's graphs), then
    timed (``reps`` calls per timed run)."""
    outputs = {provider: step() for provider, step in steps.items()}
    for _ in range(warm_ups - 1):
        for step in steps.values():
            step()
    times = alternated({p: (lambda s=s: [s() for _ in range(reps)]) for p, s in steps.items()}, runs)
    row = {"case": name, "cpu_s": round(times["cpu"] / reps, 5), "openvino_s": round(times["openvino"] / reps, 5),
           "openvino_vs_cpu": round(times["openvino"] / times["cpu"], 3)}
    if all(isinstance(o, list) for o in outputs.values()):
        row["max_abs_difference"] = float(f"{largest_difference(outputs['cpu'], outputs['openvino']):.3g}")
    else:  # an Explanation: compare the heatmaps, relative to the CPU map's range
        cpu_map, ov_map = outputs["cpu"].heatmaps, outputs["openvino"].heatmaps
        row["max_abs_difference"] = float(f"{np.max(np.abs(cpu_map - ov_map)) / np.ptp(cpu_map):.3g}")
        row["note"] = "heatmap difference ÷ the CPU map's range"
    print(f"  {row}", file=sys.stderr, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/openvino"))
    parser.add_argument("--runs", type=int, default=5, help="timed rounds per row (median)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated explain rows")
    args = parser.parse_args()
    if "OpenVINOExecutionProvider" not in ort.get_available_providers():
        sys.exit(f"bench/openvino.py: this onnxruntime ({ort.__version__}) has no OpenVINOExecutionProvider "
                 f"(providers: {ort.get_available_providers()}); run it in the .venv-openvino described above")
    config = ModelConfig.from_file(MODEL_DIR / "config.json")
    image, _ = preprocess(Image.fromarray(skimage.data.coffee()), config.preprocessing, size=(224, 224), channels=3)
    classifiers = {p: OnnxClassifier.load(MODEL_DIR / "model.onnx", config=config, name="lite0", providers=providers)
                   for p, providers in PROVIDERS.items()}
    top1 = int(np.argmax(classifiers["cpu"].predict(image[None])[0]))
    objective = Objective.for_classes([top1], classifiers["cpu"].num_classes)
    rows = []
    for batch in (1, 16):
        rows.append(compare(f"forward, batch {batch}",
                            {p: forward_step(c, image, batch) for p, c in classifiers.items()}, args.runs, reps=8))
    cpu = classifiers["cpu"]
    for rewrite in (False, True):
        label = "forward+backward" + (", Constant nodes as initializers" if rewrite else "")
        try:
            graph, sessions = gradient_sessions(cpu, rewrite)
        except Exception as exc:  # the OpenVINO EP refuses the graph: record why
            rows.append({"case": label, "note": f"OpenVINO EP fails: {str(exc).strip().splitlines()[-1][-200:]}"})
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
            continue
        for batch in (1, 8):
            rows.append(compare(f"{label}, batch {batch}", {p: gradient_step(graph, session, cpu, image, batch, top1)
                                                            for p, session in sessions.items()}, args.runs, reps=4))
    for method in filter(None, args.methods.split(",")):
        def run(classifier: OnnxClassifier, method: str = method):
            *_, final = explain(classifier, image, method, objective)
            return final
        try:
            rows.append(compare(f"explain {method}", {p: (lambda c=c: run(c)) for p, c in classifiers.items()},
                                max(1, args.runs // 3), warm_ups=1))
        except Exception as exc:  # a gradient method: the classifier's gradient graph on the OpenVINO EP
            rows.append({"case": f"explain {method}",
                         "note": f"OpenVINO EP fails: {str(exc).strip().splitlines()[-1][-200:]}"})
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    result = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "platform": platform.platform(),
                    "onnxruntime": ort.__version__, "providers": ort.get_available_providers(),
                    "openvino_session_providers": list(classifiers["openvino"].providers)},
        "rows": rows,
    }
    columns = ("case", "cpu_s", "openvino_s", "openvino_vs_cpu", "max_abs_difference", "note")
    table = "\n".join(["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
                      + ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "openvino.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "openvino.md").write_text(table)
    print(table, end="")


if __name__ == "__main__":
    main()
