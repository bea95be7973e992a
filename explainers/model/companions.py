"""Companion models: the non-classifier ONNX models some methods need beside the classifier.

A contrastive method may need a **generator** G: z → x (CDeepEx searches its latent space), CEM an
**autoencoder** x → x̂ (its optional reconstruction term). Such a model belongs to the data domain, not
to one request, so it is configured once and referenced *by name* in a method's parameters:

* **Server**: a model-repository folder ``<root>/<name>/model.onnx`` whose ``config.json`` says
  ``{"kind": "companion"}`` is loaded as a :class:`CompanionModel` (not a classifier: it cannot be
  explained); requests resolve names through the repository (``ModelRepository.companion``).
* **Library**: ``explain(..., companions={"digits_decoder": CompanionModel.load(path)})``.

A method asks ``model.companion(name)`` (:meth:`.evaluator.Evaluator.companion`) and gets a
:class:`CompanionHandle` bound to its request: ``forward`` and ``vjp`` (vector-Jacobian products)
run through the project's one batched loop (:func:`~.loop.evaluate_in_chunks`), so
they are chunked, counted in the request's passes (``forward``; ``vjp`` = one forward + one
backward per sample) and stop when the request is cancelled. An unknown name is :class:`NotFound`
listing the companions there are; a known one that cannot serve is :class:`FailedPrecondition`.

A companion has one float32 input [batch, *input_shape] (declared fixed after the batch) and uses
its first output [batch, *output_shape] (probed once on load). Its VJP graph is built by :func:`~explainers.autodiff.build_gradient_model`
on the companion's own ONNX, seeded with a cotangent of the output's shape (a final Sigmoid is kept:
a generator's image range is part of the function), so
``vjp(u, v) = (f(u), vᵀ ∂f/∂u)`` for each sample.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError
from numpy.typing import NDArray

from ..autodiff import CLASS_WEIGHTS, INPUT_GRAD, GradientModel, build_gradient_model
from ..context import RunContext
from ..errors import FailedPrecondition, InvalidArgument, InvalidModel, NotFound
from .classifier import available_providers
from .loop import concatenate, evaluate_in_chunks

COMPANION_KIND = "companion"
"""The ``kind`` a repository folder's ``config.json`` declares for a companion model."""
_CONFIG_KEYS = ("kind", "description", "max_batch")


@dataclass(frozen=True, kw_only=True)
class CompanionConfig:
    """A companion's ``config.json``: ``{"kind": "companion", "description": "...", "max_batch": 64}``."""

    description: str = ""
    max_batch: int = 64

    @classmethod
    def from_dict(cls, raw: Mapping) -> CompanionConfig:
        unknown = sorted(set(raw) - set(_CONFIG_KEYS))
        if unknown:
            raise InvalidArgument("config", f"unknown key(s) {', '.join(map(repr, unknown))} for a companion model; "
                                            f"allowed: {', '.join(_CONFIG_KEYS)}")
        if raw.get("kind") != COMPANION_KIND:
            raise InvalidArgument("config.kind", f"{raw.get('kind')!r}; a companion model says \"companion\"")
        batch = raw.get("max_batch", 64)
        if not (isinstance(batch, int) and 1 <= batch <= 4096):
            raise InvalidArgument("config.max_batch", f"{batch!r}; allowed: [1, 4096]")
        return cls(description=str(raw.get("description", "")), max_batch=batch)


def is_companion_config(raw: object) -> bool:
    """Whether a parsed ``config.json`` declares a companion model."""
    return isinstance(raw, dict) and raw.get("kind") == COMPANION_KIND


def _input_shape(value: onnx.ValueInfoProto, name: str) -> tuple[int, ...]:
    """The per-sample input shape, which the graph must declare fixed after the batch."""
    dims = value.type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    if len(shape) < 2 or any(d is None for d in shape[1:]):
        raise InvalidModel(f"companion {name!r}: its input {value.name!r} is {list(shape)}; allowed: "
                           "[batch, ...] with every dimension after the batch fixed")
    return tuple(int(d) for d in shape[1:])


