"""The Open Inference Protocol v2 on onnxplain's server: Triton and KServe clients can predict with its models.

Each repository model is one OIP model with one version (``"1"``), platform ``onnxruntime_onnx``, its
image input in the model's own layout and datatype, and one output: the class scores ``[N, classes]``
FP32 (the same numbers ``Predict`` ranks). Inputs arrive as ``raw_input_contents`` (row-major
little-endian bytes, decoded by :mod:`onnxplain.v1.wire`, the same codec as onnxplain's own tensors)
or as typed ``contents``. Inference runs on the explanation work pool, so it is admitted, bounded and
drained like every other request; errors use the server's one status table.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from onnxplain import __version__
from onnxplain.explainers import OnnxClassifier
from onnxplain.explainers.errors import InvalidArgument, NotFound
from onnxplain.explainers.model import ModelInfo
from onnxplain.oip import grpc_service_pb2 as oip_pb2
from onnxplain.oip import grpc_service_pb2_grpc as oip_grpc
from onnxplain.v1 import tensor_pb2
from onnxplain.v1.wire import DATATYPES, from_tensor

from .errors import abort
from .limits import ServerLimits
from .repository import ModelRepository, State
from .workers import WorkPool

SERVICE = oip_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
VERSION = "1"
PLATFORM = "onnxruntime_onnx"
TYPED_CONTENTS = {  # OIP datatype → the InferTensorContents field that may carry it
    "FP32": "fp32_contents", "FP64": "fp64_contents", "INT8": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "BOOL": "bool_contents",
}


def input_shape(info: ModelInfo) -> list[int]:
    """The model input as OIP declares it: a variable batch, then the model's own layout."""
    spatial = [info.channels, info.height, info.width] if info.layout == "NCHW" else [info.height, info.width,
                                                                                      info.channels]
    return [-1, *spatial]


def decode_input(request: oip_pb2.ModelInferRequest, info: ModelInfo) -> NDArray:
    """The one image input of ``request`` as an array [N, *layout] of the model's input dtype."""
    if len(request.inputs) != 1:
        raise InvalidArgument("inputs", f"{len(request.inputs)} inputs given; the model takes exactly one, "
                                        f"{info.input_name!r}")
    given = request.inputs[0]
    if given.name != info.input_name:
        raise InvalidArgument("inputs[0].name", f"{given.name[:80]!r}; allowed: {info.input_name!r}")
    if given.datatype != info.input_datatype:
        raise InvalidArgument("inputs[0].datatype", f"{given.datatype[:20]!r}; allowed: {info.input_datatype}")
    if request.raw_input_contents:
        if given.HasField("contents"):
            raise InvalidArgument("inputs[0].contents", "set raw_input_contents or contents, not both")
        raw = request.raw_input_contents[0]
    else:
        field = TYPED_CONTENTS.get(given.datatype)
        if field is None:
            raise InvalidArgument("inputs[0].contents", f"{given.datatype} travels only as raw_input_contents")
        values = np.asarray(getattr(given.contents, field))
        dtype = DATATYPES[given.datatype]
        if dtype.kind in "iu" and values.size and (values.min() < np.iinfo(dtype).min or values.max() > np.iinfo(dtype).max):
            raise InvalidArgument("inputs[0].contents", f"values outside {given.datatype}'s range "
                                                        f"[{np.iinfo(dtype).min}, {np.iinfo(dtype).max}]")
        raw = values.astype(dtype).tobytes()
    tensor = tensor_pb2.Tensor(datatype=given.datatype, shape=given.shape, raw_contents=raw)
    array = from_tensor(tensor, field="inputs[0]")
    expected = input_shape(info)
    if array.ndim != 4 or list(array.shape[1:]) != expected[1:] or array.shape[0] < 1:
        raise InvalidArgument("inputs[0].shape", f"{list(array.shape)}; allowed: {expected} (N ≥ 1)")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise InvalidArgument("inputs[0]", "contains NaN or infinite values")
    return array


class InferenceServicer(oip_grpc.GRPCInferenceServiceServicer):
    """``inference.GRPCInferenceService`` over the model repository."""

    def __init__(self, repository: ModelRepository, pool: WorkPool, limits: ServerLimits, *, ready=lambda: True):
        self.repository, self.pool, self.limits, self._server_ready = repository, pool, limits, ready

    def _model(self, name: str, version: str) -> OnnxClassifier:
        if version not in ("", VERSION):
            raise NotFound(f"version of model {name[:80]!r}", version, [VERSION])
        return self.repository.get(name)

    async def ServerLive(self, request, context):
        return oip_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        ready = self._server_ready() and any(e.state is State.READY for e in self.repository.entries())
        return oip_pb2.ServerReadyResponse(ready=ready)

    async def ModelReady(self, request, context):
        try:
            self._model(request.name, request.version)
        except Exception:
            return oip_pb2.ModelReadyResponse(ready=False)
        return oip_pb2.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request, context):
        return oip_pb2.ServerMetadataResponse(name="onnxplain", version=__version__)

    async def ModelMetadata(self, request, context):
        try:
            info = self._model(request.name, request.version).info
        except Exception as exc:
            await abort(context, exc)
        tensor = oip_pb2.ModelMetadataResponse.TensorMetadata
        return oip_pb2.ModelMetadataResponse(
            name=info.name, versions=[VERSION], platform=PLATFORM,
            inputs=[tensor(name=info.input_name, datatype=info.input_datatype, shape=input_shape(info))],
            outputs=[tensor(name=info.output_name, datatype="FP32", shape=[-1, info.num_classes])],
        )

    async def ModelInfer(self, request, context):
        try:
            return await self.pool.call(self._infer, request)
        except Exception as exc:
            await abort(context, exc, request_id=request.id)

    def _infer(self, request: oip_pb2.ModelInferRequest) -> oip_pb2.ModelInferResponse:
        classifier = self._model(request.model_name, request.model_version)
        info = classifier.info
        wanted = [o.name for o in request.outputs]
        if any(name != info.output_name for name in wanted):
            raise InvalidArgument("outputs", f"{', '.join(n[:80] for n in wanted)}; allowed: {info.output_name!r} "
                                             "(the class scores)")
        batch = decode_input(request, info)
        canonical = batch if info.layout == "NCHW" else batch.transpose(0, 3, 1, 2)
        scores = classifier.predict(np.ascontiguousarray(canonical, dtype=np.float32))
        output = oip_pb2.ModelInferResponse.InferOutputTensor(name=info.output_name, datatype="FP32",
                                                                shape=list(scores.shape))
        return oip_pb2.ModelInferResponse(model_name=info.name, model_version=VERSION, id=request.id,
                                          outputs=[output], raw_output_contents=[scores.astype("<f4").tobytes()])
