"""Paired A/B of gradient-graph formulations on the bundled model (or a bench/shapes.py architecture).

    .venv/bin/python bench/formulations.py BATCH ROUNDS [efficientnet_lite0|resnet50]

Builds the input-gradient graph several times, swapping in the formulations that earlier versions of
the rules used or that were tried and dropped, and times each against the plain forward, alternated
per round in one process (each timing ~1 s of back-to-back runs, so every session is warm); prints the
median over rounds of (gradient graph ÷ plain forward) per formulation and each graph's largest
difference from the ``previous`` one. Formulations:

* ``previous``: ReLU/ReLU6 masks as a 1×1 depthwise Conv + Clip, strided depthwise adjoint as ConvTranspose
  (main before 2026-12-03's speed work);
* ``masks``: HardSigmoid masks (now), strided depthwise adjoint still ConvTranspose;
* ``resize``: HardSigmoid masks, zero-stuffing by Resize(nearest) ⊙ a 0/1 pattern (tried, dropped);
* ``current``: the rules as they are (HardSigmoid masks, zero-stuffing by a 1×1 unit ConvTranspose);
* ``one_pass_masks``: a timing proxy, not a formulation — every ReLU/ReLU6 mask replaced by the activation's
  output Y itself, so each mask costs one Mul(g, Y): the memory traffic of an ideal fused kernel
  g·[0 < Y < 6] (read g and Y, write once). Its gradients are wrong by design; it bounds what a fused
  mask kernel (an onnxruntime custom op) could gain over ``current``.

Results and the profile behind them: bench/README.md, "Gradient graph".
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("ONNXPLAIN_GRAPH_CACHE", "off")  # every formulation is built, never read back

import numpy as np
import onnxruntime as ort

import onnxplain.explainers.autodiff.rules.activations as activations
import onnxplain.explainers.autodiff.rules.conv as conv
from onnxplain.explainers.model import ModelConfig, OnnxClassifier, Variant

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shapes  # noqa: E402 — bench/shapes.py, next to this file

MODEL = Path(__file__).resolve().parents[1] / "models" / "efficientnet_lite0" / "model.onnx"


def conv_clip_mask(ctx, y, scale, offset):
    """clip(scale·y + offset, 0, 1) as a 1×1 depthwise Conv + Clip (the previous mask)."""
    channels = ctx.static_shape(y)[1]
    weights = ctx.const(np.full((channels, 1, 1, 1), scale, np.float32))
    bias = ctx.const(np.full((channels,), offset, np.float32))
    affine = ctx.op("Conv", y, weights, bias, group=channels, kernel_shape=[1, 1])
    return ctx.op("Clip", affine, ctx.const(0, like=y), ctx.const(1, like=y))


def _outputs(sizes, kernel, strides, pads, dilations):
    spatial = len(kernel)
    return [(size + pads[i] + pads[i + spatial] - d * (k - 1) - 1) // s + 1
            for i, (size, k, s, d) in enumerate(zip(sizes, kernel, strides, dilations))]


def conv_transpose_adjoint(ctx, g, weights, *, sizes, kernel, strides, pads, dilations, group):
    """The strided adjoint as one grouped ConvTranspose (the previous form)."""
    outputs = _outputs(sizes, kernel, strides, pads, dilations)
    spatial = len(kernel)
    extra = [size + pads[i] + pads[i + spatial] - d * (k - 1) - 1 - s * (o - 1)
             for i, (size, k, s, d, o) in enumerate(zip(sizes, kernel, strides, dilations, outputs))]
    return ctx.op("ConvTranspose", g, ctx.const(weights), strides=strides, pads=pads, dilations=dilations,
                  group=group, kernel_shape=kernel, output_padding=extra if any(extra) else None)


def resize_stuffed_adjoint(ctx, g, weights, *, sizes, kernel, strides, pads, dilations, group):
    """Zero-stuffing as Resize(×s, nearest) ⊙ a constant 0/1 pattern, then the stride-1 adjoint."""
    outputs = _outputs(sizes, kernel, strides, pads, dilations)
    spatial = len(kernel)
    repeated = ctx.op("Resize", g, "", ctx.const(np.array([1, 1, *strides], np.float32)), mode="nearest",
                      coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    pattern = np.zeros((1, 1, *[s * o for s, o in zip(strides, outputs)]), np.float32)
    pattern[(slice(None), slice(None), *(slice(None, None, s) for s in strides))] = 1
    stuffed = ctx.op("Mul", repeated, ctx.const(pattern, like=g))
    end = [s * o - size - pads[i] + d * (k - 1)
           for i, (size, k, s, d, o) in enumerate(zip(sizes, kernel, strides, dilations, outputs))]
    return conv._adjoint_as_conv(ctx, stuffed, weights, sizes=sizes, kernel=kernel, pads=pads[:spatial] + end,
                                 dilations=dilations, group=group)


def activation_output_as_mask(ctx, y, high):
    """The timing proxy of a fused one-pass mask: Y itself stands in for [0 < Y < high] (wrong values)."""
    return y


FORMULATIONS = {  # name → {(module, function name): replacement}
    "previous": {(activations, "_affine_clip"): conv_clip_mask, (conv, "_adjoint_zero_stuffed"): conv_transpose_adjoint},
    "masks": {(conv, "_adjoint_zero_stuffed"): conv_transpose_adjoint},
    "resize": {(conv, "_adjoint_zero_stuffed"): resize_stuffed_adjoint},
    "current": {},
    "one_pass_masks": {(activations, "_blocked_window_mask"): activation_output_as_mask},
}
EXACT = ("previous", "masks", "resize", "current")  # one_pass_masks is a timing proxy only


def session(model) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = 2, 1, 4
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def main() -> None:
    batch, rounds = int(sys.argv[1]), int(sys.argv[2])
    shape = sys.argv[3] if len(sys.argv) > 3 else "efficientnet_lite0"
    if shape == "efficientnet_lite0":
        classifier = OnnxClassifier.load(MODEL, name=shape)
    else:
        classifier = OnnxClassifier(getattr(shapes, shape)(), config=ModelConfig(max_batch=32), name=shape)
    graphs = {}
    for name, patches in FORMULATIONS.items():
        kept = {(module, attribute): getattr(module, attribute) for module, attribute in patches}
        try:
            for (module, attribute), replacement in patches.items():
                setattr(module, attribute, replacement)
            graphs[name] = classifier._build(Variant.gradient(layers=()))
        finally:
            for (module, attribute), original in kept.items():
                setattr(module, attribute, original)

    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    seeds = np.zeros((batch, classifier.num_classes), np.float32)
    seeds[:, 1] = 1
    plain = session(classifier.model)
    runs = {"plain": lambda: plain.run(None, {classifier.signature.input_name: x})}
    grads = {}
    for name, (model, built) in graphs.items():
        compiled = session(model)
        runs[name] = (lambda s=compiled, b=built:
                      s.run([b.input_grad], {classifier.signature.input_name: x, "class_weights": seeds})[0])
        grads[name] = runs[name]()
    for name in EXACT:
        grad = grads[name]
        print(f"{name}: max |Δ| from previous {np.abs(grad - grads['previous']).max():.2e} "
              f"(of max |grad| {np.abs(grads['previous']).max():.2e})")

    start = time.perf_counter()
    runs["plain"]()
    reps = max(2, int(1.0 / (time.perf_counter() - start)))
    ratios = {name: [] for name in graphs}
    for _ in range(rounds):
        seconds = {}
        for name, run in runs.items():
            run()
            start = time.perf_counter()
            for _ in range(reps):
                run()
            seconds[name] = time.perf_counter() - start
        for name in graphs:
            ratios[name].append(seconds[name] / seconds["plain"])
    print(f"{shape}, batch {batch}: gradient graph ÷ plain forward, median of {rounds} paired rounds "
          f"({reps} runs each; load average {os.getloadavg()[0]:.1f}):")
    print("  " + "  ".join(f"{name} {statistics.median(values):.2f}" for name, values in ratios.items()))


if __name__ == "__main__":
    main()
