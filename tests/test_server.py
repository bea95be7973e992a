"""In-process gRPC server on port 0: contract, streaming, errors, limits, cancellation."""

from __future__ import annotations

import io
import time

import builders
import grpc
import numpy as np
import onnx
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from onnx.external_data_helper import set_external_data
from PIL import Image
from serving import ServerThread, wait_for

from onnxplain.client import Accepted, Client, Progress, Result
from onnxplain.explainers import list_methods
from onnxplain.server.limits import ServerLimits

LONG = {"window": 4, "stride": 2}  # 12,545 evaluations on the bundled model: ~a minute on 2 cores


@pytest.fixture(scope="module")
def server(repository):
    running = ServerThread(repository, limits=ServerLimits(max_concurrent=1, max_queue=1, max_evaluations=20_000))
    yield running
    running.stop()


@pytest.fixture
def client(server):
    with Client(server.address, timeout=120) as c:
        yield c


def details(error: grpc.RpcError) -> tuple[str, list[str]]:
    """(ErrorInfo.reason, BadRequest fields) of a failed call."""
    status = rpc_status.from_call(error)
    reason, fields = "", []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return reason, fields


def assert_still_serving(client: Client, coffee_png: bytes) -> None:
    assert client.predict("efficientnet_lite0", coffee_png, top_k=1)[0].label == "espresso"


def test_health_and_reflection(server):
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "onnxplain.v1.ExplanationService", "onnxplain.v1.ModelService"):
            response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for r in responses for s in r.list_services_response.service}
        assert {"onnxplain.v1.ExplanationService", "onnxplain.v1.ModelService", "grpc.health.v1.Health"} <= names


def test_models_are_listed_with_state_and_failure_reason(client):
    models = {m.name: m for m in client.list_models()}
    assert models["efficientnet_lite0"].state == 3 and models["efficientnet_lite0"].num_classes == 1000
    assert models["linear"].labels == ["a", "b", "c", "d"]
    assert models["corrupt"].state == 4 and "not an ONNX model" in models["corrupt"].error
    info = client.get_model("efficientnet_lite0")
    assert list(info.input.shape) == [-1, 3, 224, 224] and info.preprocessing.resize == 256


def test_methods_are_listed_with_parameters(client):
    occlusion = {m.name: m for m in client.list_methods()}["occlusion"]
    assert occlusion.black_box and occlusion.params_field == "occlusion"
    window = {p.name: p for p in occlusion.parameters}["window"]
    assert (window.default_value, window.minimum, window.type) == ("16", 1.0, "int")
    assert occlusion.citation.startswith("Zeiler & Fergus") and occlusion.reference == occlusion.citation
    kinds = {(m.name, p.name): p.type for m in client.list_methods() for p in m.parameters}
    assert kinds["extremal_perturbation", "areas"] == "floats" and kinds["deeplift", "baseline_tensor"] == "tensor"
    assert kinds["rise", "keep_probability"] == "float" and kinds["smoothgrad", "inner"] == "str"


def test_predict(client, coffee_png):
    best = client.predict("efficientnet_lite0", coffee_png, top_k=3)
    assert best[0].label == "espresso" and best[0].probability > 0.9 and len(best) == 3


def test_explain_stream_order_request_id_and_result(server, coffee_png):
    with Client(server.address) as c:
        request = c.explain_request("efficientnet_lite0", coffee_png, "occlusion", params={"window": 32, "stride": 32},
                                    seed=7, overlay=True, original_grid=True, partial_interval_ms=1,
                                    request_id="req-42")
        responses = list(c.explanations.Explain(request, timeout=60))
    kinds = [r.WhichOneof("event") for r in responses]
    assert kinds[0] == "accepted" and kinds[-1] == "result" and set(kinds[1:-1]) == {"progress"}
    assert all(r.request_id == "req-42" for r in responses)
    accepted = responses[0].accepted
    assert accepted.seed == 7 and accepted.planned_evaluations == 7 * 7 + 1 + 1  # + the forward finding the top-1
    assert accepted.targets[0].label == "espresso" and accepted.parameters["window"] == "32"
    assert any(r.progress.HasField("partial_heatmaps") for r in responses[1:-1])
    result = responses[-1].result
    assert list(result.heatmaps.shape) == [1, 224, 224] and list(result.original_heatmaps.shape) == [1, 400, 600]
    overlay = Image.open(io.BytesIO(result.targets[0].overlay_png))
    assert overlay.size == (600, 400)
    assert result.forward_evaluations == 51 == accepted.planned_evaluations  # the forward finding the top-1 counts
    assert [r.progress.total for r in responses[1:-1]] == [51] * (len(responses) - 2)
    done = [r.progress.done for r in responses[1:-1]]
    assert done == sorted(done) and done[-1] == 51  # done counts the top-1 forward too, and ends at the total


