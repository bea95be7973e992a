"""The Python client: typed calls, numpy in and out, an iterator of explanation events.

Needs only grpcio, protobuf and numpy (never onnxruntime)::

    with Client("localhost:50051") as client:
        for event in client.explain_stream("efficientnet_lite0", Path("cat.jpg"), "occlusion"):
            ...
        result = client.explain("efficientnet_lite0", Path("cat.jpg"), "occlusion", overlay=True)
        result.heatmaps          # float32 [targets, H, W], model-input pixels
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from numpy.typing import NDArray

from onnxplain.v1 import explanation_service_pb2 as ex_pb2
from onnxplain.v1 import explanation_service_pb2_grpc as ex_grpc
from onnxplain.v1 import model_service_pb2 as model_pb2
from onnxplain.v1 import model_service_pb2_grpc as model_grpc
from onnxplain.v1 import tensor_pb2
from onnxplain.v1.wire import enum_short_names, from_tensor, to_tensor

DEFAULT_ADDRESS = "localhost:50051"
DEFAULT_TIMEOUT = 600.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
RETRY_POLICY = {  # gRPC service config (gRFC A6): retried before any response arrives, with jittered backoff
    "maxAttempts": 5,
    "initialBackoff": "0.2s",
    "maxBackoff": "5s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
}
"""A busy server (RESOURCE_EXHAUSTED: queue full) or a draining or restarting one (UNAVAILABLE) is
tried again; the server marks a RESOURCE_EXHAUSTED that a retry cannot cure (a limit the request
itself exceeds) with ``grpc-retry-pushback-ms: -1``, which stops the retries."""


def channel_options(*, retries: bool = True) -> list[tuple[str, Any]]:
    """Channel options every onnxplain client uses: message limits and (by default) the retry policy."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.enable_retries", int(retries)),
    ]
    if retries:
        services = [{"service": "onnxplain.v1.ExplanationService"}, {"service": "onnxplain.v1.ModelService"}]
        config = {"methodConfig": [{"name": services, "retryPolicy": RETRY_POLICY}]}
        options.append(("grpc.service_config", json.dumps(config)))
    return options
ImageLike = bytes | str | Path | NDArray


@dataclass(frozen=True)
class Accepted:
    model: str
    method: str
    seed: int
    planned_evaluations: int
    targets: list[tuple[int, str]]
    parameters: dict[str, str]
    warnings: tuple[str, ...] = ()
    """Why the explanation may mislead (e.g. the model's preprocessing was defaulted)."""


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    partial_heatmaps: NDArray[np.floating] | None = None


@dataclass(frozen=True)
class TargetResult:
    class_index: int
    label: str
    score: float
    contrast_class: int | None
    overlay_png: bytes | None
    contrast_loss: str | None = None  # "difference" or "cross_entropy" with a contrast class


@dataclass(frozen=True)
class Result:
    """``heatmaps`` [targets, H, W] in model-input pixels; ``original_heatmaps`` [targets, H0, W0]
    on the original image's grid (NaN where the model never looked) when requested; ``tensors``:
    method-specific arrays by name (e.g. cem's ``pertinent_negative`` images [targets, C, H, W])."""

    heatmaps: NDArray
    original_heatmaps: NDArray | None
    targets: list[TargetResult]
    forward_evaluations: int
    backward_evaluations: int
    extras: dict[str, float] = field(default_factory=dict)
    elapsed_seconds: float = 0.0
    accepted: Accepted | None = None
    warnings: tuple[str, ...] = ()
    tensors: dict[str, NDArray] = field(default_factory=dict)


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    score: float
    probability: float


@dataclass(frozen=True)
class Predictions:
    """The top classes, best first, and why they may be wrong (e.g. the model's preprocessing was defaulted)."""

    classes: list[Prediction]
    warnings: tuple[str, ...] = ()


def image_input(image: ImageLike) -> tensor_pb2.ImageInput:
    """Encoded bytes, a path to an image file, or a preprocessed numpy tensor → ImageInput."""
    if isinstance(image, (bytes, bytearray)):
        return tensor_pb2.ImageInput(encoded=bytes(image))
    if isinstance(image, (str, Path)):
        return tensor_pb2.ImageInput(encoded=Path(image).read_bytes())
    return tensor_pb2.ImageInput(tensor=to_tensor(np.asarray(image)))


