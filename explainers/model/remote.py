"""A classifier served elsewhere: the black box is an :class:`Endpoint`'s ``forward``, not a local graph.

The library knows nothing of the wire (the gRPC client for an Open Inference Protocol endpoint is
``onnxplain.server.remote``); it sees an :class:`Endpoint`: what the model takes and emits
(:class:`RemoteSignature`) and ``forward(batch, stop)``, one request of images in the model's own
layout and dtype → class scores [n, classes].

:class:`RemoteClassifier` is an :class:`~.classifier.OnnxClassifier` whose every compiled variant is a
:class:`RemoteSession`: a small *local* graph whose output is the batch to send (the identity for plain
predictions; the perturbation prefix of :mod:`explainers.graph.perturbation` for perturbation methods, so
masks stay small and are expanded here, exactly as they would be in front of a local model), then the
endpoint. So occlusion, RISE, LIME and extremal perturbation (by finite differences) run unchanged.
What needs the model's inside — a gradient graph, layer activations, the graph itself (CAMs, Score-CAM,
FullGrad) — is refused in one place, :meth:`RemoteClassifier.refuse`, with a
:class:`~explainers.autodiff.GradientError` (a FailedPrecondition) naming why: an OIP endpoint exposes
only its outputs.

**Batching and concurrency.** The batched loop (:mod:`.loop`) hands a session ``max_batch × max_in_flight``
rows at a time; the session splits them into requests of ``max_batch`` rows and runs them on the
classifier's one thread pool of ``max_in_flight`` workers, so at most that many requests are in flight
to the endpoint for all of this model's explanations together. **Cancellation**: the loop terminates a
run by setting ``RunOptions.terminate`` (as it does for onnxruntime); the session notices within
:data:`POLL_SECONDS`, sets the ``stop`` event every request of that run watches (an endpoint cancels
its call in flight and skips its backoff) and raises, which the loop reports as the context's
cancellation.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray

from ..autodiff import GradientError
from ..errors import InvalidModel
from ..graph.perturbation import prefixed_model
from .classifier import _NUMPY_DTYPES, ModelInfo, OnnxClassifier
from .config import ModelConfig
from .introspect import Introspection
from .loop import Chunk
from .preprocessing import ModelInput
from .provenance import CONFIGURED, Origin
from .session import SessionPool
from .signature import Signature
from .variants import PLAIN, PLAIN_VARIANT, PREFIX, Variant

POLL_SECONDS = 0.02
"""How often a waiting remote run checks whether its context terminated it."""
_CHANNEL_SIZES = (1, 3, 4)
_SENT = "remote_batch"
"""The stand-in graph's output: the batch a request sends."""


@dataclass(frozen=True)
class RemoteSignature:
    """What a served model takes and emits, as its endpoint's metadata declares it.

    ``input_shape`` [N, ...] in the model's own layout and ``output_shape`` [N, classes], ``None`` for a
    variable dimension; datatypes are OIP names (FP32, FP16, FP64, UINT8). ``where`` says which model at
    which address, for messages and provenance.
    """

    input_name: str
    input_datatype: str
    input_shape: tuple[int | None, ...]
    output_name: str
    output_shape: tuple[int | None, ...]
    where: str