class CompanionModel:
    """A loaded companion: ``input_shape`` → ``output_shape`` per sample, float32. Thread-safe.

    Args:
        model: the ONNX model (one non-initializer float input; the first output is used).
        name: how it is called in messages and in method parameters.
        config: description and the samples per onnxruntime run.

    Raises:
        InvalidModel: not a valid graph, not one input, a shape that is not fixed after the batch,
            or onnxruntime refuses it.
    """

    def __init__(self, model: onnx.ModelProto, *, name: str = "companion", config: CompanionConfig | None = None,
                 providers: list[str] | None = None, threads: int = 0):
        self.name, self.config = name, config or CompanionConfig()
        self._providers, self._threads = list(providers) if providers else available_providers(), threads
        try:
            onnx.checker.check_model(model)
        except (onnx.checker.ValidationError, ValueError) as exc:
            raise InvalidModel(f"companion {name!r}: invalid ONNX graph: {str(exc).strip().splitlines()[0]}") from exc
        initializers = {t.name for t in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in initializers]
        if len(inputs) != 1 or not model.graph.output:
            raise InvalidModel(f"companion {name!r} has {len(inputs)} inputs and {len(model.graph.output)} outputs; "
                               "allowed: one input and at least one output")
        self.model = model
        self.input_name, self.output_name = inputs[0].name, model.graph.output[0].name
        self.input_shape = _input_shape(inputs[0], name)
        self._plain = self._open(model)
        self.output_shape = self._probe_output_shape()
        self._gradient: tuple[ort.InferenceSession, GradientModel] | None = None
        self._lock = threading.Lock()

    def _probe_output_shape(self) -> tuple[int, ...]:
        """The output's per-sample shape, from a run on two zero inputs (exports often leave it symbolic)."""
        try:
            probe = self._plain.run([self.output_name], {self.input_name: np.zeros((2, *self.input_shape), np.float32)})
        except Exception as exc:  # onnxruntime raises several unrelated types
            raise InvalidModel(f"companion {self.name!r} fails on a float32 batch of 2: "
                               f"{str(exc).strip().splitlines()[0]}") from exc
        output = np.asarray(probe[0])
        if output.ndim < 2 or output.shape[0] != 2 or output.dtype != np.float32:
            raise InvalidModel(f"companion {self.name!r}: output {self.output_name!r} is {output.dtype} "
                               f"{list(output.shape)} for a batch of 2; allowed: float32 [batch, ...]")
        return tuple(int(d) for d in output.shape[1:])

    @classmethod
    def load(cls, source: str | Path | bytes, **kwargs) -> CompanionModel:
        """From a file path or serialized bytes; see the class for ``kwargs``."""
        try:
            model = onnx.load_model_from_string(bytes(source)) if isinstance(source, bytes | bytearray) \
                else onnx.load(str(source))
        except (DecodeError, ValueError, RuntimeError, OSError) as exc:
            raise InvalidModel(f"cannot read the companion model: {exc}") from exc
        return cls(model, **kwargs)

    @classmethod
    def from_folder(cls, folder: Path, **kwargs) -> CompanionModel:
        """``<folder>/model.onnx`` with ``<folder>/config.json`` (which must say ``"kind": "companion"``)."""
        try:
            raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidArgument("config", f"cannot read config.json: {exc}") from exc
        if not isinstance(raw, dict):
            raise InvalidArgument("config", "config.json must hold a JSON object")
        return cls.load(folder / "model.onnx", name=folder.name, config=CompanionConfig.from_dict(raw), **kwargs)

    def _open(self, model: onnx.ModelProto) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = self._threads, 1
        options.log_severity_level = 4
        try:
            return ort.InferenceSession(model.SerializeToString(), options, providers=self._providers)
        except Exception as exc:  # onnxruntime raises several unrelated types
            raise InvalidModel(f"companion {self.name!r}: onnxruntime cannot load it: "
                               f"{str(exc).strip().splitlines()[0]}") from exc

    @property
    def plain_session(self) -> ort.InferenceSession:
        return self._plain

    def gradient_session(self) -> tuple[ort.InferenceSession, GradientModel]:
        """The VJP graph (built on first use): inputs (input, ``class_weights`` = the cotangent),
        outputs (the output, ``input_grad``).

        Raises:
            FailedPrecondition: an op of the companion has no gradient rule (named).
        """
        with self._lock:
            if self._gradient is None:
                try:
                    built = build_gradient_model(self.model, input_name=self.input_name, output_name=self.output_name,
                                                 cut_final_activation=False, input_shape=(None, *self.input_shape))
                except Exception as exc:
                    raise FailedPrecondition(f"companion {self.name!r} cannot be differentiated: {exc}") from exc
                self._gradient = (self._open(built.model), built)
            return self._gradient

    def describe(self) -> str:
        return f"{self.name} ({list(self.input_shape)} → {list(self.output_shape)})"


