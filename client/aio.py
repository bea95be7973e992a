"""The asyncio client: :class:`AsyncClient`, the same calls as :class:`~onnxplain.client.Client` on ``grpc.aio``.

::

    async with AsyncClient("localhost:50051") as client:
        async for event in client.explain_stream("efficientnet_lite0", Path("cat.jpg"), "occlusion"):
            ...

Requests are built and responses parsed by the same functions as the blocking client's, so the two
cannot drift; the retry policy and message limits are the same (:func:`channel_options`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from onnxplain.v1 import explanation_service_pb2 as ex_pb2
from onnxplain.v1 import explanation_service_pb2_grpc as ex_grpc
from onnxplain.v1 import model_service_pb2 as model_pb2
from onnxplain.v1 import model_service_pb2_grpc as model_grpc

from .client import (
    DEFAULT_ADDRESS,
    DEFAULT_TIMEOUT,
    Accepted,
    Client,
    ImageLike,
    Prediction,
    Predictions,
    Progress,
    Result,
    channel_options,
    image_input,
    parse_event,
    parse_predictions,
)
from .evaluation import (
    Evaluation,
    EvaluationAccepted,
    EvaluationEvent,
    MetricsLike,
    collect,
    has_text_values,
    parameter_kinds,
    parse_evaluate_event,
)


class AsyncClient:
    """An asyncio connection to an onnxplain server; every call has a deadline (``timeout`` seconds)."""

    def __init__(self, address: str = DEFAULT_ADDRESS, *, timeout: float = DEFAULT_TIMEOUT, token: str | None = None,
                 root_certificates: bytes | None = None, client_certificate: tuple[bytes, bytes] | None = None,
                 secure: bool = False, retries: bool = True):
        options = channel_options(retries=retries)
        if secure or root_certificates or client_certificate:
            key, chain = client_certificate or (None, None)
            credentials = grpc.ssl_channel_credentials(root_certificates, key, chain)
            self.channel = grpc.aio.secure_channel(address, credentials, options=options)
        else:
            self.channel = grpc.aio.insecure_channel(address, options=options)
        self.timeout = timeout
        self.metadata = [("authorization", f"Bearer {token}")] if token else []
        self.models = model_grpc.ModelServiceStub(self.channel)
        self.explanations = ex_grpc.ExplanationServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _call(self, rpc, request, timeout: float | None = None):
        return rpc(request, timeout=timeout or self.timeout, metadata=self.metadata)

    async def list_models(self) -> list[model_pb2.ModelInfo]:
        return list((await self._call(self.models.ListModels, model_pb2.ListModelsRequest())).models)

    async def get_model(self, name: str) -> model_pb2.ModelInfo:
        return (await self._call(self.models.GetModel, model_pb2.GetModelRequest(name=name))).model

    async def load_model(self, name: str, onnx_model: bytes = b"", config_json: str = "") -> model_pb2.ModelInfo:
        request = model_pb2.LoadModelRequest(name=name, onnx_model=onnx_model, config_json=config_json)
        return (await self._call(self.models.LoadModel, request)).model

    async def unload_model(self, name: str) -> None:
        await self._call(self.models.UnloadModel, model_pb2.UnloadModelRequest(name=name))

    async def predict(self, model: str, image: ImageLike, top_k: int = 5) -> list[Prediction]:
        return (await self.predictions(model, image, top_k)).classes

    async def predictions(self, model: str, image: ImageLike, top_k: int = 5) -> Predictions:
        """:meth:`predict` with the response's warnings."""
        request = model_pb2.PredictRequest(model=model, image=image_input(image), top_k=top_k)
        return parse_predictions(await self._call(self.models.Predict, request))

    async def list_methods(self) -> list[ex_pb2.MethodInfo]:
        return list((await self._call(self.explanations.ListMethods, ex_pb2.ListMethodsRequest())).methods)

    async def explain_stream(self, model: str, image: ImageLike, method: str, *, timeout: float | None = None,
                             **options: Any) -> AsyncIterator[Accepted | Progress | Result]:
        """The events of one explanation, as :meth:`Client.explain_stream` (same options). Leaving the
        loop early cancels the RPC, and the server stops the work."""
        call = self._call(self.explanations.Explain, Client.explain_request(model, image, method, **options), timeout)
        async for event in read_stream(call, parse_event, Accepted):
            yield event

    async def list_metrics(self) -> list[ex_pb2.MetricInfo]:
        return list((await self._call(self.explanations.ListMetrics, ex_pb2.ListMetricsRequest())).metrics)

    async def evaluate_stream(self, model: str, image: ImageLike, method: str, metrics: MetricsLike = ("deletion",), *,
                              timeout: float | None = None, **options: Any) -> AsyncIterator[EvaluationEvent]:
        """The events of one evaluation, as :meth:`Client.evaluate_stream` (same options)."""
        kinds = None
        if has_text_values(metrics):
            kinds = parameter_kinds(await self.list_metrics())
        request = Client.evaluate_request(model, image, method, metrics, kinds=kinds, **options)
        async for event in read_stream(self._call(self.explanations.Evaluate, request, timeout), parse_evaluate_event,
                                       EvaluationAccepted):
            yield event

    async def evaluate(self, model: str, image: ImageLike, method: str, metrics: MetricsLike = ("deletion",),
                       **options: Any) -> Evaluation:
        """Run an evaluation to completion, as :meth:`Client.evaluate`."""
        return collect([event async for event in self.evaluate_stream(model, image, method, metrics, **options)])

    async def explain(self, model: str, image: ImageLike, method: str, **options: Any) -> Result:
        """Run an explanation to completion and return its :class:`Result`."""
        async for event in self.explain_stream(model, image, method, **options):
            if isinstance(event, Result):
                return event
        raise RuntimeError("the server closed the stream without a result")


async def read_stream(call: Any, parse: Any, first: type) -> AsyncIterator[Any]:
    """As :func:`onnxplain.client.client.read_stream`, for a ``grpc.aio`` call."""
    accepted = None
    try:
        async for response in call:
            event = parse(response, accepted)
            accepted = event if isinstance(event, first) else accepted
            yield event
    finally:
        call.cancel()