class Endpoint(Protocol):
    """A served classifier. ``forward`` must be thread-safe: up to ``max_in_flight`` calls run at once."""

    signature: RemoteSignature
    max_in_flight: int

    def forward(self, batch: NDArray, stop: threading.Event) -> NDArray:
        """Class scores [n, classes] of one batch [n, ...] in the model's layout and dtype.

        Returns promptly once ``stop`` is set (raising); raises an OnnxplainError the caller can act on
        (Unavailable after retries, DeadlineExceeded, ...) when the endpoint fails.
        """
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class RemoteSession:
    """A compiled variant of a remote classifier: ``local`` builds the batch, ``endpoint`` scores it.

    Duck-types the part of ``onnxruntime.InferenceSession`` the batched loop uses (``run``,
    ``get_providers``): ``run`` returns ``[scores]`` for the class-score output.
    """

    def __init__(self, local: ort.InferenceSession, endpoint: Endpoint, *, rows: int, workers: ThreadPoolExecutor):
        self.local, self.endpoint, self.rows, self.workers = local, endpoint, rows, workers

    def get_providers(self) -> list[str]:
        return self.local.get_providers()

    def run(self, names: Sequence[str] | None, feed: dict, options: ort.RunOptions | None = None) -> list[NDArray]:
        """Scores [n, classes] of the batch ``local`` builds from ``feed``, in requests of ``rows``.

        Raises:
            RuntimeError: ``options.terminate`` was set meanwhile (the loop then raises Cancelled).
            whatever a request raised first (the others are stopped).
        """
        batch = self.local.run([_SENT], feed)[0]
        stop = threading.Event()
        requests = [self.workers.submit(self.endpoint.forward, batch[start:start + self.rows], stop)
                    for start in range(0, len(batch), self.rows)]
        try:
            _wait_unless_terminated(requests, options)
            return [np.concatenate([request.result() for request in requests])]
        finally:
            stop.set()  # a request still queued or in flight ends now (after an error or a termination)


def _wait_unless_terminated(requests: list[Future], options: ort.RunOptions | None) -> None:
    pending = set(requests)
    while pending:
        if options is not None and options.terminate:
            raise RuntimeError("the run was terminated while its requests were in flight")
        done, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_EXCEPTION)
        if any(request.exception() is not None for request in done):
            return  # result() raises it


def stand_in(signature: RemoteSignature, dtype: type) -> onnx.ModelProto:
    """The local graph in front of the endpoint: ``input_name`` → Identity → the batch to send.

    It has the remote model's input (name, dtype, shape), so a perturbation prefix attaches to it as it
    would to the model itself."""
    element = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    dims = [f"d{axis}" if d is None else d for axis, d in enumerate(signature.input_shape)]
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", [signature.input_name], [_SENT])], "remote_stand_in",
        [onnx.helper.make_tensor_value_info(signature.input_name, element, dims)],
        [onnx.helper.make_tensor_value_info(_SENT, element, dims)])
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)], ir_version=8)


def _layout(shape: tuple[int | None, ...], configured: str | None) -> str:
    """NHWC when the channel-sized dimension is last and not second, else NCHW (the config decides first)."""
    if configured:
        return configured
    return "NHWC" if shape[3] in _CHANNEL_SIZES and shape[1] not in _CHANNEL_SIZES else "NCHW"


def _signature(remote: RemoteSignature, layout: str) -> Signature:
    """The remote signature as the one a local graph would have (output index 0, producer unknown).

    Raises:
        InvalidModel: the input is not a 4-D image batch of a known datatype, or the output is not 2-D.
    """
    if remote.input_datatype not in _NUMPY_DTYPES:
        raise InvalidModel(f"{remote.where}: input {remote.input_name!r} is {remote.input_datatype}; allowed: "
                           f"{', '.join(_NUMPY_DTYPES)}")
    if len(remote.input_shape) != 4:
        raise InvalidModel(f"{remote.where}: input {remote.input_name!r} has shape {list(remote.input_shape)}; "
                           "allowed: a batch of images [N, C, H, W] or [N, H, W, C]")
    if len(remote.output_shape) != 2:
        raise InvalidModel(f"{remote.where}: output {remote.output_name!r} has shape {list(remote.output_shape)}; "
                           "allowed: class scores [N, classes]")
    return Signature(remote.input_name, remote.input_shape, remote.input_datatype, layout, remote.output_name, 0,
                     None, remote.output_shape)


