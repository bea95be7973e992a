"""Expose intermediate tensors as extra graph outputs (layer activations for CAM methods)."""

from __future__ import annotations

from collections.abc import Sequence

import onnx


def expose_outputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs the tensors ``names`` (type and shape left to the runtime)."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    existing = {output.name for output in result.graph.output}
    result.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names if name not in existing)
    return result