def fill_params(message: Message, values: Mapping[str, Any]) -> None:
    """Set a typed params message from plain values; strings are parsed by the field's type and
    enum fields take the value's short name ("blur" for BASELINE_BLUR)."""
    fields = message.DESCRIPTOR.fields_by_name
    for name, value in values.items():
        if name not in fields:
            raise ValueError(f"{message.DESCRIPTOR.name} has no parameter {name!r}; known: {', '.join(fields)}")
        descriptor = fields[name]
        if descriptor.is_repeated:  # a list, or "0.05,0.1" from the CLI
            items = value.split(",") if isinstance(value, str) else value
            getattr(message, name).extend(float(item) for item in items)
            continue
        if descriptor.enum_type is not None:
            choices = enum_short_names(descriptor.enum_type)
            if str(value).lower() not in choices:
                raise ValueError(f"{name}: {value!r}; allowed: {', '.join(choices)}")
            value = choices[str(value).lower()]
        elif descriptor.type == FieldDescriptor.TYPE_BOOL and isinstance(value, str):
            value = value.lower() in ("1", "true", "yes", "on")
        elif descriptor.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
            value = float(value)
        elif descriptor.type != FieldDescriptor.TYPE_STRING:
            value = int(value)
        setattr(message, name, value)


class Client:
    """A connection to an onnxplain server. Every call has a deadline (``timeout`` seconds); busy or
    unavailable servers are retried with backoff (:data:`RETRY_POLICY`) unless ``retries=False``.
    :class:`onnxplain.client.aio.AsyncClient` is the same API for asyncio."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        root_certificates: bytes | None = None,
        client_certificate: tuple[bytes, bytes] | None = None,
        secure: bool = False,
        retries: bool = True,
    ):
        options = channel_options(retries=retries)
        if secure or root_certificates or client_certificate:
            key, chain = client_certificate or (None, None)
            credentials = grpc.ssl_channel_credentials(root_certificates, key, chain)
            self._channel = grpc.secure_channel(address, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self.timeout = timeout
        self._metadata = [("authorization", f"Bearer {token}")] if token else []
        self.models = model_grpc.ModelServiceStub(self._channel)
        self.explanations = ex_grpc.ExplanationServiceStub(self._channel)

    @property
    def channel(self) -> grpc.Channel:
        """The underlying channel (for other services on the same server, e.g. health)."""
        return self._channel

    @property
    def metadata(self) -> list[tuple[str, str]]:
        """The call metadata every request carries (the bearer token, when set)."""
        return list(self._metadata)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, rpc, request, timeout: float | None = None):
        return rpc(request, timeout=timeout or self.timeout, metadata=self._metadata)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the channel connects (raises grpc.FutureTimeoutError otherwise)."""
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    # ----------------------------------------------------------------- models
    def list_models(self) -> list[model_pb2.ModelInfo]:
        return list(self._call(self.models.ListModels, model_pb2.ListModelsRequest()).models)

    def get_model(self, name: str) -> model_pb2.ModelInfo:
        return self._call(self.models.GetModel, model_pb2.GetModelRequest(name=name)).model

    def load_model(self, name: str, onnx_model: bytes = b"", config_json: str = "") -> model_pb2.ModelInfo:
        request = model_pb2.LoadModelRequest(name=name, onnx_model=onnx_model, config_json=config_json)
        return self._call(self.models.LoadModel, request).model

    def unload_model(self, name: str) -> None:
        self._call(self.models.UnloadModel, model_pb2.UnloadModelRequest(name=name))

    def first_ready_model(self) -> str:
        """The name of the server's first READY model (ValueError when it has none)."""
        ready = [m.name for m in self.list_models() if m.state == model_pb2.MODEL_STATE_READY]
        if not ready:
            raise ValueError("the server has no ready model; name one")
        return ready[0]

    def predict(self, model: str, image: ImageLike, top_k: int = 5) -> list[Prediction]:
        return self.predictions(model, image, top_k).classes

    def predictions(self, model: str, image: ImageLike, top_k: int = 5) -> Predictions:
        """:meth:`predict` with the response's warnings."""
        request = model_pb2.PredictRequest(model=model, image=image_input(image), top_k=top_k)
        return parse_predictions(self._call(self.models.Predict, request))

    # ----------------------------------------------------------------- explanations
    def list_methods(self) -> list[ex_pb2.MethodInfo]:
        return list(self._call(self.explanations.ListMethods, ex_pb2.ListMethodsRequest()).methods)

    @staticmethod
    def explain_request(
        model: str,
        image: ImageLike,
        method: str,
        *,
        classes: Sequence[int] | None = None,
        top_k: int | None = None,
        contrast: int | None = None,
        contrast_loss: str | None = None,
        class_weights: NDArray | None = None,
        probability: bool = False,
        params: Mapping[str, Any] | None = None,
        seed: int | None = None,
        overlay: bool = False,
        original_grid: bool = False,
        heatmap_datatype: str = "FP32",
        partial_interval_ms: int = 0,
        request_id: str | None = None,
    ) -> ex_pb2.ExplainRequest:
        """Build an ExplainRequest; see :meth:`explain_stream` for the arguments."""
        request = ex_pb2.ExplainRequest(
            request_id=request_id or uuid.uuid4().hex, model=model, method=method, image=image_input(image)
        )
        target = request.target
        target.class_indices.extend(classes or [])
        target.top_k = top_k or 0
        if contrast is not None:
            target.contrast_class = contrast
        if contrast_loss is not None:
            if contrast_loss not in CONTRAST_LOSSES:
                raise ValueError(f"contrast_loss {contrast_loss!r} is not allowed; choices: {', '.join(CONTRAST_LOSSES)}")
            target.contrast_loss = ex_pb2.ContrastLoss.Value(f"CONTRAST_LOSS_{contrast_loss.upper()}")
        if class_weights is not None:
            target.class_weights.CopyFrom(to_tensor(np.asarray(class_weights, np.float32)))
        if probability:
            target.score_space = ex_pb2.SCORE_SPACE_PROBABILITY
        if seed is not None:
            request.seed = seed
        request.output.heatmap_datatype = ex_pb2.HeatmapDatatype.Value(f"HEATMAP_DATATYPE_{heatmap_datatype}")
        request.output.overlay_png = overlay
        request.output.original_grid = original_grid
        request.output.partial_interval_ms = partial_interval_ms
        if params:
            oneof = ex_pb2.ExplainRequest.DESCRIPTOR.oneofs_by_name["params"]
            if method not in {f.name for f in oneof.fields}:
                raise ValueError(f"method {method!r} takes no parameters")
            fill_params(getattr(request, method), params)
        return request

    def explain_stream(self, model: str, image: ImageLike, method: str, *, timeout: float | None = None,
                       **options: Any) -> Iterator[Accepted | Progress | Result]:
        """Stream the events of one explanation: :class:`Accepted`, :class:`Progress`…, :class:`Result`.

        Options: ``classes`` (list of class indices) or ``top_k`` or ``class_weights`` [T, classes];
        ``contrast`` (explain "P rather than Q"); ``contrast_loss`` ("difference", the default: s_P − s_Q,
        or "cross_entropy": the softmax cross-entropy towards Q, Prabhushankar et al. 2020); ``probability`` (explain softmax scores);
        ``params`` (the method's parameters by name); ``seed``; ``overlay`` (PNG overlays);
        ``original_grid`` (heatmaps on the original image); ``heatmap_datatype`` (FP32/FP16/UINT8);
        ``partial_interval_ms`` (partial heatmaps at most this often); ``request_id``.
        Breaking out of the iterator cancels the RPC, and the server stops the work.
        """
        request = self.explain_request(model, image, method, **options)
        yield from read_stream(self._call(self.explanations.Explain, request, timeout), parse_event, Accepted)

    def explain(self, model: str, image: ImageLike, method: str, **options: Any) -> Result:
        """Run an explanation to completion and return its :class:`Result`."""
        for event in self.explain_stream(model, image, method, **options):
            if isinstance(event, Result):
                return event
        raise RuntimeError("the server closed the stream without a result")

    def report(self, images: Sequence[ImageLike], methods: Sequence[str], path: str | Path, **options: Any):
        """Evaluate each method on each image and write one self-contained HTML report to ``path`` (the
        photo, each method's overlay per target, its cost and metric scores, curves, a sortable table);
        returns the computed ``Report``. Options: see :func:`onnxplain.client.report.write_report`."""
        from .report import write_report

        return write_report(self, images, methods, path, **options)

    # ----------------------------------------------------------------- evaluation
    # (.evaluation imports this module's events: imported where used)
    def list_metrics(self) -> list[ex_pb2.MetricInfo]:
        """The metrics Evaluate computes, with their parameters (types, defaults, bounds)."""
        return list(self._call(self.explanations.ListMetrics, ex_pb2.ListMetricsRequest()).metrics)

    def not_per_request_metrics(self) -> dict[str, str]:
        """Metrics the server does not compute per request (e.g. ROAR): {name: why}."""
        response = self._call(self.explanations.ListMetrics, ex_pb2.ListMetricsRequest())
        return {m.name: m.reason for m in response.not_per_request}

    def metric_kinds(self) -> dict[str, dict[str, str]]:
        """{metric: {parameter: type}} as ListMetrics declares them (to read command-line strings)."""
        from .evaluation import parameter_kinds

        return parameter_kinds(self.list_metrics())

    @staticmethod
    def evaluate_request(model: str, image: ImageLike, method: str, metrics: Any = ("deletion",), *,
                         kinds: Mapping[str, Mapping[str, str]] | None = None, request_id: str | None = None,
                         **options: Any) -> ex_pb2.EvaluateRequest:
        """Build an EvaluateRequest: the explanation as :meth:`explain_request` takes it, and ``metrics``
        (names, or {name: {parameter: value}}; string values are read by ``kinds``, {metric: {parameter:
        type}} from :meth:`metric_kinds`)."""
        from .evaluation import metric_requests

        request_id = request_id or uuid.uuid4().hex
        explanation = Client.explain_request(model, image, method, request_id=request_id, **options)
        return ex_pb2.EvaluateRequest(request_id=request_id, explanation=explanation,
                                      metrics=metric_requests(metrics, kinds))

    def evaluate_stream(self, model: str, image: ImageLike, method: str, metrics: Any = ("deletion",), *,
                        timeout: float | None = None, **options: Any) -> Iterator[Any]:
        """Stream the events of one evaluation: ``EvaluationAccepted``, :class:`Progress`…, the explanation
        (:class:`Result`), one ``MetricScore`` per metric in order, ``EvaluationDone``
        (:mod:`onnxplain.client.evaluation`). Options as :meth:`explain_stream`. Breaking out of the
        iterator cancels the RPC, and the server stops the work."""
        from .evaluation import EvaluationAccepted, has_text_values, parse_evaluate_event

        kinds = self.metric_kinds() if has_text_values(metrics) else None
        request = self.evaluate_request(model, image, method, metrics, kinds=kinds, **options)
        yield from read_stream(self._call(self.explanations.Evaluate, request, timeout), parse_evaluate_event,
                               EvaluationAccepted)

    def evaluate(self, model: str, image: ImageLike, method: str, metrics: Any = ("deletion",), **options: Any):
        """Run an evaluation to completion: an ``Evaluation`` (the explanation, and each metric's score by name)."""
        from .evaluation import collect

        return collect(self.evaluate_stream(model, image, method, metrics, **options))


