"""What running a model tells about its graph: tensor shapes, CAM layers, its simplified form.

Static shape inference loses dimensions in real exports, so shapes are *probed*: the model runs
once with every intermediate tensor exposed. Each answer is computed on first use and kept.

The probe runs the model's skeleton (:mod:`explainers.graph.skeleton`: its large weights declared as
inputs) fed the weights as arrays: the same computation, so the same shapes, while serialising the
weights into the graph and compiling them took most of a VGG11 export's 5 s probe (now 0.8 s).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray

from ..errors import NotFound
from ..graph.layers import Layer, candidate_layers, default_cam_layer
from ..graph.skeleton import check_structure, skeleton, weight_arrays
from .signature import Signature

_UNKNOWN = object()  # the default CAM layer before it is first looked for


class Introspection:
    """The questions methods ask about a loaded model's graph.

    Args:
        model: the classifier's graph (with its working batch, see :mod:`.batch_repair`).
        signature: its input and class-score output.
        num_classes: the width of the class-score output.
        probe: ``probe(n)`` → a random batch of ``n`` images in the model's layout and dtype.
        open_session: compiles a graph into an onnxruntime session (raises InvalidModel).
        per_sample: the model runs one sample at a time (its batch dimension cannot be probed).
        cam_layer: the configured CAM layer, or None to pick one.
    """

    def __init__(self, model: onnx.ModelProto, *, signature: Signature, num_classes: int,
                 probe: Callable[[int], NDArray], open_session: Callable[[onnx.ModelProto], ort.InferenceSession],
                 per_sample: bool, cam_layer: str | None = None):
        self.model = model
        self.signature = signature
        self.num_classes = num_classes
        self._probe = probe
        self._open_session = open_session
        self._per_sample = per_sample
        self._configured_cam_layer = cam_layer
        self._lock = threading.Lock()
        self._shapes: dict[str, tuple] | None = None
        self._layers: list[Layer] | None = None
        self._default_cam_layer: str | None | object = _UNKNOWN
        self._simplified: onnx.ModelProto | None = None

    def tensor_shapes(self) -> dict[str, tuple]:
        """Shapes of every intermediate tensor, probed by running the model at batch 1 and 2
        (static inference loses dims in real exports); the batch dimension is ``"batch"``."""
        with self._lock:
            if self._shapes is None:
                self._shapes = self._probe_shapes()
            return self._shapes

    def share_shapes(self, other: Introspection) -> None:
        """Take ``other``'s tensor shapes (probing them there if needed): for a graph that differs from
        ``other``'s only in initializer values, whose every tensor has the same shape."""
        shapes = other.tensor_shapes()
        with self._lock:
            self._shapes = shapes

    def _probe_shapes(self) -> dict[str, tuple]:
        """Shapes from the skeleton fed the weights; from the model itself where that cannot run (a bfloat16
        weight, a weight left in an external file, an op that needs its weights as initializers)."""
        try:
            weights = weight_arrays(self.model)
        except Exception:  # noqa: BLE001 — e.g. external data not loaded: the full model below
            weights = None
        if weights is not None:
            try:
                return self._run_probe(skeleton(self.model), weights)
            except Exception:  # noqa: BLE001 — the full model below raises what is really wrong
                pass
        full = onnx.ModelProto()
        full.CopyFrom(self.model)
        return self._run_probe(full, {})

    def _run_probe(self, probe_model: onnx.ModelProto, weights: dict[str, NDArray]) -> dict[str, tuple]:
        """Run ``probe_model`` (a copy, modified here) at batch 1 and 2 with every tensor exposed."""
        existing = {o.name for o in probe_model.graph.output}
        names = [o for node in probe_model.graph.node for o in node.output if o and o not in existing]
        probe_model.graph.output.extend(onnx.helper.ValueInfoProto(name=name) for name in names)
        session = self._open_session(probe_model)
        all_names = [o.name for o in session.get_outputs()]
        batches = (1,) if self._per_sample else (1, 2)
        runs = [session.run(all_names, {self.signature.input_name: self._probe(n), **weights}) for n in batches]
        shapes = {}
        for index, name in enumerate(all_names):
            first = np.shape(runs[0][index])
            other = np.shape(runs[-1][index])
            shapes[name] = (tuple("batch" if a != b else int(a) for a, b in zip(first, other))
                            if len(first) == len(other) else first)
        return shapes

    def layers(self) -> list[Layer]:
        """Candidate layers for CAM methods: 4-D activations with their per-sample shapes (channels
        first) and their layout in the graph (see :mod:`explainers.graph.layers`)."""
        shapes = self.tensor_shapes()
        with self._lock:
            if self._layers is None:
                self._layers = candidate_layers(self.model, shapes, self.signature.input_name,
                                                self.signature.layout)
            return list(self._layers)

    def layer(self, name: str) -> Layer:
        """The candidate layer ``name``.

        Raises:
            NotFound: no 4-D activation has that name (the message lists those that exist).
        """
        layer = next((layer for layer in self.layers() if layer.name == name), None)
        if layer is None:
            raise NotFound("layer", name, [layer.name for layer in self.layers()])
        return layer

    @property
    def cam_layer(self) -> str | None:
        """The configured CAM layer, else the last spatial activation a global pooling reads (None
        when there is none: :func:`~explainers.graph.layers.missing_cam_layer` says why)."""
        if self._configured_cam_layer:
            return self._configured_cam_layer
        layers, shapes = self.layers(), self.tensor_shapes()
        with self._lock:
            if self._default_cam_layer is _UNKNOWN:  # a walk of the whole graph: once per model
                self._default_cam_layer = default_cam_layer(self.model, layers, shapes)
            return self._default_cam_layer

    def check_layer(self, name: str) -> str:
        """``name`` if it is a candidate layer.

        Raises:
            NotFound: no 4-D activation has that name (the message lists those that exist).
        """
        return self.layer(name).name

    def simplified_model(self) -> onnx.ModelProto:
        """The model after onnxruntime's *basic* graph optimisations, which are semantics-preserving
        and emit standard ops: constant folding, Identity/Dropout elimination, Pad and BatchNorm
        folded into Conv. Gradient graphs start from it: fewer nodes to differentiate, static
        shapes, and no backward pass through work the forward had folded away. Falls back to the
        model itself if the result uses any non-standard op."""
        with self._lock:
            if self._simplified is not None:
                return self._simplified
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.log_severity_level = 4
        options.add_session_config_entry("session.disable_prepacking", "1")  # never run: only its saved graph is read
        with tempfile.TemporaryDirectory() as folder:
            options.optimized_model_filepath = str(Path(folder) / "simplified.onnx")
            try:
                ort.InferenceSession(self.model.SerializeToString(), options, providers=["CPUExecutionProvider"])
                simplified = onnx.load(options.optimized_model_filepath)
                check_structure(simplified)
            except Exception:  # an optimisation only: keep the original
                simplified = self.model
        if any(node.domain not in ("", "ai.onnx") for node in simplified.graph.node):
            simplified = self.model
        with self._lock:
            self._simplified = simplified
        return simplified