def test_explain_preprocessed_tensor_is_exact_on_a_linear_model(client):
    weights = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)  # as in conftest
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32)
    result = client.explain("linear", x, "occlusion", classes=[2, 3], params={"window": 1, "stride": 1})
    np.testing.assert_allclose(result.heatmaps[0], (weights[2] * x[0]).sum(0), atol=5e-5)
    np.testing.assert_allclose(result.heatmaps[1], (weights[3] * x[0]).sum(0), atol=5e-5)
    assert [t.label for t in result.targets] == ["c", "d"] and result.original_heatmaps is None


def test_contrast_loss_reaches_the_objective_and_is_reported(client):
    """cross_entropy over the wire: the saliency seed softmax(y) − e_Q on the linear model; the result names the
    loss; an unknown enum value and a loss without a contrast class are refused naming target.contrast_loss."""
    weights = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)  # as in conftest
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32) * 0.05
    logits = np.einsum("kchw,chw->k", weights.astype(np.float64), x[0])
    seed = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum() - np.eye(4)[3]
    result = client.explain("linear", x, "input_x_gradient", classes=[1], contrast=3, contrast_loss="cross_entropy")
    np.testing.assert_allclose(result.heatmaps[0], (np.einsum("k,kchw->chw", seed, weights) * x[0]).sum(0),
                               rtol=1e-4, atol=1e-6)
    assert result.targets[0].contrast_loss == "cross_entropy" and result.targets[0].contrast_class == 3
    np.testing.assert_allclose(result.targets[0].score, np.log(np.exp(logits).sum()) - logits[3], rtol=1e-5)
    assert client.explain("linear", x, "saliency", classes=[1], contrast=3).targets[0].contrast_loss == "difference"
    assert client.explain("linear", x, "saliency", classes=[1]).targets[0].contrast_loss is None
    with pytest.raises(ValueError, match="choices: difference, cross_entropy"):
        client.explain_request("linear", x, "saliency", classes=[1], contrast=3, contrast_loss="hinge")
    request = client.explain_request("linear", x, "saliency", classes=[1], contrast=3)
    request.target.contrast_loss = 7
    without_contrast = client.explain_request("linear", x, "saliency", classes=[1], contrast_loss="cross_entropy")
    for bad, message in ((request, "7 is not a ContrastLoss value; allowed: unspecified (0), difference, cross_entropy"),
                         (without_contrast, "set target.contrast_class")):
        with pytest.raises(grpc.RpcError) as info:
            list(client.explanations.Explain(bad, timeout=30))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in info.value.details()
        assert details(info.value)[1] == ["target.contrast_loss"]


def test_nested_method_parameters_and_enums_reach_the_method(client):
    """SmoothGrad around Integrated Gradients with the inner method's steps and rule (an enum)."""
    weights = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)  # as in conftest
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32)
    result = client.explain("linear", x, "smoothgrad", classes=[1], params={
        "samples": 2, "noise_level": 0.0, "inner": "integrated_gradients", "ig_steps": 3, "ig_rule": "trapezoid"})
    np.testing.assert_allclose(result.heatmaps[0], (weights[1] * x[0]).sum(0), atol=5e-5)
    assert (result.forward_evaluations, result.backward_evaluations) == (2 * 3 + 1, 2 * 3)
    cnn = np.random.default_rng(3).standard_normal((1, 3, 16, 16)).astype(np.float32)
    by_rule = [client.explain("cnn", cnn, "smoothgrad", classes=[0], params={
        "samples": 1, "noise_level": 0.0, "inner": "integrated_gradients", "ig_steps": 4, "ig_rule": rule}).heatmaps
        for rule in ("trapezoid", "riemann_left")]
    assert not np.allclose(*by_rule)  # the enum reaches the method (a non-linear model tells the rules apart)
    with pytest.raises(grpc.RpcError) as info:
        client.explain("cnn", cnn, "smoothgrad", classes=[0], params={"ig_rule": "trapezoid"})
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "params.ig_rule" in info.value.details()


