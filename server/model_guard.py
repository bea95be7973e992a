"""What a model file may ask of the server before it is loaded: files it reads, memory it allocates.

An ONNX initializer can live in an external file named by a relative path; for a repository model
that path must stay inside the model's folder, and an uploaded model has no folder at all, so it may
not use external data (onnxruntime would resolve the path against the server's working directory
and serve that file's bytes back as weights). A few hundred bytes of graph can also ask for
gigabytes (``ConstantOfShape`` of a huge constant shape): every tensor whose size static shape
inference can tell (a symbolic batch counted as 1) must fit ``max_tensor_bytes``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx.external_data_helper import uses_external_data

from onnxplain.explainers.errors import InvalidModel
from onnxplain.explainers.graph.skeleton import skeleton


def all_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every TensorProto in ``graph`` and its subgraphs: initializers, sparse ones, node attributes."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for subgraph in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                yield from all_tensors(subgraph)


def _location(tensor: onnx.TensorProto) -> str:
    return next((e.value for e in tensor.external_data if e.key == "location"), "")


def refuse_external_data(model: onnx.ModelProto) -> None:
    """An uploaded model must carry all its weights: external data has no folder to be confined to."""
    for tensor in all_tensors(model.graph):
        if uses_external_data(tensor):
            raise InvalidModel(f"tensor {tensor.name[:80]!r} refers to external data ({_location(tensor)[:80]!r}); "
                               "an uploaded model must embed every tensor (save it without external data)")


def check_external_data_confined(model: onnx.ModelProto, model_dir: Path) -> None:
    """External-data paths of a repository model must resolve inside ``model_dir``."""
    for tensor in all_tensors(model.graph):
        if uses_external_data(tensor):
            location = _location(tensor)
            if not (model_dir / location).resolve().is_relative_to(model_dir):
                raise InvalidModel(f"external data {location[:80]!r} of {tensor.name[:80]!r} points outside the "
                                   "model directory")


def check_tensor_sizes(model: onnx.ModelProto, max_tensor_bytes: int) -> None:
    """Refuse a model with a tensor whose statically known size exceeds ``max_tensor_bytes`` (inferred on the
    model's skeleton: the same shapes, without serialising the weights — 2.2 s of a VGG11 export's load)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton(model), data_prop=True)
    except Exception:  # inference is advisory here; onnxruntime's own checks still run
        return
    graph = inferred.graph
    for info in (*graph.value_info, *graph.output):
        kind = info.type.tensor_type
        if not kind.HasField("shape") or kind.elem_type == 0:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in kind.shape.dim]
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(kind.elem_type)).itemsize
        size = math.prod(dims) * itemsize
        if size > max_tensor_bytes:
            raise InvalidModel(f"tensor {info.name[:80]!r} would take {size / 2**20:,.0f} MiB at batch 1 "
                               f"(shape {dims}); this server allows at most {max_tensor_bytes / 2**20:,.0f} MiB "
                               "per tensor (--max-tensor-bytes)")
