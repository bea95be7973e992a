"""Exporter quirks repaired at load, each recorded where the model's settings say where they came from.

Applied to a checked model before its signature is read (see :mod:`explainers.graph.exports`):
an opset older than the one onnxplain's own graphs are built at is converted (provenance key
``opset``); skl2onnx's ``ZipMap`` output is read as the probabilities it zips (key ``zipmap``);
inputs that nothing reads are dropped (key ``inputs``); a final Sigmoid/Softmax behind ops that only
reshape is moved after them (key ``output_kind``: the output is then read as probabilities). An input with an initializer of its name is
a constant with a default: onnxruntime uses the initializer, and onnxplain feeds only the image.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray

from ..autodiff.builder import MIN_OPSET
from ..graph.exports import final_activation_last, upgraded_opset, without_unread_inputs, without_zipmap
from ..graph.index import default_opset
from .provenance import DETECTED, Origin

TARGET_OPSET = MIN_OPSET
"""Models older than this are converted: the opset the gradient builder works at (ScatterElements
with reduction), which also has every form the perturbation prefixes emit (Slice and Resize inputs)."""


def repaired_export(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, Origin]]:
    """``model`` with its exporter's quirks repaired, and the provenance of what was changed.

    A conversion the converter cannot do, or one that changes what the model computes on a random
    probe, leaves the model as it is (prediction still works) and says why in the ``opset`` origin.
    """
    notes: dict[str, Origin] = {}
    opset = default_opset(model)
    try:
        converted = upgraded_opset(model, TARGET_OPSET)
        if converted is not None and not _computes_the_same(model, converted):
            raise ValueError("the converted model computes other values on a random probe")
    except ValueError as exc:
        converted = None
        notes["opset"] = Origin(DETECTED, f"opset {opset}; onnx.version_converter could not convert it to "
                                          f"{TARGET_OPSET} ({exc}): perturbation and gradient methods may refuse it")
    if converted is not None:
        model = converted
        notes["opset"] = Origin(DETECTED, f"converted from opset {opset} to {TARGET_OPSET} with onnx.version_converter")
    unzipped = without_zipmap(model)
    if unzipped is not None:
        model = unzipped
        notes["zipmap"] = Origin(DETECTED, "the probabilities under skl2onnx's ZipMap, read as [batch, classes]")
    moved = final_activation_last(model)
    if moved is not None:
        model = moved
        notes["output_kind"] = Origin(DETECTED, "probabilities: the final activation was moved after the ops that "
                                                "only reshape its output (the values are the same)")
    pruned, unread = without_unread_inputs(model)
    if pruned is not None:
        model = pruned
        notes["inputs"] = Origin(DETECTED, f"inputs no node reads were dropped: {', '.join(unread)}")
    return model, notes


def _computes_the_same(original: onnx.ModelProto, converted: onnx.ModelProto) -> bool:
    """Whether both models give the same outputs on one random sample (symbolic dimensions → 1); True
    when the original cannot be run that way (the probe runs at load will say what is wrong)."""
    try:
        runs = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]) for m in
                (original, converted)]
        feed = {value.name: _random(value) for value in runs[0].get_inputs()}
        before, after = (session.run(None, feed) for session in runs)
    except Exception:  # onnxruntime raises several unrelated types
        return True
    return all(np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-4, atol=1e-5)
               for a, b in zip(before, after) if np.asarray(a).dtype != object)


def _random(value: ort.NodeArg) -> NDArray:
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in value.shape]
    dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
             "tensor(uint8)": np.uint8}.get(value.type, np.float32)
    return np.random.default_rng(0).uniform(0, 1, shape).astype(dtype)