@pytest.mark.parametrize("datatype, dtype", [("FP16", np.float16), ("UINT8", np.uint8)])
def test_heatmap_datatypes(client, datatype, dtype):
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32)
    exact = client.explain("linear", x, "occlusion", classes=[0], params={"window": 8, "stride": 8})
    other = client.explain("linear", x, "occlusion", classes=[0], params={"window": 8, "stride": 8},
                           heatmap_datatype=datatype)
    assert other.heatmaps.dtype == dtype
    if dtype == np.uint8:
        low, high = exact.heatmaps.min(), exact.heatmaps.max()
        np.testing.assert_allclose(other.heatmaps / 255 * (high - low) + low, exact.heatmaps, atol=(high - low) / 255)
    else:
        np.testing.assert_allclose(other.heatmaps, exact.heatmaps, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    "kwargs, code, reason, field, message",
    [
        ({"model": "nope"}, "NOT_FOUND", "NOT_FOUND", None, "available: cnn, corrupt, efficientnet_lite0, generator, linear"),
        ({"method": "nope"}, "NOT_FOUND", "NOT_FOUND", None, "unknown method 'nope'; available: cam, "),
        ({"model": "corrupt"}, "FAILED_PRECONDITION", "FAILED_PRECONDITION", None, "failed to load"),
        ({"image": b"\x89PNG not really"}, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "image.encoded", "cannot decode"),
        ({"image": np.zeros((3, 10, 10), np.float32)}, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "image.tensor",
         "allowed: [3, 224, 224]"),
        ({"image": np.zeros((3, 224, 224), np.float64)}, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "image.tensor",
         "allowed: float32"),
        ({"params": {"window": 0}}, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "params.window", "allowed: [1, 4096]"),
        ({"params": {"window": 8, "stride": 9}}, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "params.stride", "window"),
        ({"method": "rise", "params": {"keep_probability": float("nan")}}, "INVALID_ARGUMENT", "INVALID_ARGUMENT",
         "params.keep_probability", "must be a finite number"),
        ({"classes": [1000]}, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "target.class_indices", "[0, 999]"),
        ({"params": {"window": 1, "stride": 1}}, "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED", None,
         "at most 20000"),
    ],
)
def test_errors_have_the_right_status_and_the_server_keeps_serving(client, coffee_png, kwargs, code, reason, field,
                                                                   message):
    args = {"model": "efficientnet_lite0", "image": coffee_png, "method": "occlusion", **kwargs}
    with pytest.raises(grpc.RpcError) as info:
        client.explain(args.pop("model"), args.pop("image"), args.pop("method"), **args)
    assert info.value.code().name == code
    assert message in info.value.details()
    got_reason, fields = details(info.value)
    assert got_reason == reason
    assert fields == ([field] if field else [])
    assert_still_serving(client, coffee_png)


def test_params_for_another_method_are_rejected(client, coffee_png):
    request = client.explain_request("efficientnet_lite0", coffee_png, "occlusion", params={"window": 32})
    request.method = "lime"  # the occlusion params no longer match the method
    with pytest.raises(grpc.RpcError) as info:
        list(client.explanations.Explain(request, timeout=30))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "parameters for 'occlusion' given, but the method is 'lime'" in info.value.details()


def test_corrupt_upload_and_disabled_uploads(client, coffee_png):
    with pytest.raises(grpc.RpcError) as info:
        client.load_model("mine", onnx_model=b"garbage")
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and "--allow-uploads" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        client.load_model("corrupt")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not an ONNX model" in info.value.details()
    assert_still_serving(client, coffee_png)


def test_cancelled_stream_frees_its_work_slot(server, client, coffee_png):
    stream = client.explain_stream("efficientnet_lite0", coffee_png, "occlusion", params=LONG)
    assert isinstance(next(stream), Accepted)
    assert isinstance(next(stream), Progress)
    assert server.app.pool.admitted == 1
    started = time.monotonic()
    stream.close()  # cancels the RPC
    assert wait_for(lambda: server.app.pool.admitted == 0, timeout=10)
    assert time.monotonic() - started < 10  # the full job would take about a minute
    assert_still_serving(client, coffee_png)


def test_stopped_work_maps_to_deadline_exceeded_or_cancelled():
    """The server's own deadline timer may stop the work before the client's deadline fires: the
    status must still say DEADLINE_EXCEEDED."""
    from onnxplain.explainers import RunContext
    from onnxplain.server.errors import status_code

    expired, cancelled = RunContext(), RunContext()
    expired.cancel("deadline exceeded", deadline=True)
    cancelled.cancel()
    assert status_code(expired.stopped()) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert status_code(cancelled.stopped()) == grpc.StatusCode.CANCELLED