def read_stream(call: Any, parse: Any, first: type) -> Iterator[Any]:
    """The events of a streaming ``call``: ``parse(response, the stream's first event)`` each; leaving early
    (or an error) cancels the RPC."""
    accepted = None
    try:
        for response in call:
            event = parse(response, accepted)
            accepted = event if isinstance(event, first) else accepted
            yield event
    finally:
        call.cancel()


def parse_event(response: ex_pb2.ExplainResponse, accepted: Accepted | None) -> Accepted | Progress | Result:
    """One streamed ExplainResponse → its event (``accepted``: the stream's Accepted, for the Result)."""
    kind = response.WhichOneof("event")
    if kind == "accepted":
        a = response.accepted
        return Accepted(a.model, a.method, a.seed, a.planned_evaluations,
                        [(t.class_index, t.label) for t in a.targets], dict(a.parameters), tuple(a.warnings))
    if kind == "progress":
        p = response.progress
        return Progress(p.done, p.total, from_tensor(p.partial_heatmaps) if p.HasField("partial_heatmaps") else None)
    return _result(response.result, accepted)


def parse_predictions(response: model_pb2.PredictResponse) -> Predictions:
    """The ranked classes of a PredictResponse, with the server's warnings (e.g. defaulted preprocessing)."""
    classes = [Prediction(c.index, c.label, c.score, c.probability) for c in response.classes]
    return Predictions(classes, tuple(response.warnings))