class RemoteClassifier(OnnxClassifier):
    """A classifier whose model is served elsewhere (see the module docstring).

    Loading reads the endpoint's signature, checks it (a 4-D image input of a known datatype, an output
    [N, classes]) and probes it once, as a local model is probed: the scores must come back [n, classes].

    Args:
        endpoint: the served model; closed by :meth:`close`.
        config: labels, preprocessing (as for a local model); ``max_batch`` is the rows per request.
        name: how the model is called in messages.

    Raises:
        InvalidModel: the endpoint's signature or its probe answer is not an image classifier's.
        whatever the endpoint raises while probing (Unavailable, DeadlineExceeded, ...).
    """

    def __init__(self, endpoint: Endpoint, *, config: ModelConfig | None = None, name: str = "model"):
        self.config = config or ModelConfig()
        self.name = name
        self.endpoint = endpoint
        remote = endpoint.signature
        self.signature = _signature(remote, _layout(remote.input_shape, self.config.layout))
        self.image_shape = None
        self._repairs = {}  # nothing to repair: the endpoint serves the model as exported
        self._providers, self._threads = ["CPUExecutionProvider"], 1
        self.model_input = self._model_input()
        self.channels, self.height, self.width = self.model_input.shape
        self.batch_mode = "dynamic" if remote.input_shape[0] is None else "per_sample"
        if remote.input_shape[0] not in (None, 1):
            raise InvalidModel(f"{remote.where}: input {remote.input_name!r} has a fixed batch of "
                               f"{remote.input_shape[0]}; allowed: a variable batch (-1) or 1")
        self.model = stand_in(remote, self.model_input.dtype)
        self._workers = ThreadPoolExecutor(max_workers=endpoint.max_in_flight, thread_name_prefix=f"remote-{name}")
        self.sessions = SessionPool(self._build, self._open_session, max_bytes=self.config.max_cache_bytes,
                                    pinned=[PLAIN_VARIANT])
        self._plain = self.sessions.get(PLAIN_VARIANT).session
        self._read_outputs()

    def _model_input(self) -> ModelInput:
        return ModelInput(self.signature.layout, _NUMPY_DTYPES[self.signature.input_datatype], *self._input_size())

    def _open_session(self, model: onnx.ModelProto) -> RemoteSession:
        return RemoteSession(super()._open_session(model), self.endpoint, rows=self.max_batch, workers=self._workers)

    def _build(self, variant: Variant) -> tuple[onnx.ModelProto, None]:
        if variant.kind == PLAIN:
            return self.model, None
        if variant.kind == PREFIX:
            element = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(self.model_input.dtype))
            return prefixed_model(self.model, self.signature.input_name, layout=self.signature.layout,
                                  input_type=element, source=variant.source), None
        raise self.refuse("gradients" if "gradient" in variant.kind else "layer activations")

    def refuse(self, what: str) -> GradientError:
        """The one refusal of white-box work: ``what`` (gradients, layer activations, the graph) of the
        model are not available from an endpoint that exposes only its outputs."""
        return GradientError(
            f"this method needs {what} of the model, and model {self.name!r} is served elsewhere "
            f"({self.endpoint.signature.where}): an OIP endpoint exposes only its outputs; use a black-box "
            "method (occlusion, rise, lime, extremal_perturbation, cem)")

    # ---------------------------------------------------------------- what it is
    @property
    def introspection(self) -> Introspection:
        """Refused: graph questions (CAM layers, the simplified graph) need the model's graph."""
        raise self.refuse("the graph (layers, activations)")

    def layers(self) -> list:
        """None: an endpoint exposes no layers."""
        return []

    @property
    def cam_layer(self) -> str | None:
        return None

    @property
    def providers(self) -> tuple[str, ...]:
        return (f"OIP endpoint ({self.endpoint.signature.where})",)

    @property
    def info(self) -> ModelInfo:
        return replace(super().info, opset=0)  # the stand-in graph's opset is not the model's

    @property
    def provenance(self) -> dict[str, Origin]:
        """As a local model's, plus ``endpoint``: where the model is served."""
        return {**super().provenance, "endpoint": Origin(CONFIGURED, f"served over OIP: {self.endpoint.signature.where}")}

    def run(self, count, make_batch, *, max_batch: int | None = None, **kwargs) -> Iterator[Chunk]:
        """As :meth:`OnnxClassifier.run`, in loop chunks of ``max_in_flight`` requests of ``max_batch`` rows."""
        rows = max_batch or self.max_batch
        yield from super().run(count, make_batch, max_batch=rows * self.endpoint.max_in_flight, **kwargs)

    def close(self) -> None:
        """Stop the request workers and close the endpoint."""
        self._workers.shutdown(wait=False, cancel_futures=True)
        self.endpoint.close()
