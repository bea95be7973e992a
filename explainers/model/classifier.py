"""OnnxClassifier: load a model, validate it, read its signature, and answer what it is.

Loading checks the graph, finds the image input and class-score output, repairs a fixed batch
(:mod:`.batch_repair`) and runs a probe batch to learn (and check) the output's real shape. The
loaded classifier holds the one :class:`~.session.SessionPool` of its compiled graph variants and
evaluates through **the** batched loop (:mod:`.loop`); graph questions go to its
:class:`~.introspect.Introspection`. Methods reach it only through an :class:`~.evaluator.Evaluator`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError
from numpy.typing import NDArray

from ..autodiff import GradientModel
from ..context import RunContext
from ..errors import InvalidModel, NonFiniteResult
from ..graph.layers import Layer
from .batch_repair import with_working_batch
from .config import ModelConfig
from .export_repairs import repaired_export
from .graph_cache import GraphCache, model_digest
from .image_input import with_image_input
from .introspect import Introspection
from .loop import IMAGE, Chunk, evaluate_in_chunks
from .preprocessing import (
    DEFAULT_MAX_PIXELS,
    Geometry,
    ModelInput,
    black_image,
    decode_image,
    preprocess,
    white_image,
)
from .provenance import Origin, settings_provenance, warnings
from .provider_check import check_gradient_providers
from .session import Compiled, SessionPool
from .signature import Signature, read_signature
from .variants import GRADIENT_KINDS, PLAIN_VARIANT, Variant, build_variant_cached

_NUMPY_DTYPES = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "UINT8": np.uint8}
_PROBE_SEED = 20241126
FROM_ENVIRONMENT = object()
"""``OnnxClassifier(graph_cache=...)``'s default: the cache :meth:`GraphCache.from_environment` configures."""

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


def available_providers() -> list[str]:
    """CUDA first when onnxruntime offers it, CPU always."""
    offered = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in offered]


