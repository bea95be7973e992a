"""OnnxClassifier: the only module that talks to onnxruntime.

It loads and validates a model, answers what the methods ask (input size, layout, output kind,
labels), owns one cached onnxruntime session per graph variant, and runs **the** batched
evaluation loop of the project (:meth:`OnnxClassifier.run`): chunking to ``max_batch``, the short
last chunk, evaluation counting, and cancellation between chunks.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError
from numpy.typing import NDArray

from ..autodiff import CLASS_WEIGHTS, INPUT_GRAD, REFERENCE_INPUT, GradientModel, build_gradient_model
from ..context import RunContext
from ..errors import InvalidArgument, InvalidModel, NotFound
from ..graph.dynamic_batch import make_batch_dynamic
from ..graph.expose import expose_outputs
from ..graph.layers import Layer, candidate_layers, default_cam_layer
from ..graph.perturbation import SOURCE_BASELINE, SOURCE_IMAGE, MaskSource, prefixed_model
from .config import ModelConfig
from .image_input import with_image_input
from .preprocessing import DEFAULT_MAX_PIXELS, Geometry, black_image, decode_image, preprocess
from .provenance import Origin, settings_provenance, warnings
from .signature import Signature, read_signature

IMAGE = "image"
"""Key of the image batch in a feed: canonical [n, C, H, W] float32, converted by the loop."""

PLAIN = "plain"
REFERENCE_IMAGE = "reference_image"
"""Graph input of a reference-pass gradient graph: the reference x′ [1, model layout], fed once per request."""
SCORE_DELTA = "score_delta"
"""Output of a reference-pass gradient graph: score(x) − score(x′) [n, classes] of the differentiated scores."""
_NUMPY_DTYPES = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "UINT8": np.uint8}
_PROBE_SEED = 20241126

ort.set_default_logger_severity(4)  # failed probe runs are expected; errors reach users as exceptions


@dataclass(frozen=True)
class ModelInfo:
    """What a client or a method may ask about a loaded model."""

    name: str
    input_name: str
    input_datatype: str
    layout: str
    channels: int
    height: int
    width: int
    output_name: str
    output_kind: str
    num_classes: int
    labels: tuple[str, ...]
    batch_mode: str  # "dynamic" | "rewritten" | "per_sample"
    max_batch: int
    gradient_max_batch: int
    providers: tuple[str, ...]
    opset: int
    config: ModelConfig
    provenance: Mapping[str, Origin] = field(default_factory=dict, compare=False)
    """Where each setting came from, by dotted config key (see :mod:`~explainers.model.provenance`)."""
    warnings: tuple[str, ...] = ()
    """What every result of this model must carry (e.g. that its preprocessing was defaulted)."""


@dataclass(frozen=True)
class GradientChunk:
    """Samples ``[start, stop)`` through a gradient graph.

    ``scores`` [n, classes] (the model's class-score output), ``input_grad`` [n, C, H, W] in the
    canonical layout, ``layers`` maps each requested layer to (activation, gradient), both in the
    layer's own shape. ``score_delta`` [n, classes]: with a reference x′, the differentiated
    scores (the logits of a Softmax model) at x minus those at x′.
    """

    start: int
    stop: int
    scores: NDArray[np.float32]
    input_grad: NDArray[np.float32]
    layers: dict[str, tuple[NDArray[np.float32], NDArray[np.float32]]]
    score_delta: NDArray[np.float32] | None = None


@dataclass(frozen=True)
class Chunk:
    """One evaluated chunk of a :meth:`OnnxClassifier.run`: samples ``[start, stop)``."""

    start: int
    stop: int
    outputs: dict[str, NDArray]


def _prefix_inputs(image: NDArray, baseline: NDArray, per_request: Mapping[str, NDArray] | None) -> dict[str, NDArray]:
    """The per-request inputs of a perturbation prefix: image and baseline [1, C, H, W], plus extras."""
    return {SOURCE_IMAGE: image[None].astype(np.float32), SOURCE_BASELINE: baseline[None].astype(np.float32),
            **(per_request or {})}


def available_providers() -> list[str]:
    """CUDA first when onnxruntime offers it, CPU always."""
    offered = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in offered]


class OnnxClassifier:
    """A loaded, validated classifier. Thread-safe: sessions are shared, ``run`` is reentrant.

    Args:
        model: the ONNX model.
        config: labels, preprocessing and overrides; defaults detect everything.
        name: how the model is called in messages.
        providers: onnxruntime execution providers in order of preference.
        threads: intra-op threads per session (0 = onnxruntime's default).

    Raises:
        InvalidModel: the graph is invalid, is not an image classifier, or onnxruntime refuses it.
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        *,
        config: ModelConfig | None = None,
        name: str = "model",
        providers: Sequence[str] | None = None,
        threads: int = 0,
    ):
        self.config = config or ModelConfig()
        self.name = name
        self._providers = list(providers) if providers else available_providers()
        self._threads = threads
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._gradients: dict[tuple, GradientModel] = {}
        self._shapes: dict[str, tuple] | None = None
        self._simplified: onnx.ModelProto | None = None
        self._layers: list[Layer] | None = None
        self._lock = threading.Lock()
        if not model.graph.node:
            raise InvalidModel("not an ONNX model: the graph has no nodes")
        try:
            onnx.checker.check_model(model)
        except (onnx.checker.ValidationError, ValueError) as exc:
            raise InvalidModel(f"invalid ONNX graph: {str(exc).strip().splitlines()[0]}") from exc
        model, self.image_shape = with_image_input(model, self.config.image_shape, self.config.layout)
        self.signature: Signature = read_signature(model, layout=self.config.layout, output=self.config.output)
        self._dtype = _NUMPY_DTYPES[self.signature.input_datatype]
        self.channels, self.height, self.width = self._input_size()
        self.model, self.batch_mode = self._with_working_batch(model)
        self._plain = self.session(PLAIN, lambda: self.model)
        probe_outputs = self._run_plain(self._probe_batch(self.max_batch if self.max_batch < 2 else 2))
        self.num_classes = int(probe_outputs.shape[1])
        self.output_kind = self.config.output_kind or self._detect_output_kind(probe_outputs)
        labels = self.config.labels or tuple(f"class_{i}" for i in range(self.num_classes))
        if len(labels) != self.num_classes:
            raise InvalidModel(
                f"the labels list has {len(labels)} entries but the model has {self.num_classes} classes",
                field="config.labels",
            )
        self.labels = labels

    # ---------------------------------------------------------------- construction
    @classmethod
    def load(cls, source: str | Path | bytes, **kwargs) -> OnnxClassifier:
        """Load from a file path or from serialized bytes; see the class for ``kwargs``."""
        try:
            if isinstance(source, (bytes, bytearray)):
                model = onnx.load_model_from_string(bytes(source))
            else:
                model = onnx.load(str(source))
        except (DecodeError, ValueError, RuntimeError) as exc:
            raise InvalidModel(f"not an ONNX model: cannot parse the protobuf ({exc})") from exc
        except OSError as exc:
            raise InvalidModel(f"cannot read the model file: {exc}") from exc
        return cls(model, **kwargs)

    def _input_size(self) -> tuple[int, int, int]:
        shape = self.signature.input_shape
        c, h, w = (shape[1], shape[2], shape[3]) if self.signature.layout == "NCHW" else (shape[3], shape[1], shape[2])
        crop = self.config.preprocessing.center_crop
        h, w = h or crop, w or crop
        if c is None or h is None or w is None:
            raise InvalidModel(
                f"input {self.signature.input_name!r} has symbolic channels/height/width {shape}; "
                "set preprocessing.center_crop (and the layout) in the model config"
            )
        return int(c), int(h), int(w)

    def _new_session(self, model: onnx.ModelProto) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 4
        # path methods evaluate points near a zero baseline: denormal floats slow the kernels ~30%
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        try:
            return ort.InferenceSession(model.SerializeToString(), options, providers=self._providers)
        except Exception as exc:  # onnxruntime raises several unrelated types
            raise InvalidModel(f"onnxruntime cannot load it: {str(exc).strip().splitlines()[0]}") from exc

    def _with_working_batch(self, model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
        """Return a model that accepts a batch of 2 correctly, and how it was obtained."""
        declared_fixed = self.signature.input_shape[0] == 1
        attempts: list[tuple[str, Callable[[], onnx.ModelProto]]] = []
        if not declared_fixed:
            attempts.append(("dynamic", lambda: model))
        attempts.append(("rewritten", lambda: make_batch_dynamic(model)))
        attempts.append(("rewritten", lambda: make_batch_dynamic(model, fix_reshapes=True)))
        probe = self._probe_batch(2)
        for mode, build in attempts:
            candidate = build()
            try:
                session = self._new_session(candidate)
                together = self._output(session.run(None, {self.signature.input_name: probe}))
                apart = np.concatenate(
                    [self._output(session.run(None, {self.signature.input_name: probe[i : i + 1]})) for i in range(2)]
                )
            except InvalidModel:
                if mode == "dynamic":
                    raise
                continue
            except Exception:  # a batch of 2 failed to run: this rewrite does not work
                continue
            if together.shape == apart.shape and np.allclose(together, apart, rtol=1e-3, atol=1e-4):
                return candidate, mode
        self._new_session(model)  # raises InvalidModel if even batch 1 cannot load
        return model, "per_sample"

    def _probe_batch(self, n: int) -> NDArray:
        rng = np.random.default_rng(_PROBE_SEED)
        shape = (n, self.channels, self.height, self.width)
        return self._to_model_layout(rng.standard_normal(shape).astype(np.float32))

    def _output(self, outputs: list[NDArray]) -> NDArray:
        return np.asarray(outputs[self.signature.output_index])

    def _detect_output_kind(self, outputs: NDArray) -> str:
        if self.signature.output_producer in ("Softmax", "Sigmoid"):
            return "probabilities"
        rows = outputs.astype(np.float64)
        if np.all(rows >= 0) and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3):
            return "probabilities"
        return "logits"

    # ---------------------------------------------------------------- sessions
    def session(self, variant: str, build: Callable[[], onnx.ModelProto]) -> ort.InferenceSession:
        """The shared session of a graph variant, built once with ``build`` and cached."""
        with self._lock:
            session = self._sessions.get(variant)
            if session is None:
                session = self._sessions[variant] = self._new_session(build())
            return session

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(self._plain.get_providers())

    @property
    def max_batch(self) -> int:
        return 1 if self.batch_mode == "per_sample" else self.config.max_batch

    def black_image(self) -> NDArray[np.float32]:
        """The all-black image as this model sees it (its preprocessing applied): canonical [C, H, W]."""
        return black_image(self.config.preprocessing, (self.channels, self.height, self.width))

    @property
    def gradient_max_batch(self) -> int:
        """Samples per gradient-graph run: the config's ``gradient_max_batch``, else ``max_batch``."""
        if self.batch_mode == "per_sample":
            return 1
        return self.config.gradient_max_batch or self.config.max_batch

    @property
    def outputs_are_probabilities(self) -> bool:
        return self.output_kind == "probabilities"

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            input_name=self.signature.input_name,
            input_datatype=self.signature.input_datatype,
            layout=self.signature.layout,
            channels=self.channels,
            height=self.height,
            width=self.width,
            output_name=self.signature.output_name,
            output_kind=self.output_kind,
            num_classes=self.num_classes,
            labels=self.labels,
            batch_mode=self.batch_mode,
            max_batch=self.max_batch,
            gradient_max_batch=self.gradient_max_batch,
            providers=self.providers,
            opset=next((o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")), 0),
            config=self.config,
            provenance=self.provenance,
            warnings=warnings(self.provenance, size=(self.height, self.width)),
        )

    @property
    def provenance(self) -> dict[str, Origin]:
        """Where each setting came from: configured, metadata, detected or defaulted."""
        return settings_provenance(self.config, batch_mode=self.batch_mode, image_shape=self.image_shape)

    # ---------------------------------------------------------------- layers and gradients
    def tensor_shapes(self) -> dict[str, tuple]:
        """Shapes of every intermediate tensor, probed by running the model at batch 1 and 2
        (static inference loses dims in real exports); the batch dimension is ``"batch"``."""
        with self._lock:
            if self._shapes is None:
                self._shapes = self._probe_shapes()
            return self._shapes

    def _probe_shapes(self) -> dict[str, tuple]:
        probe_model = onnx.ModelProto()
        probe_model.CopyFrom(self.model)
        existing = {o.name for o in probe_model.graph.output}
        names = [o for node in probe_model.graph.node for o in node.output if o and o not in existing]
        probe_model.graph.output.extend(onnx.helper.ValueInfoProto(name=name) for name in names)
        session = self._new_session(probe_model)
        all_names = [o.name for o in session.get_outputs()]
        runs = [session.run(all_names, {self.signature.input_name: self._probe_batch(n)}) for n in ((1,) if self.batch_mode == "per_sample" else (1, 2))]
        shapes = {}
        for index, name in enumerate(all_names):
            first = np.shape(runs[0][index])
            other = np.shape(runs[-1][index])
            shapes[name] = tuple("batch" if a != b else int(a) for a, b in zip(first, other)) if len(first) == len(other) else first
        return shapes

    def layers(self) -> list[Layer]:
        """Candidate layers for CAM methods: 4-D activations with their per-sample shapes (cached)."""
        shapes = self.tensor_shapes()
        with self._lock:
            if self._layers is None:
                self._layers = candidate_layers(self.model, shapes, self.signature.input_name)
            return list(self._layers)

    @property
    def cam_layer(self) -> str | None:
        """The configured CAM layer, else the last 4-D activation before global pooling."""
        return self.config.cam_layer or default_cam_layer(self.model, self.layers())

    def check_layer(self, name: str, field: str = "params.layer") -> str:
        names = {layer.name for layer in self.layers()}
        if name not in names:
            raise NotFound("layer", name, names)
        return name

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
        with tempfile.TemporaryDirectory() as folder:
            options.optimized_model_filepath = str(Path(folder) / "simplified.onnx")
            try:
                ort.InferenceSession(self.model.SerializeToString(), options, providers=["CPUExecutionProvider"])
                simplified = onnx.load(options.optimized_model_filepath)
                onnx.checker.check_model(simplified)
            except Exception:  # an optimisation only: keep the original
                simplified = self.model
        if any(node.domain not in ("", "ai.onnx") for node in simplified.graph.node):
            simplified = self.model
        with self._lock:
            self._simplified = simplified
        return simplified

    def gradient_model(self, *, layers: Sequence[str] = (), rules: str = "vanilla",
                       cut_final_activation: bool = True, reference_pass: bool = False) -> tuple[str, GradientModel]:
        """The gradient graph for (layers, rules), built once and compiled once: (variant key, graph).

        With ``reference_pass`` the forward also runs on a reference x′ (rules read its tensors, e.g.
        DeepLIFT's): fed as :data:`REFERENCE_IMAGE` [1, ...], and :data:`SCORE_DELTA` is an output.

        Raises:
            GradientError: the model has an op without a gradient rule (named in the message).
        """
        key = (tuple(layers), rules, cut_final_activation) + (("reference",) if reference_pass else ())
        with self._lock:
            built = self._gradients.get(key)
        if built is None:
            shape = (None, self.channels, self.height, self.width) if self.signature.layout == "NCHW" else (
                None, self.height, self.width, self.channels)
            simplified = self.simplified_model()
            present = {name for node in simplified.graph.node for name in node.output}
            base = simplified if all(layer in present for layer in layers) else self.model
            built = build_gradient_model(
                base, input_name=self.signature.input_name, output_name=self.signature.output_name,
                layers=layers, rules=rules, cut_final_activation=cut_final_activation, input_shape=shape,
                shape_hints=self.tensor_shapes(), reference_pass=reference_pass,
            )
            if reference_pass:
                built = _reference_fed_once(built)
            with self._lock:
                built = self._gradients.setdefault(key, built)
        variant = f"gradient:{rules}:{int(cut_final_activation)}:{'|'.join(layers)}{':reference' if reference_pass else ''}"
        self.session(variant, lambda: built.model)
        return variant, built

    def gradients(
        self,
        count: int,
        make_batch: Callable[[int, int], tuple[NDArray[np.float32], NDArray[np.float32]]],
        *,
        context: RunContext,
        layers: Sequence[str] = (),
        rules: str = "vanilla",
        cut_final_activation: bool = True,
        max_batch: int | None = None,
        reference: NDArray[np.float32] | None = None,
    ) -> Iterator[GradientChunk]:
        """Forward + backward through the gradient graph, in the same batched loop as :meth:`run`.

        ``make_batch(start, stop)`` returns canonical images [n, C, H, W] and class weights
        [n, classes] (the seed: one-hot for one class, e_P − e_Q for a contrast), in chunks of
        ``max_batch`` (default :attr:`gradient_max_batch`). Each sample is charged one forward and
        one backward evaluation. With a ``reference`` x′ (canonical
        [C, H, W], the same for every sample: fed once) the graph has a reference pass (see
        :meth:`gradient_model`), each sample is charged a second forward (its x′ twin), and chunks
        carry ``score_delta``.
        """
        variant, graph = self.gradient_model(layers=layers, rules=rules, cut_final_activation=cut_final_activation,
                                             reference_pass=reference is not None)
        layer_names = [name for layer in layers for name in graph.layers[layer]]
        outputs = [graph.score_output, graph.input_grad, *layer_names]
        static = None
        if reference is not None:
            outputs.append(SCORE_DELTA)
            static = {REFERENCE_IMAGE: self._to_model_layout(np.asarray(reference, np.float32)[None])}

        def feed(start: int, stop: int) -> dict[str, NDArray]:
            images, weights = make_batch(start, stop)
            return {IMAGE: images, CLASS_WEIGHTS: np.ascontiguousarray(weights, dtype=np.float32)}

        for chunk in self.run(count, feed, context=context, variant=variant, outputs=outputs, backward=True,
                              max_batch=max_batch or self.gradient_max_batch, static=static,
                              forwards=1 if reference is None else 2):
            grad = chunk.outputs[INPUT_GRAD]
            if self.signature.layout == "NHWC":
                grad = grad.transpose(0, 3, 1, 2)
            yield GradientChunk(
                chunk.start, chunk.stop, chunk.outputs[graph.score_output],
                np.ascontiguousarray(grad, dtype=np.float32),
                {layer: (chunk.outputs[graph.layers[layer][0]], chunk.outputs[graph.layers[layer][1]]) for layer in layers},
                chunk.outputs.get(SCORE_DELTA),
            )

    # ---------------------------------------------------------------- perturbation prefixes
    def perturbation_variant(self, source: MaskSource) -> str:
        """Compile (once) the classifier behind the perturbation prefix ``source``; its variant key."""
        variant = f"perturbation:{source.name}"
        input_type = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(self._dtype))
        self.session(variant, lambda: prefixed_model(self.model, self.signature.input_name,
                                                     layout=self.signature.layout, input_type=input_type,
                                                     source=source))
        return variant

    def perturbed(
        self,
        count: int,
        make_masks: Callable[[int, int], Mapping[str, NDArray]],
        *,
        source: MaskSource,
        image: NDArray[np.float32],
        baseline: NDArray[np.float32],
        context: RunContext,
        per_request: Mapping[str, NDArray] | None = None,
        max_batch: int | None = None,
    ) -> Iterator[Chunk]:
        """Evaluate ``count`` perturbations of ``image`` [C, H, W] built in the graph.

        ``make_masks(start, stop)`` returns ``source``'s per-sample inputs; ``per_request`` its
        per-request ones (e.g. the superpixel map). Sample i is ``m_i ⊙ image + (1 − m_i) ⊙ baseline``.
        """
        variant = self.perturbation_variant(source)
        static = _prefix_inputs(image, baseline, per_request)
        yield from self.run(count, make_masks, context=context, variant=variant, static=static, max_batch=max_batch)

    def perturbation_gradients(
        self,
        count: int,
        make_batch: Callable[[int, int], Mapping[str, NDArray]],
        *,
        source: MaskSource,
        wrt: str,
        image: NDArray[np.float32],
        baseline: NDArray[np.float32],
        context: RunContext,
        per_request: Mapping[str, NDArray] | None = None,
        max_batch: int | None = None,
    ) -> Iterator[Chunk]:
        """Forward + backward through (perturbation prefix ∘ classifier), differentiated with respect
        to the prefix input ``wrt`` (e.g. ``low_masks``): exact mask gradients for extremal
        perturbation. ``make_batch`` returns the prefix inputs and ``class_weights`` [n, classes].
        Chunks hold the class scores and ``input_grad`` (shaped like ``wrt``).

        Raises:
            GradientError: an op of the classifier has no gradient rule.
        """
        variant = f"perturbation-gradient:{source.name}:{wrt}"
        with self._lock:
            built = self._gradients.get(("perturbation", source.name, wrt))
        if built is None:
            input_type = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(self._dtype))
            prefixed = prefixed_model(self.simplified_model(), self.signature.input_name,
                                      layout=self.signature.layout, input_type=input_type, source=source)
            built = build_gradient_model(prefixed, input_name=wrt, output_name=self.signature.output_name,
                                         shape_hints=self.tensor_shapes())
            with self._lock:
                built = self._gradients.setdefault(("perturbation", source.name, wrt), built)
        self.session(variant, lambda: built.model)
        static = _prefix_inputs(image, baseline, per_request)
        yield from self.run(count, make_batch, context=context, variant=variant, static=static, backward=True,
                            outputs=[built.score_output, built.input_grad],
                            max_batch=max_batch or self.gradient_max_batch)

    def layer_activations(
        self, images: NDArray[np.float32], layers: Sequence[str], *, context: RunContext
    ) -> dict[str, NDArray[np.float32]]:
        """Forward only, returning the activations of ``layers`` (and the class scores under the
        output's name) for canonical images [n, C, H, W]."""
        for layer in layers:
            self.check_layer(layer)
        variant = f"layers:{'|'.join(layers)}"
        self.session(variant, lambda: expose_outputs(self.model, layers))
        names = [self.signature.output_name, *layers]
        results: dict[str, list[NDArray]] = {name: [] for name in names}
        for chunk in self.run(len(images), lambda a, b: {IMAGE: images[a:b]}, context=context, variant=variant,
                              outputs=names):
            for name in names:
                results[name].append(chunk.outputs[name])
        return {name: np.concatenate(parts) for name, parts in results.items()}

    # ---------------------------------------------------------------- tensors
    def _to_model_layout(self, images: NDArray) -> NDArray:
        """Canonical [n, C, H, W] float32 → the model's layout and input dtype."""
        if self.signature.layout == "NHWC":
            images = images.transpose(0, 2, 3, 1)
        if self._dtype == np.uint8:
            images = np.clip(np.rint(images), 0, 255)
        return np.ascontiguousarray(images, dtype=self._dtype)

    def preprocess(self, photo: bytes | str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS
                   ) -> tuple[NDArray[np.float32], Geometry]:
        """A photo (encoded PNG/JPEG bytes or a file path) → (canonical tensor [C, H, W], :class:`Geometry`),
        through this model's configured preprocessing; ``Geometry.to_original`` maps heatmaps back."""
        data = Path(photo).read_bytes() if isinstance(photo, str | Path) else bytes(photo)
        decoded = decode_image(data, max_pixels=max_pixels)
        return preprocess(decoded, self.config.preprocessing, size=(self.height, self.width), channels=self.channels,
                          max_pixels=max_pixels)

    def canonical_tensor(self, tensor: NDArray, *, field: str = "image.tensor") -> NDArray[np.float32]:
        """Check a client's preprocessed tensor ([1,]·model layout) and return it as [C, H, W] float32."""
        expected = (
            (self.channels, self.height, self.width)
            if self.signature.layout == "NCHW"
            else (self.height, self.width, self.channels)
        )
        if tensor.dtype != self._dtype:
            raise InvalidArgument(
                field, f"datatype {tensor.dtype.name} does not match the model input; allowed: {np.dtype(self._dtype).name}"
            )
        shape = tensor.shape[1:] if tensor.ndim == 4 and tensor.shape[0] == 1 else tensor.shape
        if tuple(shape) != expected:
            allowed = " or ".join(str(list(s)) for s in (expected, (1, *expected)))
            raise InvalidArgument(field, f"shape {list(tensor.shape)} does not match the model input; allowed: {allowed}")
        image = np.asarray(tensor.reshape(expected), np.float32)
        if self.signature.layout == "NHWC":
            image = image.transpose(2, 0, 1)
        if not np.all(np.isfinite(image)):
            raise InvalidArgument(field, "contains NaN or infinite values")
        return np.ascontiguousarray(image)

    # ---------------------------------------------------------------- evaluation
    def _run_plain(self, batch: NDArray) -> NDArray:
        return self._output(self._plain.run(None, {self.signature.input_name: batch}))

    def run(
        self,
        count: int,
        make_batch: Callable[[int, int], Mapping[str, NDArray]],
        *,
        context: RunContext,
        variant: str = PLAIN,
        outputs: Sequence[str] | None = None,
        backward: bool = False,
        max_batch: int | None = None,
        static: Mapping[str, NDArray] | None = None,
        forwards: int = 1,
    ) -> Iterator[Chunk]:
        """The project's one batched evaluation loop.

        Evaluates ``count`` samples in chunks of at most ``max_batch`` (the short last chunk as
        is). ``make_batch(start, stop)`` builds the feed for samples ``[start, stop)``; its
        :data:`IMAGE` entry is canonical [n, C, H, W] float32 and is converted to the model's
        layout and dtype here, other entries are fed as they are. The next chunk's feed is built
        on a helper thread while onnxruntime runs the current one. Each chunk is charged to
        ``context`` (``forwards`` forward evaluations per sample, and a backward one when
        ``backward``) and cancellation is checked before it runs; a cancelled context also
        terminates the run in flight.

        ``static`` inputs are the same for every chunk (a perturbation prefix's image and
        baseline): on CUDA they are copied to the device once and bound, so each chunk moves only
        what ``make_batch`` returns; its bytes are counted in ``context.bytes_fed``.

        Yields:
            :class:`Chunk` with the requested outputs (default: the class-score output).

        Raises:
            Cancelled: the context was cancelled. ResourceExhausted: over the evaluation budget.
        """
        if count <= 0:
            return
        session = self._plain if variant == PLAIN else self._sessions[variant]
        names = list(outputs) if outputs else [self.signature.output_name]
        step = 1 if self.batch_mode == "per_sample" else max(1, max_batch or self.max_batch)
        bounds = [(start, min(start + step, count)) for start in range(0, count, step)]
        bound = self._bind_static(session, static)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="feed") as prefetcher:
            pending = prefetcher.submit(self._feed, make_batch, *bounds[0])
            for index, (start, stop) in enumerate(bounds):
                context.check()
                feed = pending.result()
                if index + 1 < len(bounds):
                    pending = prefetcher.submit(self._feed, make_batch, *bounds[index + 1])
                context.charge(forward=forwards * (stop - start), backward=(stop - start) if backward else 0)
                context.bytes_fed += sum(value.nbytes for value in feed.values())
                results = self._run_once(session, names, feed, context, bound)
                yield Chunk(start, stop, dict(zip(names, results)))

    def _bind_static(self, session: ort.InferenceSession, static: Mapping[str, NDArray] | None):
        """Static inputs as a feed (CPU: the arrays themselves) or device-resident OrtValues (CUDA)."""
        if not static:
            return None
        if session.get_providers()[0] != "CUDAExecutionProvider":
            return {name: np.ascontiguousarray(value) for name, value in static.items()}
        return {name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value), "cuda", 0)
                for name, value in static.items()}

    def _feed(self, make_batch: Callable[[int, int], Mapping[str, NDArray]], start: int, stop: int) -> dict[str, NDArray]:
        feed = dict(make_batch(start, stop))
        if IMAGE in feed:
            feed[self.signature.input_name] = self._to_model_layout(feed.pop(IMAGE))
        return feed

    @staticmethod
    def _run_once(session: ort.InferenceSession, names: list[str], feed: dict, context: RunContext,
                  bound: dict | None = None) -> list[NDArray]:
        options = ort.RunOptions()

        def terminate() -> None:
            options.terminate = True

        context.add_terminator(terminate)
        try:
            if bound and isinstance(next(iter(bound.values())), ort.OrtValue):
                binding = session.io_binding()
                for name, value in bound.items():
                    binding.bind_ortvalue_input(name, value)
                for name, value in feed.items():
                    binding.bind_cpu_input(name, value)
                for name in names:
                    binding.bind_output(name, "cpu")
                session.run_with_iobinding(binding, options)
                return binding.copy_outputs_to_cpu()
            return session.run(names, {**feed, **(bound or {})}, options)
        except Exception as exc:
            if context.cancelled:
                raise context.stopped("while a batch was running") from exc
            raise
        finally:
            context.remove_terminator(terminate)

    def predict(self, images: NDArray[np.float32], *, context: RunContext | None = None) -> NDArray[np.float32]:
        """Class scores of canonical images [n, C, H, W] → [n, classes] float32 (model's output kind)."""
        context = context or RunContext()
        scores = np.empty((len(images), self.num_classes), np.float32)
        for chunk in self.run(len(images), lambda a, b: {IMAGE: images[a:b]}, context=context):
            scores[chunk.start : chunk.stop] = chunk.outputs[self.signature.output_name]
        return scores