CompanionResolver = Callable[[str], CompanionModel]
"""Name → the companion to use; raises NotFound / FailedPrecondition (the server's repository)."""


def resolver(companions: Mapping[str, CompanionModel] | CompanionResolver | None) -> CompanionResolver:
    """A lookup for :class:`~explainers.model.Evaluator` from a mapping (the library), a function (the
    server's repository) or None (no companions configured)."""
    if callable(companions):
        return companions
    available = dict(companions or {})

    def lookup(name: str) -> CompanionModel:
        if name not in available:
            raise NotFound("companion model", name, available)
        return available[name]

    return lookup


class CompanionHandle:
    """A companion bound to one request's :class:`RunContext`: what a method may run on it."""

    def __init__(self, companion: CompanionModel, context: RunContext):
        self.companion, self.context = companion, context

    @property
    def name(self) -> str:
        return self.companion.name

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.companion.input_shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.companion.output_shape

    def _checked(self, values: NDArray, shape: tuple[int, ...], what: str) -> NDArray[np.float32]:
        values = np.ascontiguousarray(values, dtype=np.float32)
        if values.shape[1:] != shape:
            raise InvalidArgument(what, f"shape {list(values.shape)} for companion {self.name!r}; allowed: "
                                        f"[n, {', '.join(map(str, shape))}]")
        return values

    def forward(self, inputs: NDArray[np.floating]) -> NDArray[np.float32]:
        """f(u) for ``inputs`` [n, *input_shape] → [n, *output_shape]; n forward passes charged."""
        inputs = self._checked(inputs, self.input_shape, "companion input")
        chunks = evaluate_in_chunks(
            self.companion.plain_session, len(inputs), lambda a, b: {self.companion.input_name: inputs[a:b]},
            model_input=None, input_name=self.companion.input_name, outputs=[self.companion.output_name],
            batch=self.companion.config.max_batch, context=self.context)
        return concatenate(list(chunks))[self.companion.output_name]

    def vjp(self, inputs: NDArray[np.floating], cotangents: NDArray[np.floating]
            ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """(f(u), vᵀ ∂f/∂u) per sample for ``inputs`` u [n, *input_shape] and ``cotangents`` v
        [n, *output_shape]; n forward and n backward passes charged."""
        inputs = self._checked(inputs, self.input_shape, "companion input")
        cotangents = self._checked(cotangents, self.output_shape, "companion cotangent")
        if len(cotangents) != len(inputs):
            raise InvalidArgument("companion cotangent", f"{len(cotangents)} rows for {len(inputs)} inputs")
        session, gradient = self.companion.gradient_session()
        chunks = evaluate_in_chunks(
            session, len(inputs),
            lambda a, b: {self.companion.input_name: inputs[a:b], CLASS_WEIGHTS: cotangents[a:b]},
            model_input=None, input_name=self.companion.input_name, outputs=[gradient.score_output, INPUT_GRAD],
            batch=self.companion.config.max_batch, context=self.context, backward=True)
        outputs = concatenate(list(chunks))
        return outputs[gradient.score_output], outputs[INPUT_GRAD]
