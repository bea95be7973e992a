"""The gRPC servicers: a few lines each — decode, call the library on a worker, forward."""

from __future__ import annotations

import asyncio
import logging
from functools import partial, wraps

import numpy as np

from onnxplain.explainers import RunContext, list_methods
from onnxplain.explainers.metrics import NOT_PER_REQUEST, list_metrics
from onnxplain.explainers.objectives import softmax
from onnxplain.v1 import explanation_service_pb2 as ex_pb2
from onnxplain.v1 import explanation_service_pb2_grpc as ex_grpc
from onnxplain.v1 import model_service_pb2 as model_pb2
from onnxplain.v1 import model_service_pb2_grpc as model_grpc

from .convert import fill_layers, method_info, metric_info, model_info
from .errors import abort
from .evaluate_job import run_evaluate
from .explain_job import run_explain
from .limits import ServerLimits
from .observe import count_evaluations, request_fields
from .repository import ModelRepository, check_name
from .requests import prepare_image
from .workers import Loader, WorkPool

log = logging.getLogger("onnxplain.server")
DEFAULT_TOP_K = 5


def _unary(handler):
    """Map library exceptions raised by a unary handler to gRPC statuses."""

    @wraps(handler)
    async def wrapped(self, request, context):
        try:
            return await handler(self, request, context)
        except Exception as exc:
            await abort(context, exc, request_id=getattr(request, "request_id", ""))

    return wrapped


async def _nothing() -> None:
    return None


class ModelServicer(model_grpc.ModelServiceServicer):
    def __init__(self, repository: ModelRepository, pool: WorkPool, loader: Loader, limits: ServerLimits):
        self.repository, self.pool, self.loader, self.limits = repository, pool, loader, limits
        self.health_changed = _nothing  # the server sets this: readiness follows the models' states

    @_unary
    async def ListModels(self, request, context):
        self.repository.scan()
        return model_pb2.ListModelsResponse(models=[model_info(e) for e in self.repository.entries()])

    @_unary
    async def GetModel(self, request, context):
        entry = self.repository.entry(check_name(request.name, "name"))
        info = model_info(entry)
        if entry.classifier is not None:  # layer shapes are probed by running the model once: off the loop
            await self.pool.call(fill_layers, info, entry.classifier)
        return model_pb2.GetModelResponse(model=info)

    @_unary
    async def LoadModel(self, request, context):
        remaining = context.time_remaining()
        timeout = self.limits.load_timeout_seconds if remaining is None else min(remaining, self.limits.load_timeout_seconds)
        if request.onnx_model:
            load = partial(self.repository.load_bytes, request.name, request.onnx_model, request.config_json)
        else:
            load = partial(self.repository.load, request.name)
        try:
            entry = await self.loader.run(load, timeout=timeout)
        finally:
            await self.health_changed()
        log.info("model %s loaded (%s)", entry.name, entry.state.value)
        return model_pb2.LoadModelResponse(model=model_info(entry))

    @_unary
    async def UnloadModel(self, request, context):
        self.repository.unload(check_name(request.name, "name"))
        await self.health_changed()
        return model_pb2.UnloadModelResponse()

    @_unary
    async def Predict(self, request, context):
        response = await self.pool.call(self._predict, request)
        count_evaluations(forward=1)
        return response

    def _predict(self, request: model_pb2.PredictRequest) -> model_pb2.PredictResponse:
        classifier = self.repository.get(request.model)
        image = prepare_image(classifier, request.image, max_pixels=self.limits.max_image_pixels)
        scores = classifier.predict(image.tensor[None])[0]
        probabilities = scores if classifier.outputs_are_probabilities else softmax(scores.astype(np.float64))
        k = min(request.top_k or DEFAULT_TOP_K, classifier.num_classes)
        response = model_pb2.PredictResponse(model=classifier.name, warnings=classifier.info.warnings)
        for index in np.argsort(-scores, kind="stable")[:k]:
            response.classes.add(
                index=int(index), label=classifier.labels[index], score=float(scores[index]),
                probability=float(probabilities[index]),
            )
        return response


class ExplanationServicer(ex_grpc.ExplanationServiceServicer):
    def __init__(self, repository: ModelRepository, pool: WorkPool, limits: ServerLimits):
        self.repository, self.pool, self.limits = repository, pool, limits

    async def Explain(self, request, context):
        async for response in self._stream(run_explain, request, context, "explain started"):
            yield response

    async def Evaluate(self, request, context):
        async for response in self._stream(run_evaluate, request, context, "evaluate started"):
            yield response

    async def _stream(self, run, request, context, started: str):
        """Run the job ``run(request, repository, limits, run_context)`` on a worker under the request's
        evaluation limit and deadline, forwarding what it yields; library errors become statuses."""
        run_context = RunContext(max_evaluations=self.limits.max_evaluations)
        remaining = context.time_remaining()
        # the deadline stops the work between batches even if the RPC's own cancellation is late
        deadline_timer = (
            None if remaining is None
            else asyncio.get_running_loop().call_later(
                max(remaining, 0.0), partial(run_context.cancel, "deadline exceeded", deadline=True))
        )
        log.info(started, extra={"fields": request_fields(request)})
        try:
            job = lambda: run(request, self.repository, self.limits, run_context)  # noqa: E731
            async for response in self.pool.stream(job, run_context):
                yield response
        except Exception as exc:
            await abort(context, exc, request_id=request.request_id)
        finally:
            count_evaluations(run_context.forward, run_context.backward)
            if deadline_timer is not None:
                deadline_timer.cancel()

    @_unary
    async def ListMethods(self, request, context):
        return ex_pb2.ListMethodsResponse(methods=[method_info(spec) for spec in list_methods()])

    @_unary
    async def ListMetrics(self, request, context):
        unavailable = [ex_pb2.UnavailableMetric(name=name, reason=reason) for name, reason in NOT_PER_REQUEST.items()]
        return ex_pb2.ListMetricsResponse(metrics=[metric_info(spec) for spec in list_metrics()],
                                          not_per_request=unavailable)

