"""Regression tests for the hardening issue: each reproduces a defect found by probing a running server.

Every test here failed on the code before the fix (the numbers in the docstrings are the issue's).
"""

from __future__ import annotations

import asyncio
import threading
import time
import tracemalloc
from pathlib import Path

import builders
import grpc
import numpy as np
import onnx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from onnx import TensorProto, helper
from onnx.external_data_helper import set_external_data
from PIL import Image
from serving import ServerThread
from skimage import data
from test_server import details

from onnxplain.client import Client
from onnxplain.explainers import ModelConfig
from onnxplain.explainers.errors import FailedPrecondition, InvalidArgument
from onnxplain.explainers.model import Preprocessing, decode_image, preprocess
from onnxplain.server.app import create_server
from onnxplain.server.limits import ServerLimits
from onnxplain.v1 import explanation_service_pb2 as ex_pb2
from onnxplain.v1 import model_service_pb2 as model_pb2
from onnxplain.v1 import tensor_pb2

LINEAR_WEIGHTS = np.random.default_rng(3).standard_normal((3, 3, 16, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def small_repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    (root / "linear").mkdir()
    onnx.save(builders.linear(LINEAR_WEIGHTS), root / "linear" / "model.onnx")
    return root


@pytest.fixture(scope="module")
def server(small_repository):
    running = ServerThread(small_repository, limits=ServerLimits(allow_uploads=True, max_concurrent=1, max_queue=0,
                                                                 max_evaluations=5_000))
    yield running
    running.stop()


@pytest.fixture
def client(server):
    """No client retries here: the tests must see what the server answers, not what a retry hides."""
    with Client(server.address, timeout=60, retries=False) as c:
        yield c


def health(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def small_image() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)


# 1. uploads read nothing outside -------------------------------------------------------------------


def test_an_upload_may_not_reference_external_data(client, tmp_path):
    """An initializer with external data 'tls/server.key' was read relative to the server's directory."""
    model = builders.linear(np.ones((2, 1, 4, 4), np.float32))
    weights = next(t for t in model.graph.initializer if t.name == "W")
    set_external_data(weights, location="tls/server.key")
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    with pytest.raises(grpc.RpcError) as info:
        client.load_model("exfiltrate", onnx_model=model.SerializeToString())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "external data" in info.value.details()
    assert "exfiltrate" not in [m.name for m in client.list_models()]


@pytest.mark.parametrize("labels", ["../../etc/hostname", "/etc/hostname"])
def test_config_labels_may_not_leave_the_model_folder(tmp_path, labels):
    (tmp_path / "m").mkdir()
    with pytest.raises(InvalidArgument) as info:
        ModelConfig.from_dict({"labels": labels}, base_dir=tmp_path / "m")
    assert info.value.field == "config.labels" and "outside" in str(info.value)


# 2. a 97-byte PNG may not cost gigabytes --------------------------------------------------------------


def png_bytes(array: np.ndarray) -> bytes:
    return builders.png(array)


def test_an_extremely_elongated_image_is_refused_before_resizing(monkeypatch):
    """4000×1 passed the pixel limit, then the short-side resize made it 256 × 1,024,000 float32 (≈1 GB)."""
    strip = decode_image(png_bytes(np.full((1, 4000, 3), 200, np.uint8)))

    def no_resize(*args, **kwargs):  # PIL's own memory is invisible to tracemalloc: resizing at all fails
        raise AssertionError("the image was resized before it was refused")

    monkeypatch.setattr(Image.Image, "resize", no_resize)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidArgument) as info:
            preprocess(strip, Preprocessing(resize=256, center_crop=224), size=(224, 224), channels=3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "too elongated" in str(info.value) and peak < 5 * 2**20


def test_only_the_crop_becomes_float():
    """A wide-but-allowed photo: memory is the uint8 resize plus a float32 crop, not a float32 resize."""
    wide = decode_image(png_bytes(np.full((40, 4000, 3), 100, np.uint8)))
    tracemalloc.start()
    try:
        tensor, _ = preprocess(wide, Preprocessing(resize=256, center_crop=224), size=(224, 224), channels=3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    resized_float32 = 256 * 25_600 * 3 * 4  # what the old code allocated
    assert tensor.shape == (3, 224, 224) and peak < resized_float32 / 20


def test_decode_errors_do_not_leak_object_addresses():
    with pytest.raises(InvalidArgument) as info:
        decode_image(b"\x89PNG but not really")
    assert "0x" not in str(info.value) and "cannot decode image" in str(info.value)


# 4. open health streams cannot lock everyone out ---------------------------------------------------


def test_health_watch_streams_have_their_own_budget(server, client):
    """256 idle Watch streams used to take every slot of maximum_concurrent_rpcs."""
    channel = grpc.insecure_channel(server.address)
    stub = health_pb2_grpc.HealthStub(channel)
    streams = [stub.Watch(health_pb2.HealthCheckRequest(), timeout=30) for _ in range(6)]
    try:
        outcomes = []
        for stream in streams:
            try:
                outcomes.append(next(stream).status == health_pb2.HealthCheckResponse.SERVING)
            except grpc.RpcError as exc:
                outcomes.append(exc.code())
                assert "open health" in exc.details()
        assert sorted(map(str, outcomes)) == sorted(["True"] * 4 + [str(grpc.StatusCode.RESOURCE_EXHAUSTED)] * 2)
        assert health(server.address) == health_pb2.HealthCheckResponse.SERVING  # Check is never limited
        assert len(client.predict("linear", small_image(), top_k=1)) == 1
    finally:
        for stream in streams:
            stream.cancel()
        channel.close()
    assert wait_until(lambda: server.app.streams.open == 0)


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.05)
    return predicate()


# 5. reloading a serving model is no outage ------------------------------------------------------


def test_reloading_a_ready_model_keeps_serving_and_a_failed_reload_keeps_the_old_version(
        server, client, small_repository, monkeypatch):
    """LoadModel on a READY model made every Predict UNAVAILABLE until the reload ended (490 of 493)."""
    repository = server.app.repository
    original = repository._read_from_directory

    def slow(directory):
        time.sleep(1.0)
        return original(directory)

    monkeypatch.setattr(repository, "_read_from_directory", slow)
    reload = threading.Thread(target=client.load_model, args=("linear",))
    reload.start()
    failures, served = 0, 0
    while reload.is_alive():
        try:
            client.predict("linear", small_image(), top_k=1)
            served += 1
        except grpc.RpcError:
            failures += 1
    reload.join()
    assert served > 0 and failures == 0

    def broken(directory):
        raise InvalidArgument("model", "this version is broken")

    monkeypatch.setattr(repository, "_read_from_directory", broken)
    with pytest.raises(grpc.RpcError):
        client.load_model("linear")
    info = client.get_model("linear")
    assert info.state == model_pb2.MODEL_STATE_READY and "last reload failed" in info.error
    assert len(client.predict("linear", small_image(), top_k=1)) == 1


# 6. NaN passes no check -------------------------------------------------------------------------


def test_nan_class_weights_are_refused(client):
    weights = np.full((1, 3), np.nan, np.float32)
    with pytest.raises(grpc.RpcError) as info:
        client.explain("linear", small_image(), "occlusion", class_weights=weights, params={"window": 8, "stride": 8})
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(info.value)[1] == ["target.class_weights"] and "finite" in info.value.details()


@pytest.mark.parametrize("key", ["std", "mean", "scale"])
def test_a_config_with_non_finite_preprocessing_is_refused(key):
    value = float("nan") if key == "scale" else [1.0, float("nan"), 1.0]
    with pytest.raises(InvalidArgument) as info:
        Preprocessing(**{key: value})
    assert info.value.field == f"preprocessing.{key}" and "finite" in str(info.value)


# 7. out-of-range enums, overflowing shapes, malformed bytes ------------------------------------


def explain_call(server, request: ex_pb2.ExplainRequest):
    with grpc.insecure_channel(server.address) as channel:
        call = channel.unary_stream("/onnxplain.v1.ExplanationService/Explain",
                                    request_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
                                    response_deserializer=ex_pb2.ExplainResponse.FromString)
        return list(call(request, timeout=30))


def tensor_request(**changes) -> ex_pb2.ExplainRequest:
    request = ex_pb2.ExplainRequest(model="linear", method="occlusion", image=tensor_pb2.ImageInput(
        tensor=tensor_pb2.Tensor(datatype="FP32", shape=[1, 3, 16, 16], raw_contents=small_image().tobytes())))
    request.occlusion.window = 8
    request.occlusion.stride = 8
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        target = request
        for parent in parents:
            target = getattr(target, parent)
        setattr(target, leaf, value)
    return request


@pytest.mark.parametrize("field", ["occlusion.baseline", "output.heatmap_datatype", "target.score_space"])
def test_an_out_of_range_enum_is_invalid_argument_naming_the_field(server, field):
    """35 of 35 such cases were INTERNAL 'this is a bug'; an unknown heatmap_datatype silently became FP32."""
    with pytest.raises(grpc.RpcError) as info:
        explain_call(server, tensor_request(**{field: 99}))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(info.value)[1] == [field] and "allowed" in info.value.details()


def test_an_overflowing_tensor_shape_is_invalid_argument(server):
    request = tensor_request()
    del request.image.tensor.shape[:]
    request.image.tensor.shape.extend([2**62, 4])
    with pytest.raises(grpc.RpcError) as info:
        explain_call(server, request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "image.tensor" in details(info.value)[1][0]


def test_malformed_protobuf_bytes_are_invalid_argument(server):
    with pytest.raises(grpc.RpcError) as info:
        explain_call(server, b"\x0a\xff\xff\xff\xff\x0f garbage")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid onnxplain.v1.ExplainRequest" in info.value.details()


# 8. error details fit in trailers and are sanitised --------------------------------------------


def test_a_long_list_of_names_is_cut_and_the_code_is_stable(repository):
    """A mistyped layer listed all 109 layers; 5 of 40 typos came back RESOURCE_EXHAUSTED."""
    running = ServerThread(repository)
    try:
        with Client(running.address, timeout=120) as c:
            codes = set()
            for typo in ("blocks.0", "x" * 3000, "stem/conv"):
                with pytest.raises(grpc.RpcError) as info:
                    c.explain("efficientnet_lite0", small_image_224(), "grad_cam", params={"layer": typo})
                codes.add(info.value.code())
                assert len(info.value.details()) <= 1024 and "more" in info.value.details()
            assert codes == {grpc.StatusCode.NOT_FOUND}
    finally:
        running.stop()


def small_image_224() -> bytes:
    return png_bytes(data.coffee()[::2, ::2])


@pytest.mark.parametrize("request_id", ["x" * 20_000, "forged\nINFO onnxplain.server: admin logged in"])
def test_request_ids_are_bounded_and_printable(server, request_id):
    request = tensor_request(request_id=request_id)
    with pytest.raises(grpc.RpcError) as info:
        explain_call(server, request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and details(info.value)[1] == ["request_id"]


# 9. abandoned loads never become READY and never block predictions -----------------------------


def test_an_abandoned_load_is_not_swapped_in_and_does_not_block_predict(server, client, small_repository,
                                                                        monkeypatch):
    repository = server.app.repository
    original = repository._read_from_directory
    (small_repository / "slow").mkdir(exist_ok=True)
    onnx.save(builders.linear(LINEAR_WEIGHTS), small_repository / "slow" / "model.onnx")

    def slow(directory):
        time.sleep(2.0)
        return original(directory)

    monkeypatch.setattr(repository, "_read_from_directory", slow)
    with Client(server.address, timeout=0.5) as impatient:
        with pytest.raises(grpc.RpcError) as info:
            impatient.load_model("slow")
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    started = time.monotonic()
    client.predict("linear", small_image(), top_k=1)  # the load thread is busy; explanations are not
    assert time.monotonic() - started < 1.0
    assert wait_until(lambda: server.app.loader.pending == 0, timeout=10)
    assert client.get_model("slow").state != model_pb2.MODEL_STATE_READY


# 10. a result too large to send is refused before the work ------------------------------------


def test_a_result_too_large_to_send_is_refused_up_front(repository):
    running = ServerThread(repository, limits=ServerLimits(max_message_bytes=8 * 2**20))
    photo = png_bytes(np.random.default_rng(0).integers(0, 255, (1000, 1000, 3), dtype=np.uint8))
    try:
        with Client(running.address, timeout=120) as c:
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as info:
                c.explain("efficientnet_lite0", photo, "occlusion", top_k=4, original_grid=True,
                          params={"window": 112, "stride": 112})
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "UINT8" in info.value.details() and time.monotonic() - started < 10
            result = c.explain("efficientnet_lite0", photo, "occlusion", top_k=4, original_grid=True,
                               heatmap_datatype="UINT8", params={"window": 112, "stride": 112})
            assert result.original_heatmaps.shape == (4, 1000, 1000)
    finally:
        running.stop()


def test_a_method_whose_result_carries_images_is_sized_with_them_up_front(repository):
    """CEM returns its PN/PP images and maps besides the heatmap (8 planes per target on an RGB model): a limit
    the heatmap alone fits is refused before any model evaluation, not when the result is sent."""
    running = ServerThread(repository, limits=ServerLimits(max_message_bytes=2**20))
    photo = png_bytes(np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8))
    try:
        with Client(running.address, timeout=60, retries=False) as c:
            assert c.explain("efficientnet_lite0", photo, "saliency").heatmaps.shape == (1, 224, 224)
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as info:
                c.explain("efficientnet_lite0", photo, "cem", params={"iterations": 1, "search_steps": 1})
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "1.7 MiB" in info.value.details() and time.monotonic() - started < 10
    finally:
        running.stop()


# 11. honest health, drain, exclusive port, loud missing provider ------------------------------


def test_drain_keeps_health_answering_and_refuses_queued_work_at_once(small_repository):
    running = ServerThread(small_repository, limits=ServerLimits(max_concurrent=1, max_queue=4))
    busy = threading.Event()
    original = running.app.repository.get

    def slow_get(name):  # hold the only worker for a while
        busy.set()
        time.sleep(1.5)
        return original(name)

    running.app.repository.get = slow_get
    results: list = []

    stop_time = [float("inf")]  # set when the stop begins
    answered_after_stop: list[float] = []

    def predict():
        with Client(running.address, timeout=30, retries=False) as c:
            try:
                c.predict("linear", small_image(), top_k=1)
                results.append("ok")
            except grpc.RpcError as exc:
                results.append(exc.code())
                answered_after_stop.append(time.monotonic() - stop_time[0])

    threads = [threading.Thread(target=predict) for _ in range(3)]
    for thread in threads:
        thread.start()
    assert busy.wait(10) and wait_until(lambda: running.app.pool.admitted == 3)
    stop_time[0] = time.monotonic()
    stopping = asyncio.run_coroutine_threadsafe(running.app.stop(grace=10, drain=3.0), running.loop)
    assert wait_until(lambda: health(running.address) == health_pb2.HealthCheckResponse.NOT_SERVING, timeout=2.5)
    assert health(running.address, "liveness") == health_pb2.HealthCheckResponse.SERVING
    stopping.result(30)
    for thread in threads:
        thread.join(10)
    running.loop.call_soon_threadsafe(running.loop.stop)
    assert sorted(map(str, results)) == sorted(["ok", str(grpc.StatusCode.UNAVAILABLE),
                                                str(grpc.StatusCode.UNAVAILABLE)])
    assert max(answered_after_stop) < 1.0  # the queued ones were refused at once, not after the drain window


def test_a_second_server_on_the_same_port_fails(server, small_repository):
    port = server.address.rsplit(":", 1)[1]
    with pytest.raises(OSError, match="already in use"):
        asyncio.run(create_server(small_repository, address=f"127.0.0.1:{port}", load=False))


def test_asking_for_cuda_without_it_fails_loudly(small_repository):
    from onnxplain.explainers.model import available_providers

    if "CUDAExecutionProvider" in available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(FailedPrecondition, match="CUDAExecutionProvider is not available"):
        asyncio.run(create_server(small_repository, providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
                                  load=False))


# 12. auth hygiene -------------------------------------------------------------------------------


def test_the_admin_token_alone_loads_and_unloads(small_repository):
    running = ServerThread(small_repository, token="explain-token", admin_token="admin-token")
    try:
        with Client(running.address, token="explain-token") as user:
            assert len(user.predict("linear", small_image(), top_k=1)) == 1
            with pytest.raises(grpc.RpcError) as info:
                user.load_model("linear")
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and "admin token" in info.value.details()
        with Client(running.address, token="admin-token") as admin:
            assert admin.load_model("linear").state == model_pb2.MODEL_STATE_READY
        with Client(running.address, token="wrong") as stranger:
            with pytest.raises(grpc.RpcError) as info:
                stranger.list_models()
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        running.stop()


def test_tokens_come_from_files_or_the_environment(tmp_path, monkeypatch):
    from onnxplain.server.security import read_secret

    (tmp_path / "token").write_text("from-file\nsecond line, ignored\n")
    assert read_secret(None, str(tmp_path / "token"), "ONNXPLAIN_TOKEN") == "from-file"
    monkeypatch.setenv("ONNXPLAIN_TOKEN", "from-env")
    assert read_secret(None, None, "ONNXPLAIN_TOKEN") == "from-env"
    assert read_secret("from-flag", None, "ONNXPLAIN_TOKEN") == "from-flag"


# 13. a model that would allocate gigabytes is refused at load ---------------------------------


def test_a_tiny_upload_that_allocates_gigabytes_is_refused(client):
    """289 bytes of ConstantOfShape(256M floats) cost 2.6 GB at load."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [1], [256 * 2**20])
    weights = helper.make_tensor("W", TensorProto.FLOAT, [48, 2], np.ones(96, np.float32))
    graph = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["shape"], ["big"]),
         helper.make_node("ReduceSum", ["big"], ["total"], keepdims=1),
         helper.make_node("Flatten", ["x"], ["flat"]),
         helper.make_node("MatMul", ["flat", "W"], ["logits"]),
         helper.make_node("Add", ["logits", "total"], ["y"])],
        "bomb", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], initializer=[shape, weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        client.load_model("bomb", onnx_model=model.SerializeToString())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "MiB" in info.value.details()
    assert time.monotonic() - started < 5


def test_the_same_bomb_inside_a_model_local_function_is_refused(client):
    """The guard infers shapes on the model's skeleton, which must carry the model-local functions: without
    them the function's 1.5 GB tensor went unseen and the upload was accepted."""
    body = [helper.make_node("Constant", [], ["shape"], value=helper.make_tensor("s", TensorProto.INT64, [2],
                                                                                   [20000, 20000])),
            helper.make_node("ConstantOfShape", ["shape"], ["big"])]
    bomb = helper.make_function("local", "Big", [], ["big"], body, [helper.make_opsetid("", 13)])
    weights = helper.make_tensor("W", TensorProto.FLOAT, [48, 2], np.ones(96, np.float32))
    graph = helper.make_graph(
        [helper.make_node("Big", [], ["big"], domain="local"),
         helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
         helper.make_node("Flatten", ["x"], ["flat"]),
         helper.make_node("MatMul", ["flat", "W"], ["logits"]),
         helper.make_node("Add", ["logits", "total"], ["y"])],
        "bomb", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], initializer=[weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("local", 1)],
                              functions=[bomb])
    with pytest.raises(grpc.RpcError) as info:
        client.load_model("function_bomb", onnx_model=model.SerializeToString())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "1,526 MiB" in info.value.details()


# 14. a sequential client never meets its own previous request -----------------------------------


def test_a_strictly_sequential_client_is_never_refused(server, client):
    """--max-concurrent 1 --max-queue 0: 4 of 60 sequential calls got RESOURCE_EXHAUSTED."""
    for _ in range(100):
        client.explain("linear", small_image(), "occlusion", params={"window": 8, "stride": 8})


# 9 and 11, as an operator sees them: a real process, SIGTERM, a second server on the same port -------


def test_sigterm_drains_visibly_and_exits_by_the_grace_period(repository):
    """On SIGTERM, health was refused within 50 ms (load balancers never saw NOT_SERVING), and a server
    busy loading exited 25.6 s after the signal with --grace 5."""
    import signal
    import subprocess
    import sys

    from test_cli import free_port

    port = free_port()
    command = [str(Path(sys.executable).parent / "onnxplain"), "serve", "--models", str(repository), "--host",
               "127.0.0.1", "--port", str(port), "--drain-seconds", "1", "--grace", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    address = f"127.0.0.1:{port}"
    try:
        assert wait_until(lambda: _serving(address), timeout=90), "the server did not become ready"
        clash = subprocess.run([*command[:-4]], capture_output=True, text=True, timeout=90)
        assert clash.returncode == 1 and "already in use" in clash.stderr
        with Client(address, timeout=60) as c:
            stream = c.explain_stream("efficientnet_lite0", small_image_224(), "occlusion",
                                      params={"window": 4, "stride": 2})
            next(stream)  # accepted: the work is running
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            time.sleep(0.3)
            assert health(address) == health_pb2.HealthCheckResponse.NOT_SERVING  # answered during the drain
            with pytest.raises(grpc.RpcError):
                for _ in stream:
                    pass
        assert process.wait(timeout=15) == 0
        assert time.monotonic() - signalled < 1 + 2 + 2.5  # drain + grace + a margin for the interpreter's exit
    finally:
        if process.poll() is None:
            process.kill()


def _serving(address: str) -> bool:
    try:
        return health(address) == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


# Found by review after the first round of fixes -------------------------------------------------


def test_an_admin_token_without_a_token_is_refused(small_repository):
    with pytest.raises(ValueError, match="admin token needs a token"):
        asyncio.run(create_server(small_repository, admin_token="admin", load=False))


def test_unloading_a_model_while_it_loads_is_refused_instead_of_undone(server, client, small_repository, monkeypatch):
    repository = server.app.repository
    original = repository._read_from_directory

    def slow(directory):
        time.sleep(1.0)
        return original(directory)

    monkeypatch.setattr(repository, "_read_from_directory", slow)
    reload = threading.Thread(target=client.load_model, args=("linear",))
    reload.start()
    assert wait_until(lambda: repository.entry("linear").loading, timeout=5)
    with Client(server.address, retries=False) as impatient, pytest.raises(grpc.RpcError) as info:
        impatient.unload_model("linear")  # (with retries, the client would try again after the load)
    reload.join()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "loading" in info.value.details()
    assert client.get_model("linear").state == model_pb2.MODEL_STATE_READY


def test_queued_work_whose_caller_left_is_no_longer_counted():
    from onnxplain.server.workers import WorkPool

    async def run():
        pool = WorkPool(max_concurrent=1, max_queue=4)
        release = threading.Event()
        busy = asyncio.ensure_future(pool.call(release.wait, 10))
        await asyncio.sleep(0.1)
        waiting = [asyncio.ensure_future(pool.call(time.sleep, 0)) for _ in range(3)]
        await asyncio.sleep(0.1)
        queued_before = pool.queued
        for task in waiting:
            task.cancel()
        await asyncio.sleep(0.1)
        release.set()
        await busy
        await asyncio.sleep(0.1)
        pool.shutdown()
        return queued_before, pool.queued, pool.admitted

    assert asyncio.run(run()) == (3, 0, 0)


def test_files_beside_a_model_may_not_be_symlinks_out_of_its_folder(tmp_path):
    from onnxplain.explainers.model.sources import labels_file

    (tmp_path / "secret.txt").write_text("a\nb\n")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "labels.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(InvalidArgument, match="outside the model's folder"):
        labels_file(tmp_path / "m")


def test_odd_version_folder_names_are_not_versions(tmp_path):
    from onnxplain.server.triton import versions

    for name in ("1", "3", "\u00b2", "x", "0"):
        (tmp_path / name).mkdir()
    assert versions(tmp_path) == [1, 3]


def test_a_model_that_overflows_is_an_error_not_a_nan_result(tmp_path):
    """Finite input, scores that overflow to inf: predict and explain say so (library and server), never OK."""
    from onnxplain.explainers import Objective, OnnxClassifier, explain_once
    from onnxplain.explainers.errors import NonFiniteResult

    weights = np.full((2, 3, 16, 16), 3e37, np.float32)
    classifier = OnnxClassifier(builders.linear(weights))
    image = np.ones((3, 16, 16), np.float32)
    with pytest.raises(NonFiniteResult, match="NaN or infinite scores"):
        classifier.predict(image[None])
    with pytest.raises(NonFiniteResult, match="occlusion produced NaN or infinite"):
        explain_once(classifier, image, "occlusion", Objective.for_classes([0], 2), {"window": 8, "stride": 8})
    (tmp_path / "overflow").mkdir()
    onnx.save(builders.linear(weights), tmp_path / "overflow" / "model.onnx")
    running = ServerThread(tmp_path)
    try:
        with Client(running.address, timeout=60) as c:
            with pytest.raises(grpc.RpcError) as info:
                c.predict("overflow", image[None])
            assert info.value.code() == grpc.StatusCode.INTERNAL and "infinite scores" in info.value.details()
    finally:
        running.stop()


def test_non_finite_weights_and_images_are_refused_by_the_library_too():
    from onnxplain.explainers import Objective, OnnxClassifier, explain_once

    with pytest.raises(InvalidArgument, match="finite"):
        Objective(np.array([[np.nan, 1.0]], np.float32), (1,))
    classifier = OnnxClassifier(builders.linear(LINEAR_WEIGHTS))
    image = np.full((3, 16, 16), np.nan, np.float32)
    with pytest.raises(InvalidArgument, match="NaN or infinite"):
        explain_once(classifier, image, "occlusion", Objective.for_classes([0], 3), {"window": 8, "stride": 8})