def _reference_fed_once(built: GradientModel) -> GradientModel:
    """Adapt a reference-pass gradient graph to one reference per request.

    The builder's ``REFERENCE_INPUT`` is shaped like the image batch; here it becomes the in-graph
    ``Expand`` of a new input :data:`REFERENCE_IMAGE` [1, ...] to the batch's shape (fed once,
    bound on the device for CUDA). Output :data:`SCORE_DELTA` = score(x) − score(x′): the reference
    twins of the forward path to the score that dead-code elimination dropped (no rule read them)
    are recomputed, named as the builder names twins so that kept ones are reused.
    """
    model = onnx.ModelProto()
    model.CopyFrom(built.model)
    graph = model.graph
    for value in graph.input:
        if value.name == REFERENCE_INPUT:
            value.name = REFERENCE_IMAGE
            value.type.tensor_type.shape.dim[0].Clear()
            value.type.tensor_type.shape.dim[0].dim_value = 1
    shape = onnx.helper.make_node("Shape", [built.input_name], ["reference/batch_shape"], name="reference/shape")
    expand = onnx.helper.make_node("Expand", [REFERENCE_IMAGE, "reference/batch_shape"], [REFERENCE_INPUT],
                                   name="reference/expand")
    produced = {name for node in graph.node for name in node.output if name}
    producers = {name: node for node in graph.node for name in node.output if name}
    needed, stack = {built.score_tensor}, [built.score_tensor]
    while stack:
        node = producers.get(stack.pop())
        for name in node.input if node is not None else ():
            if name and name not in needed:
                needed.add(name)
                stack.append(name)
    twins, copies = {built.input_name: REFERENCE_INPUT}, []
    for node in graph.node:
        if not any(name in needed for name in node.output) or not any(name in twins for name in node.input):
            continue
        outputs = [f"{name}@reference" if name in needed else "" for name in node.output]
        twins.update((name, twin) for name, twin in zip(node.output, outputs) if twin)
        if all(twin in produced for twin in outputs if twin):
            continue  # the builder kept this twin (a rule reads it)
        while outputs and not outputs[-1]:
            outputs.pop()
        copy = onnx.helper.make_node(node.op_type, [twins.get(name, name) for name in node.input], outputs,
                                     name=f"{node.name or node.output[0]}@reference_score", domain=node.domain)
        copy.attribute.extend(node.attribute)
        copies.append(copy)
    delta = onnx.helper.make_node("Sub", [built.score_tensor, twins[built.score_tensor]], [SCORE_DELTA],
                                  name="reference/score_delta")
    nodes = [shape, expand, *graph.node, *copies, delta]
    del graph.node[:]
    graph.node.extend(nodes)
    delta_info = graph.output.add()
    delta_info.CopyFrom(next(value for value in graph.output if value.name == built.score_output))
    delta_info.name = SCORE_DELTA  # shaped like the class scores
    onnx.checker.check_model(model)
    return replace(built, model=model)