def _dims(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


class OnnxClassifier:
    """A loaded, validated classifier. Thread-safe: sessions are shared, ``run`` is reentrant.

    Args:
        model: the ONNX model.
        config: labels, preprocessing, overrides and the session cache bound; defaults detect everything.
        name: how the model is called in messages.
        providers: onnxruntime execution providers in order of preference.
        threads: intra-op threads per session (0 = onnxruntime's default).
        graph_cache: where built gradient graphs are kept across restarts (see :mod:`.graph_cache`);
            default: the folder the environment configures (``ONNXPLAIN_GRAPH_CACHE``); None: none.

    Raises:
        InvalidModel: the graph is invalid, is not an image classifier, onnxruntime refuses it, or
            its class-score output is not [batch, classes] when it runs (whatever it declares).
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        *,
        config: ModelConfig | None = None,
        name: str = "model",
        providers: Sequence[str] | None = None,
        threads: int = 0,
        graph_cache: GraphCache | None | object = FROM_ENVIRONMENT,
    ):
        self.config = config or ModelConfig()
        self._graph_cache = GraphCache.from_environment() if graph_cache is FROM_ENVIRONMENT else graph_cache
        self._digest: str | None = None
        self._digest_lock = threading.Lock()
        self.name = name
        self._providers = list(providers) if providers else available_providers()
        self._threads = threads
        if not model.graph.node:
            raise InvalidModel("not an ONNX model: the graph has no nodes")
        try:
            onnx.checker.check_model(model)
        except (onnx.checker.ValidationError, ValueError) as exc:
            raise InvalidModel(f"invalid ONNX graph: {str(exc).strip().splitlines()[0]}") from exc
        model, self._repairs = repaired_export(model)  # old opsets, ZipMap, unread inputs
        model, self.image_shape = with_image_input(model, self.config.image_shape, self.config.layout)
        self.signature: Signature = read_signature(model, layout=self.config.layout, output=self.config.output)
        self.model_input = ModelInput(self.signature.layout, _NUMPY_DTYPES[self.signature.input_datatype],
                                      *self._input_size())
        self.channels, self.height, self.width = self.model_input.shape
        self.model, self.batch_mode, plain = with_working_batch(
            model, input_name=self.signature.input_name, declared_batch=self.signature.input_shape[0],
            probe=self._probe_batch(2), open_session=self._open_session, output=self._output)
        self.sessions = SessionPool(self._build, self._open_session, max_bytes=self.config.max_cache_bytes,
                                    pinned=[PLAIN_VARIANT])
        self.sessions.adopt(PLAIN_VARIANT, self.model, plain)
        self._plain = self.sessions.get(PLAIN_VARIANT).session
        self._read_outputs()
        self.introspection = Introspection(
            self.model, signature=self.signature, num_classes=self.num_classes, probe=self._probe_batch,
            open_session=self._open_probe_session, per_sample=self.batch_mode == "per_sample",
            cam_layer=self.config.cam_layer)

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

    def derived(self, model: onnx.ModelProto, *, name: str, same_tensors: bool = False) -> OnnxClassifier:
        """A new classifier of ``model`` (a rewrite of :attr:`model`: same input and output) with this
        one's config, providers and threads. It owns its own session pool (nothing is shared with or
        added to this classifier's), so dropping it releases everything it compiled.

        ``same_tensors``: the rewrite changed only initializer values (same nodes, same tensor
        shapes), so the new classifier reuses this one's probed tensor shapes instead of probing."""
        other = OnnxClassifier(model, config=self.config, name=name, providers=self._providers, threads=self._threads)
        if same_tensors:
            other.introspection.share_shapes(self.introspection)
        return other

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

    def _open_probe_session(self, model: onnx.ModelProto) -> ort.InferenceSession:
        """A session for the introspection's shape probe, on the CPU provider whatever the classifier's: the
        probe exposes every intermediate tensor as an output, constant-folded ones included, which
        OpenVINO's ONNX reader refuses ("…ConstantOfShape_output_0 node not found in graph cache"), and
        the shapes it reads do not depend on the provider."""
        return self._open_session(model, providers=["CPUExecutionProvider"])

    def _open_session(self, model: onnx.ModelProto, providers: list[str] | None = None) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 4
        # path methods evaluate points near a zero baseline: denormal floats slow the kernels ~30%
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        try:
            return ort.InferenceSession(model.SerializeToString(), options, providers=providers or self._providers)
        except Exception as exc:  # onnxruntime raises several unrelated types
            raise InvalidModel(f"onnxruntime cannot load it: {str(exc).strip().splitlines()[0]}") from exc

    def _build(self, variant: Variant) -> tuple[onnx.ModelProto, GradientModel | None]:
        if variant == PLAIN_VARIANT:  # needed before the introspection exists
            return self.model, None
        if variant.kind in GRADIENT_KINDS:
            check_gradient_providers(self.providers)
        return build_variant_cached(variant, self.introspection, self.model_input, cache=self._graph_cache,
                                    model_hash=self._content_digest)

    def _content_digest(self) -> str:
        """SHA-256 of the working model (the graph cache's key; computed when first needed)."""
        with self._digest_lock:
            if self._digest is None:
                self._digest = model_digest(self.model)
            return self._digest

    def _probe_batch(self, n: int) -> NDArray:
        rng = np.random.default_rng(_PROBE_SEED)
        shape = (n, self.channels, self.height, self.width)
        return self.model_input.to_model_layout(rng.standard_normal(shape).astype(np.float32))

    def _output(self, outputs: list[NDArray]) -> NDArray:
        return np.asarray(outputs[self.signature.output_index])

    def _run_plain(self, batch: NDArray) -> NDArray:
        """The class scores of a batch in the model's layout, checked to be [n, classes] as declared.

        Raises:
            InvalidModel: the output's real shape is not [n, classes], or not the declared one.
        """
        scores = self._output(self._plain.run(None, {self.signature.input_name: batch}))
        declared, n = self.signature.output_shape, len(batch)
        # the batch dimension is the probe's (a repaired fixed batch still declares 1)
        agrees = len(declared) == scores.ndim and all(d in (None, r) for d, r in zip(declared[1:], scores.shape[1:]))
        if scores.ndim != 2 or scores.shape[0] != n or not agrees:
            raise InvalidModel(
                f"output {self.signature.output_name!r} is declared {_dims(declared)} but the model produces "
                f"{_dims(scores.shape)} for a batch of {n}; allowed: [batch, classes] as declared"
            )
        return scores

    def _read_outputs(self) -> None:
        """Probe the plain model once: its number of classes, output kind and labels.

        Raises:
            InvalidModel: the scores are not [n, classes] (see :meth:`_run_plain`), or the configured
                labels are not one per class.
        """
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

    def _detect_output_kind(self, outputs: NDArray) -> str:
        if self.signature.output_producer in ("Softmax", "Sigmoid"):
            return "probabilities"
        rows = outputs.astype(np.float64)
        if np.all(rows >= 0) and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3):
            return "probabilities"
        return "logits"

    # ---------------------------------------------------------------- what it is
    def compiled(self, variant: Variant) -> Compiled:
        """The compiled graph ``variant`` from the session pool (built on first use).

        Raises:
            GradientError: a gradient variant needs an op without a gradient rule.
        """
        return self.sessions.get(variant)

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(self._plain.get_providers())

    @property
    def max_batch(self) -> int:
        return 1 if self.batch_mode == "per_sample" else self.config.max_batch

    @property
    def gradient_max_batch(self) -> int:
        """Samples per gradient-graph run: the config's ``gradient_max_batch``, else ``max_batch``."""
        if self.batch_mode == "per_sample":
            return 1
        return self.config.gradient_max_batch or self.config.max_batch

    @property
    def outputs_are_probabilities(self) -> bool:
        return self.output_kind == "probabilities"

    def black_image(self) -> NDArray[np.float32]:
        """The all-black image as this model sees it (its preprocessing applied): canonical [C, H, W]."""
        return black_image(self.config.preprocessing, self.model_input.shape)

    def white_image(self) -> NDArray[np.float32]:
        """The all-white image as this model sees it (its preprocessing applied): canonical [C, H, W]."""
        return white_image(self.config.preprocessing, self.model_input.shape)

    def layers(self) -> list[Layer]:
        """Candidate layers for CAM methods (see :meth:`Introspection.layers`)."""
        return self.introspection.layers()

    @property
    def cam_layer(self) -> str | None:
        """The configured CAM layer, else the last map larger than 1×1 a global pooling reads (None: none)."""
        return self.introspection.cam_layer

    @property
    def provenance(self) -> dict[str, Origin]:
        """Where each setting came from: configured, metadata, detected or defaulted."""
        return {**settings_provenance(self.config, batch_mode=self.batch_mode, image_shape=self.image_shape),
                **self._repairs}

    @property
    def cache_bytes(self) -> int:
        """Estimated bytes of the compiled graph variants this model holds (see :mod:`.session`)."""
        return self.sessions.stats().nbytes

    @functools.cached_property
    def info(self) -> ModelInfo:
        """What a client may ask about the model: fixed once loaded, so built once (it is read per request)."""
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

    def preprocess(self, photo: bytes | str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS
                   ) -> tuple[NDArray[np.float32], Geometry]:
        """A photo (encoded PNG/JPEG bytes or a file path) → (canonical tensor [C, H, W], :class:`Geometry`),
        through this model's configured preprocessing; ``Geometry.to_original`` maps heatmaps back."""
        data = Path(photo).read_bytes() if isinstance(photo, str | Path) else bytes(photo)
        decoded = decode_image(data, max_pixels=max_pixels)
        return preprocess(decoded, self.config.preprocessing, size=(self.height, self.width), channels=self.channels,
                          max_pixels=max_pixels)

    # ---------------------------------------------------------------- evaluation
    def run(
        self,
        count: int,
        make_batch: Callable[[int, int], Mapping[str, NDArray]],
        *,
        context: RunContext,
        variant: Variant = PLAIN_VARIANT,
        outputs: Sequence[str] | None = None,
        backward: bool = False,
        max_batch: int | None = None,
        static: Mapping[str, NDArray] | None = None,
        forwards: int = 1,
    ) -> Iterator[Chunk]:
        """Evaluate ``count`` samples through the compiled ``variant`` in the one batched loop
        (:func:`~.loop.evaluate_in_chunks`, which documents ``make_batch``, ``static``,
        ``backward`` and ``forwards``), in chunks of ``max_batch`` (default :attr:`max_batch`;
        one sample at a time for a per-sample model).

        Yields:
            :class:`Chunk` with the ``outputs`` named (default: the class-score output).

        Raises:
            Cancelled: the context was cancelled. ResourceExhausted: over the evaluation budget.
            GradientError: a gradient variant needs an op without a gradient rule.
        """
        session = self.compiled(variant).session  # held here: an eviction meanwhile cannot close it
        yield from evaluate_in_chunks(
            session, count, make_batch, model_input=self.model_input, input_name=self.signature.input_name,
            outputs=list(outputs) if outputs else [self.signature.output_name],
            batch=1 if self.batch_mode == "per_sample" else (max_batch or self.max_batch),
            context=context, backward=backward, static=static, forwards=forwards)

    def predict(self, images: NDArray[np.float32], *, context: RunContext | None = None) -> NDArray[np.float32]:
        """Class scores of canonical images [n, C, H, W] → [n, classes] float32 (model's output kind)."""
        context = context or RunContext()
        scores = np.empty((len(images), self.num_classes), np.float32)
        for chunk in self.run(len(images), lambda a, b: {IMAGE: images[a:b]}, context=context):
            scores[chunk.start : chunk.stop] = chunk.outputs[self.signature.output_name]
        if not np.all(np.isfinite(scores)) and np.all(np.isfinite(images)):
            raise NonFiniteResult(f"model {self.name!r} produced NaN or infinite scores from a finite input")
        return scores
