"""A model served by an Open Inference Protocol v2 endpoint (KServe, Triton, MLServer, another onnxplain) as the
black box of a repository entry: ``<root>/<name>/remote.json`` instead of ``model.onnx``.

``remote.json`` (paths relative to the model folder and confined to it, like everything the repository reads)::

    {
      "address": "inference.example:8001",   # host:port of the endpoint's gRPC listener (required)
      "model": "resnet",                     # the model's name there (required)
      "version": "",                         # "" = the endpoint's choice
      "input": null, "output": null,         # tensor names; null = the model's only input / output
      "tls": {"ca": "ca.pem", "cert": "client.pem", "key": "client.key"},   # optional: TLS; {} = system roots
      "token_file": "token",                 # optional: sent as "authorization: Bearer <token>"
      "max_in_flight": 4,                    # concurrent ModelInfer requests to the endpoint, for all requests
      "timeout_seconds": 60,                 # deadline of one ModelInfer (and of the metadata calls)
      "retries": 4                           # further attempts on UNAVAILABLE / RESOURCE_EXHAUSTED
    }

The folder's ``config.json`` (labels, preprocessing, ``max_batch`` = rows per request) and ``labels.txt`` /
``preprocessor_config.json`` are read as for a local model. :class:`OipEndpoint` is the
:class:`~onnxplain.explainers.model.remote.Endpoint` the library's
:class:`~onnxplain.explainers.model.remote.RemoteClassifier` scores with: it reads ``ModelMetadata`` at load,
sends each batch as one ``ModelInfer`` with ``raw_input_contents`` and retries UNAVAILABLE and
RESOURCE_EXHAUSTED with jittered exponential backoff (:data:`FIRST_BACKOFF` doubling up to
:data:`MAX_BACKOFF`), stopping at once — the call in flight cancelled, the backoff cut short — when the run
is stopped.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from numpy.typing import NDArray

from onnxplain.explainers.errors import (
    Cancelled,
    FailedPrecondition,
    InvalidArgument,
    InvalidModel,
    ResourceExhausted,
    Unavailable,
)
from onnxplain.explainers.model.remote import POLL_SECONDS, RemoteSignature
from onnxplain.oip import grpc_service_pb2 as oip_pb2
from onnxplain.oip import grpc_service_pb2_grpc as oip_grpc
from onnxplain.v1 import tensor_pb2
from onnxplain.v1.wire import DATATYPES, from_tensor

REMOTE_FILE = "remote.json"
MAX_MESSAGE_BYTES = 256 * 2**20
FIRST_BACKOFF = 0.1
"""Seconds before the first retry (then doubled each attempt, jittered to 50–100%)."""
MAX_BACKOFF = 2.0
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
_KEYS = {"address", "model", "version", "input", "output", "tls", "token_file", "max_in_flight", "timeout_seconds",
         "retries"}
_TLS_KEYS = {"ca", "cert", "key"}


def _field(raw: dict, key: str, kind: type | tuple[type, ...], default: Any, allowed: str) -> Any:
    """``raw[key]`` checked to be a ``kind`` (``default`` when absent or null)."""
    value = raw.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidArgument(f"remote.{key}", f"{value!r}; allowed: {allowed}")
    return value


@dataclass(frozen=True)
class RemoteSpec:
    """A parsed ``remote.json``: where the model is served and how to call it (see the module docstring)."""

    address: str
    model: str
    version: str = ""
    input: str | None = None
    output: str | None = None
    tls: bool = False
    """Connect with TLS: ``ca`` (else the system's roots) checks the server; ``cert`` + ``key`` identify us."""
    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    token: str | None = None
    max_in_flight: int = 4
    timeout_seconds: float = 60.0
    retries: int = 4

    @classmethod
    def from_dict(cls, raw: Any, read: Callable[[str, str], bytes]) -> RemoteSpec:
        """Check ``raw`` field by field; ``read(field, relative path)`` reads a file of the model folder.

        Raises:
            InvalidArgument: a key is unknown or a value is missing or out of range (``remote.<key>``).
        """
        if not isinstance(raw, dict):
            raise InvalidArgument("remote", "must be a JSON object")
        unknown = sorted(set(raw) - _KEYS)
        if unknown:
            raise InvalidArgument("remote", f"unknown keys {', '.join(unknown)}; allowed: {', '.join(sorted(_KEYS))}")
        address = _field(raw, "address", str, "", "host:port")
        if not address.rpartition(":")[2].isdigit():
            raise InvalidArgument("remote.address", f"{address!r}; allowed: host:port")
        model = _field(raw, "model", str, "", "the model's name at the endpoint")
        if not model:
            raise InvalidArgument("remote.model", "missing; allowed: the model's name at the endpoint")
        tls = _field(raw, "tls", dict, None, 'an object {"ca", "cert", "key"} of file names')
        if tls is not None and set(tls) - _TLS_KEYS:
            raise InvalidArgument("remote.tls", f"unknown keys {', '.join(sorted(set(tls) - _TLS_KEYS))}; allowed: "
                                                "ca, cert, key")
        files = {key: read(f"remote.tls.{key}", tls[key]) for key in _TLS_KEYS if tls and tls.get(key)}
        if ("cert" in files) != ("key" in files):
            raise InvalidArgument("remote.tls", "cert and key go together (a client certificate and its key)")
        token_file = _field(raw, "token_file", str, None, "a file name in the model folder")
        token = read("remote.token_file", token_file).decode("utf-8").strip() if token_file else None
        in_flight = _field(raw, "max_in_flight", int, 4, "an integer in [1, 64]")
        timeout = _field(raw, "timeout_seconds", (int, float), 60.0, "seconds in (0, 3600]")
        retries = _field(raw, "retries", int, 4, "an integer in [0, 10]")
        if not 1 <= in_flight <= 64:
            raise InvalidArgument("remote.max_in_flight", f"{in_flight}; allowed: [1, 64]")
        if not 0 < timeout <= 3600:
            raise InvalidArgument("remote.timeout_seconds", f"{timeout}; allowed: (0, 3600]")
        if not 0 <= retries <= 10:
            raise InvalidArgument("remote.retries", f"{retries}; allowed: [0, 10]")
        return cls(address, model, _field(raw, "version", str, "", "a version string"),
                   _field(raw, "input", str, None, "a tensor name"), _field(raw, "output", str, None, "a tensor name"),
                   tls is not None, files.get("ca"), files.get("cert"), files.get("key"), token, in_flight,
                   float(timeout), retries)

    @classmethod
    def from_folder(cls, folder: Path, confine: Callable[[Path], Path]) -> RemoteSpec:
        """Read ``folder/remote.json``; ``confine`` resolves a path and refuses one outside the repository."""

        def read(field: str, name: str) -> bytes:
            path = confine(folder / name)
            if not path.is_relative_to(confine(folder)):
                raise InvalidArgument(field, f"{name!r} is outside the model folder; allowed: a file in it")
            try:
                return path.read_bytes()
            except OSError as exc:
                raise InvalidArgument(field, f"cannot read {name!r}: {exc.strerror}") from exc

        try:
            raw = json.loads(read("remote", REMOTE_FILE))
        except json.JSONDecodeError as exc:
            raise InvalidArgument("remote", f"{REMOTE_FILE} is not valid JSON: {exc}") from exc
        return cls.from_dict(raw, read)

    @property
    def where(self) -> str:
        version = f" version {self.version!r}" if self.version else ""
        return f"model {self.model!r}{version} at {self.address}"


def _pick(tensors, wanted: str | None, what: str, where: str):
    names = [t.name for t in tensors]
    if wanted is not None:
        found = [t for t in tensors if t.name == wanted]
        if not found:
            raise InvalidModel(f"{where} has no {what} {wanted!r}; it has {', '.join(names) or 'none'}",
                               field=f"remote.{what}")
        return found[0]
    if len(tensors) != 1:
        raise InvalidModel(f"{where} has {len(tensors)} {what}s ({', '.join(names) or 'none'}); name the one to "
                           f"use as remote.{what}", field=f"remote.{what}")
    return tensors[0]


def _dims(shape) -> tuple[int | None, ...]:
    return tuple(None if d < 0 else int(d) for d in shape)


class OipEndpoint:
    """The gRPC client of one served model (see the module docstring). Thread-safe.

    Raises (at construction): InvalidModel when the metadata has no usable input/output; Unavailable,
    FailedPrecondition as :meth:`forward` does when the endpoint cannot be reached or refuses.
    """

    def __init__(self, spec: RemoteSpec):
        self.spec = spec
        self.max_in_flight = spec.max_in_flight
        options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), ("grpc.enable_retries", 0)]
        if spec.tls:
            credentials = grpc.ssl_channel_credentials(spec.ca, spec.key, spec.cert)
            self._channel = grpc.secure_channel(spec.address, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(spec.address, options=options)
        self._metadata = [("authorization", f"Bearer {spec.token}")] if spec.token else []
        self._stub = oip_grpc.GRPCInferenceServiceStub(self._channel)
        self.calls = 0
        """ModelInfer attempts so far (retries included)."""
        self._count = threading.Lock()
        request = oip_pb2.ModelMetadataRequest(name=spec.model, version=spec.version)
        try:
            metadata = self._call(self._stub.ModelMetadata, request, threading.Event())
            source = _pick(metadata.inputs, spec.input, "input", spec.where)
            scores = _pick(metadata.outputs, spec.output, "output", spec.where)
        except BaseException:
            self._channel.close()
            raise
        self.signature = RemoteSignature(source.name, source.datatype, _dims(source.shape), scores.name,
                                         _dims(scores.shape), spec.where)

    def forward(self, batch: NDArray, stop: threading.Event) -> NDArray[np.float32]:
        """Class scores [n, classes] float32 of ``batch`` [n, ...] (one ModelInfer, retried; see the module).

        Raises:
            Cancelled: ``stop`` was set. Unavailable / ResourceExhausted: still so after the retries.
            FailedPrecondition: the endpoint refused the request, or answered without the output [n, …].
        """
        signature = self.signature
        data = np.ascontiguousarray(batch, dtype=DATATYPES[signature.input_datatype])
        tensor = oip_pb2.ModelInferRequest.InferInputTensor(name=signature.input_name,
                                                            datatype=signature.input_datatype, shape=list(data.shape))
        request = oip_pb2.ModelInferRequest(
            model_name=self.spec.model, model_version=self.spec.version, inputs=[tensor],
            outputs=[oip_pb2.ModelInferRequest.InferRequestedOutputTensor(name=signature.output_name)],
            raw_input_contents=[data.tobytes()])
        response = self._call(self._stub.ModelInfer, request, stop, count=True)
        scores = self._output(response)
        if scores.ndim != 2 or len(scores) != len(batch):
            raise FailedPrecondition(f"{signature.where} answered {signature.output_name!r} shaped "
                                     f"{list(scores.shape)} for {len(batch)} images; expected [{len(batch)}, classes]")
        return scores.astype(np.float32, copy=False)

    def _output(self, response: oip_pb2.ModelInferResponse) -> NDArray:
        name = self.signature.output_name
        index = next((i for i, o in enumerate(response.outputs) if o.name == name), None)
        if index is None:
            raise FailedPrecondition(f"{self.signature.where} answered without the output {name!r}")
        output = response.outputs[index]
        if response.raw_output_contents:
            raw = response.raw_output_contents[index]
        else:
            from .oip import TYPED_CONTENTS  # here: .oip serves the repository, which reads remote entries

            field = TYPED_CONTENTS.get(output.datatype)
            if field is None:
                raise FailedPrecondition(f"{self.signature.where} answered {name!r} as {output.datatype}; "
                                         f"allowed: {', '.join(TYPED_CONTENTS)}")
            raw = np.asarray(getattr(output.contents, field), DATATYPES[output.datatype]).tobytes()
        try:
            return from_tensor(tensor_pb2.Tensor(datatype=output.datatype, shape=output.shape, raw_contents=raw),
                               field=name)
        except ValueError as exc:
            raise FailedPrecondition(f"{self.signature.where} answered an undecodable {name!r}: {exc}") from exc

    def _call(self, method, request, stop: threading.Event, *, count: bool = False):
        """``method(request)`` with the deadline, retried on :data:`RETRYABLE` with backoff; see :meth:`forward`."""
        for attempt in range(self.spec.retries + 1):
            if stop.is_set():  # a request still queued when its run stopped is never sent
                raise Cancelled(f"stopped before calling {self.spec.where}")
            if count:
                with self._count:
                    self.calls += 1
            call = method.future(request, timeout=self.spec.timeout_seconds, metadata=self._metadata)
            finished = threading.Event()
            call.add_done_callback(lambda _, finished=finished: finished.set())
            while not finished.wait(POLL_SECONDS):
                if stop.is_set():
                    call.cancel()
                    raise Cancelled(f"stopped while calling {self.spec.where}")
            try:
                return call.result()
            except grpc.RpcError as exc:
                code = exc.code()
                if code not in RETRYABLE or attempt == self.spec.retries:
                    raise _error(code, exc.details(), self.spec.where, attempt + 1) from None
            backoff = min(MAX_BACKOFF, FIRST_BACKOFF * 2**attempt) * random.uniform(0.5, 1.0)
            stop.wait(backoff)  # cut short by a stop, which the next attempt then reports
        raise AssertionError("unreachable: the last attempt returns or raises")

    def close(self) -> None:
        self._channel.close()


def _error(code: grpc.StatusCode, details: str | None, where: str, attempts: int) -> Exception:
    """The library error for a failed call to ``where``."""
    said = f"{where}: {code.name} after {attempts} attempt{'s' * (attempts > 1)}: {(details or '')[:300]}"
    if code is grpc.StatusCode.UNAVAILABLE or code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return Unavailable(said)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ResourceExhausted(said, retryable=True)
    if code is grpc.StatusCode.CANCELLED:
        return Cancelled(said)
    return FailedPrecondition(f"the remote model refused the request: {said}")
