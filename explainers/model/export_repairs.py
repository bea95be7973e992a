"""Exporter quirks repaired at load, each recorded where the model's settings say where they came from.

Applied to a checked model before its signature is read (see :mod:`explainers.graph.exports`):
an opset older than the one onnxplain's own graphs are built at is converted (provenance key
``opset``); skl2onnx's ``ZipMap`` output is read as the probabilities it zips (key ``zipmap``);
inputs that nothing reads are dropped (key ``inputs``). An input with an initializer of its name is
a constant with a default: onnxruntime uses the initializer, and onnxplain feeds only the image.
"""

from __future__ import annotations

import onnx

from ..autodiff.builder import MIN_OPSET
from ..graph.exports import upgraded_opset, without_unread_inputs, without_zipmap
from ..graph.index import default_opset
from .provenance import DETECTED, Origin

TARGET_OPSET = MIN_OPSET
"""Models older than this are converted: the opset the gradient builder works at (ScatterElements
with reduction), which also has every form the perturbation prefixes emit (Slice and Resize inputs)."""


def repaired_export(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, Origin]]:
    """``model`` with its exporter's quirks repaired, and the provenance of what was changed.

    A conversion the converter cannot do leaves the model as it is (prediction still works) and
    says why in the ``opset`` origin.
    """
    notes: dict[str, Origin] = {}
    opset = default_opset(model)
    try:
        converted = upgraded_opset(model, TARGET_OPSET)
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
    pruned, unread = without_unread_inputs(model)
    if pruned is not None:
        model = pruned
        notes["inputs"] = Origin(DETECTED, f"inputs no node reads were dropped: {', '.join(unread)}")
    return model, notes