CONTRAST_LOSSES = ("difference", "cross_entropy")


def _contrast_loss(value: int) -> str | None:
    """The wire enum → "difference" / "cross_entropy", or None when unset (no contrast)."""
    if value == ex_pb2.CONTRAST_LOSS_UNSPECIFIED:
        return None
    return ex_pb2.ContrastLoss.Name(value).removeprefix("CONTRAST_LOSS_").lower()


def _result(r: ex_pb2.Result, accepted: Accepted | None) -> Result:
    targets = [
        TargetResult(
            t.target.class_index, t.target.label, t.score,
            t.target.contrast_class if t.target.HasField("contrast_class") else None,
            t.overlay_png or None,
            _contrast_loss(t.target.contrast_loss),
        )
        for t in r.targets
    ]
    return Result(
        heatmaps=from_tensor(r.heatmaps),
        original_heatmaps=from_tensor(r.original_heatmaps) if r.HasField("original_heatmaps") else None,
        targets=targets,
        forward_evaluations=r.forward_evaluations,
        backward_evaluations=r.backward_evaluations,
        extras=dict(r.extras),
        elapsed_seconds=r.elapsed_seconds,
        accepted=accepted,
        warnings=tuple(r.warnings),
        tensors={name: from_tensor(value, field=f"result.tensors[{name}]") for name, value in r.tensors.items()},
    )