def test_deadline_stops_the_work(server, coffee_png):
    with Client(server.address, timeout=1.5) as c:
        with pytest.raises(grpc.RpcError) as info:
            c.explain("efficientnet_lite0", coffee_png, "occlusion", params=LONG)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert wait_for(lambda: server.app.pool.admitted == 0, timeout=10)


def test_queue_full_is_resource_exhausted(server, client, coffee_png):
    request = client.explain_request("efficientnet_lite0", coffee_png, "occlusion", params=LONG)
    calls = [client.explanations.Explain(request, timeout=60) for _ in range(2)]  # one running, one queued
    try:
        assert wait_for(lambda: server.app.pool.admitted == 2, timeout=10)
        with pytest.raises(grpc.RpcError) as info:
            client.explain("efficientnet_lite0", coffee_png, "occlusion", params=LONG)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "server busy" in info.value.details()
    finally:
        for call in calls:
            call.cancel()
    assert wait_for(lambda: server.app.pool.admitted == 0, timeout=10)


def test_uploads_and_bearer_token(tmp_path, coffee_png):
    running = ServerThread(None, limits=ServerLimits(allow_uploads=True), token="s3cret")
    try:
        with Client(running.address) as anonymous:
            with pytest.raises(grpc.RpcError) as info:
                anonymous.list_models()
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        def health(service: str = "") -> int:  # health needs no token
            with grpc.insecure_channel(running.address) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status

        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        assert (health(), health("liveness")) == (not_serving, serving)  # alive, but nothing to serve yet
        with Client(running.address, token="s3cret") as c:
            with pytest.raises(grpc.RpcError) as info:
                c.load_model("bad", onnx_model=b"garbage bytes")
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            weights = np.ones((2, 1, 4, 4), np.float32)
            model = builders.linear(weights)
            info_ = c.load_model("tiny", onnx_model=model.SerializeToString(), config_json='{"labels": ["x", "y"]}')
            assert info_.state == 3 and list(info_.labels) == ["x", "y"]
            x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
            result = c.explain("tiny", x, "occlusion", classes=[1], params={"window": 1, "stride": 1})
            np.testing.assert_allclose(result.heatmaps[0], x[0, 0], atol=1e-5)
            assert (health(), health("model/tiny")) == (serving, serving)
            c.unload_model("tiny")
            assert [m.name for m in c.list_models()] == []
            assert health() == not_serving
            assert health("model/tiny") == not_serving  # an unloaded upload leaves the repository, not SERVING
    finally:
        running.stop()


def test_onnx_model_file_in_repository_with_bad_external_data_is_refused(tmp_path):
    from onnxplain.server.repository import ModelRepository, State

    model = builders.linear(np.ones((2, 1, 4, 4), np.float32))
    (tmp_path / "escape").mkdir()
    weights = next(t for t in model.graph.initializer if t.name == "W")
    set_external_data(weights, location="../outside.bin")
    weights.ClearField("raw_data")
    weights.data_location = onnx.TensorProto.EXTERNAL
    (tmp_path / "escape" / "model.onnx").write_bytes(model.SerializeToString())
    repository = ModelRepository(tmp_path)
    with pytest.raises(Exception, match="outside the model directory"):
        repository.load("escape")
    assert repository.entry("escape").state is State.FAILED


def test_get_model_lists_cam_layers(client):
    info = client.get_model("efficientnet_lite0")
    layers = {layer.name: list(layer.shape) for layer in info.layers}
    assert info.cam_layer == "/_swish_1/Clip_output_0" and layers[info.cam_layer] == [1280, 7, 7]
    assert len(layers) > 50


@pytest.mark.parametrize("method", [spec.name for spec in list_methods()])
def test_every_method_is_reachable_over_grpc(client, method):
    """Each registered method runs through the server with typed proto parameters."""
    from test_conformance import CONTRASTS, FAST

    x = np.random.default_rng(3).standard_normal((1, 3, 16, 16)).astype(np.float32)
    params = FAST.get(method) or None
    contrast = CONTRASTS[method].contrast if method in CONTRASTS else None  # and companions from the repository
    events = list(client.explain_stream("cnn", x, method, classes=[0, 2], contrast=contrast, params=params, seed=1))
    assert isinstance(events[0], Accepted) and isinstance(events[-1], Result)
    result = events[-1]
    assert result.heatmaps.shape == (2, 16, 16) and np.all(np.isfinite(result.heatmaps))
    assert result.forward_evaluations > 0 and events[0].planned_evaluations >= 1
