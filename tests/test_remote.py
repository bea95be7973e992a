"""A model served by a real Open Inference Protocol server as the black box (``remote.json``).

The server is KServe's own ``ModelServer`` serving an ONNX model through onnxruntime (tests/peers/
kserve_onnx_server.py), started per test module on loopback ports. KServe pins protobuf < 7, so it runs
in its own virtualenv (``.venv-kserve``, made by ``make test``) as a separate process, as a user's server
would. The same model is also loaded locally: remote maps must equal local ones exactly.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import builders
import grpc
import numpy as np
import onnx
import pytest
from serving import ServerThread, wait_for

from onnxplain.client import Client
from onnxplain.client.client import Progress
from onnxplain.explainers import ModelConfig, Objective, OnnxClassifier, RunContext, explain_once
from onnxplain.explainers.errors import Cancelled, FailedPrecondition, InvalidArgument, InvalidModel, Unavailable
from onnxplain.explainers.model.remote import RemoteClassifier, RemoteSignature
from onnxplain.oip import grpc_service_pb2 as oip_pb2
from onnxplain.oip import grpc_service_pb2_grpc as oip_grpc
from onnxplain.server.app import TlsFiles
from onnxplain.server.remote import OipEndpoint, RemoteSpec
from onnxplain.server.repository import ModelRepository

ROOT = Path(__file__).resolve().parent.parent
KSERVE_PYTHON = ROOT / ".venv-kserve" / "bin" / "python"
SIZE, CLASSES = 16, 3
CONFIG = {"labels": ["cat", "dog", "cup"], "max_batch": 4,
          "preprocessing": {"resize": SIZE, "scale": 1 / 255, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
WHITE_BOX = ("grad_cam", "integrated_gradients", "score_cam", "fullgrad", "saliency")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def kserve_server(model_path: Path, calls: Path):
    """KServe serving ``model_path`` as "cnn"; yields (address, process). Always killed on the way out."""
    grpc_port = free_port()
    address = f"127.0.0.1:{grpc_port}"
    log = calls.with_suffix(".log")  # a file, not a pipe: KServe logs every call, and a full pipe would block it
    with log.open("ab") as output:
        process = subprocess.Popen([KSERVE_PYTHON, ROOT / "tests" / "peers" / "kserve_onnx_server.py", model_path,
                                    "cnn", str(grpc_port), str(free_port()), calls], stdout=output, stderr=output)
    try:
        with grpc.insecure_channel(address) as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)

            def ready() -> bool:
                if process.poll() is not None:
                    raise RuntimeError(f"KServe exited: {log.read_text(errors='replace')[-2000:]}")
                try:
                    return stub.ServerReady(oip_pb2.ServerReadyRequest(), timeout=1).ready
                except grpc.RpcError:
                    return False

            if not wait_for(ready, timeout=60):
                raise RuntimeError("KServe did not become ready within 60 s")
        yield address, process
    finally:
        process.kill()
        process.wait(10)


def calls_made(calls: Path) -> list[int]:
    """The batch size of every ModelInfer KServe answered so far."""
    return [int(line) for line in calls.read_text().split()] if calls.exists() else []


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A repository with the model twice — "local" (model.onnx) and "remote" (remote.json) — and KServe serving it."""
    if not KSERVE_PYTHON.exists():
        pytest.skip("KServe's virtualenv is missing: `make test` creates .venv-kserve")
    root = tmp_path_factory.mktemp("remote")
    model = builders.small_cnn(size=SIZE, classes=CLASSES, seed=4)
    for name in ("local", "remote"):
        (root / name).mkdir()
        (root / name / "config.json").write_text(json.dumps(CONFIG))
    onnx.save(model, root / "local" / "model.onnx")
    calls = root / "calls.txt"
    with kserve_server(root / "local" / "model.onnx", calls) as (address, _):
        (root / "remote" / "remote.json").write_text(json.dumps({"address": address, "model": "cnn",
                                                                 "max_in_flight": 2}))
        yield root, address, calls


class InProcessEndpoint:
    """An :class:`~onnxplain.explainers.model.remote.Endpoint` over an onnxruntime session in this process,
    slowed to ``seconds`` a request, recording how many requests ran at once and which saw their stop."""

    def __init__(self, model: onnx.ModelProto, *, max_in_flight: int, seconds: float):
        import onnxruntime as ort

        self.session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        self.max_in_flight, self.seconds = max_in_flight, seconds
        self.signature = RemoteSignature("x", "FP32", (None, 3, SIZE, SIZE), "logits", (None, CLASSES), "in process")
        self.lock, self.running, self.most, self.stopped = threading.Lock(), 0, 0, 0

    def forward(self, batch, stop):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            if stop.wait(self.seconds):
                with self.lock:
                    self.stopped += 1
                raise Cancelled("stopped")
            return self.session.run(["logits"], {"x": batch})[0]
        finally:
            with self.lock:
                self.running -= 1

    def close(self) -> None:
        pass


def test_requests_in_flight_are_bounded_and_a_cancelled_run_stops_them(image):
    model = builders.small_cnn(size=SIZE, classes=CLASSES, seed=4)
    endpoint = InProcessEndpoint(model, max_in_flight=3, seconds=0.05)
    remote = RemoteClassifier(endpoint, config=ModelConfig(max_batch=2), name="slow")
    batch = np.stack([image * k for k in np.linspace(-1, 1, 20)])
    np.testing.assert_allclose(remote.predict(batch), OnnxClassifier(model).predict(batch), rtol=1e-6)
    assert endpoint.most == 3  # 10 requests of 2 rows, 3 at a time
    endpoint.seconds = 30.0
    context = RunContext()
    threading.Timer(0.3, context.cancel).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        remote.predict(batch, context=context)
    assert time.monotonic() - started < 2  # not 30 s: the requests in flight saw their stop
    assert wait_for(lambda: endpoint.stopped == 3 and endpoint.running == 0, timeout=5)
    remote.close()


@pytest.fixture(scope="module")
def models(served):
    root, address, _ = served
    config = ModelConfig.from_dict(CONFIG)
    local = OnnxClassifier.load(root / "local" / "model.onnx", config=config, name="local")
    remote = RemoteClassifier(OipEndpoint(RemoteSpec(address, "cnn", max_in_flight=2)), config=config, name="remote")
    yield local, remote
    remote.close()


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(3).uniform(-2, 2, (3, SIZE, SIZE)).astype(np.float32)


def test_remote_reads_the_served_signature_and_predicts_what_the_model_predicts(models, image):
    local, remote = models
    info = remote.info
    assert (info.input_name, info.output_name, info.num_classes, info.layout) == ("x", "logits", CLASSES, "NCHW")
    assert info.labels == ("cat", "dog", "cup") and remote.layers() == [] and remote.cam_layer is None
    assert "served over OIP: model 'cnn' at 127.0.0.1:" in str(info.provenance["endpoint"])
    batch = np.stack([image, -image, image * 0.5, image + 1, image - 1])  # 5 rows: two requests of 4 and 1
    np.testing.assert_array_equal(remote.predict(batch), local.predict(batch))


@pytest.mark.parametrize("method, params", [
    ("occlusion", {"window": 4, "stride": 2}),
    ("rise", {"masks": 64, "grid": 4}),
    ("lime", {"segments": 8, "samples": 40}),
])
def test_black_box_maps_of_the_remote_model_equal_the_local_ones(models, image, method, params):
    local, remote = models
    objective = Objective.for_classes([0, 2], CLASSES)
    expected = explain_once(local, image, method, objective, params, seed=7)
    got = explain_once(remote, image, method, objective, params, seed=7)
    np.testing.assert_array_equal(got.heatmaps, expected.heatmaps)
    assert got.heatmaps.std() > 0  # a map, not a constant


def test_extremal_perturbation_of_a_remote_model_takes_finite_differences(models, image):
    local, remote = models
    objective = Objective.for_classes([1], CLASSES)
    params = {"areas": (0.2,), "iterations": 3, "directions": 2}
    got = explain_once(remote, image, "extremal_perturbation", objective, params, seed=5)  # gradient "auto"
    assert got.extras["exact_gradient"] == 0.0
    expected = explain_once(local, image, "extremal_perturbation", objective,
                            {**params, "gradient": "finite_differences"}, seed=5)
    np.testing.assert_array_equal(got.heatmaps, expected.heatmaps)


@pytest.mark.parametrize("method", WHITE_BOX)
def test_white_box_methods_are_refused_naming_why(models, image, method):
    _, remote = models
    with pytest.raises(FailedPrecondition) as info:
        explain_once(remote, image, method, Objective.for_classes([0], CLASSES))
    assert "an OIP endpoint exposes only its outputs" in str(info.value)
    assert "model 'remote' is served elsewhere (model 'cnn' at 127.0.0.1:" in str(info.value)


def test_a_remote_entry_is_refused_with_the_field_named(served, tmp_path):
    _, address, _ = served
    with pytest.raises(InvalidArgument, match=r"remote.max_in_flight: 0; allowed: \[1, 64\]"):
        RemoteSpec.from_dict({"address": address, "model": "cnn", "max_in_flight": 0}, lambda field, name: b"")
    nulls = {"address": address, "model": "cnn", "version": None, "input": None, "output": None, "tls": None}
    assert RemoteSpec.from_dict(nulls, lambda field, name: b"") == RemoteSpec(address, "cnn")  # null = the default
    with pytest.raises(InvalidArgument, match="remote.model: missing"):
        RemoteSpec.from_dict({"address": address}, lambda field, name: b"")
    with pytest.raises(InvalidArgument, match="remote: unknown keys adress"):
        RemoteSpec.from_dict({"adress": address, "model": "cnn"}, lambda field, name: b"")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "remote.json").write_text(json.dumps({"address": address, "model": "cnn",
                                                           "token_file": "../secret"}))
    (tmp_path / "secret").write_text("t")
    with pytest.raises(InvalidArgument, match="remote.token_file: '../secret' is outside the model folder"):
        RemoteSpec.from_folder(tmp_path / "m", Path.resolve)
    with pytest.raises(InvalidModel, match="model 'cnn' at .* has no output 'probs'; it has logits"):
        OipEndpoint(RemoteSpec(address, "cnn", output="probs"))


def test_over_grpc_the_remote_entry_serves_the_local_maps(served):
    root, _, _ = served
    png = builders.png(np.random.default_rng(8).integers(0, 256, (24, 20, 3), dtype=np.uint8))
    running = ServerThread(root)
    try:
        with Client(running.address, timeout=60) as client:
            names = {m.name: m for m in client.list_models()}
            assert names["remote"].state == names["local"].state
            info = client.get_model("remote")  # GetModel lists CAM layers: a remote model has none
            assert not info.layers and info.cam_layer == "" and info.num_classes == CLASSES
            where = {p.setting: p.detail for p in info.provenance}["endpoint"]
            assert where.startswith("served over OIP: model 'cnn' at 127.0.0.1:")
            for method, params in (("occlusion", {"window": 4, "stride": 4}), ("rise", {"masks": 32, "grid": 4})):
                expected = client.explain("local", png, method, classes=[1], params=params, seed=3)
                got = client.explain("remote", png, method, classes=[1], params=params, seed=3)
                np.testing.assert_array_equal(got.heatmaps, expected.heatmaps)
            with pytest.raises(grpc.RpcError) as info:
                client.explain("remote", png, "grad_cam", classes=[1])
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "needs the graph (layers, activations) of the model" in info.value.details()
    finally:
        running.stop()


def test_cancelling_an_explanation_stops_the_remote_calls(served):
    root, _, calls = served
    png = builders.png(np.random.default_rng(9).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    planned = 20000 // CONFIG["max_batch"]  # requests the whole RISE would make
    running = ServerThread(root)
    try:
        with Client(running.address, timeout=60) as client:
            before = len(calls_made(calls))
            stream = client.explain_stream("remote", png, "rise", classes=[0], seed=1,
                                           params={"masks": 20000, "grid": 4, "convergence_tolerance": 0})
            for event in stream:
                if isinstance(event, Progress):
                    break
            stream.close()  # cancels the RPC
            assert wait_for(lambda: running.app.pool.admitted == 0, timeout=10)
            settled = len(calls_made(calls))
            time.sleep(1.0)
            assert len(calls_made(calls)) == settled  # nothing more reaches KServe
            assert settled - before < planned // 2
    finally:
        running.stop()


def test_a_server_killed_mid_request_is_unavailable_after_bounded_retries(served, tmp_path):
    root, _, _ = served
    calls = tmp_path / "calls.txt"
    with kserve_server(root / "local" / "model.onnx", calls) as (address, process):
        remote = RemoteClassifier(OipEndpoint(RemoteSpec(address, "cnn", retries=2, max_in_flight=1)),
                                  config=ModelConfig.from_dict(CONFIG), name="doomed")
        image = np.zeros((3, SIZE, SIZE), np.float32)
        with ThreadPoolExecutor(1) as pool:
            job = pool.submit(explain_once, remote, image, "rise", Objective.for_classes([0], CLASSES),
                              {"masks": 20000, "grid": 4, "convergence_tolerance": 0})
            assert wait_for(lambda: len(calls_made(calls)) > 10, timeout=30)
            process.kill()
            killed = time.monotonic()
            with pytest.raises(Unavailable, match="model 'cnn' at .*: UNAVAILABLE after 3 attempts"):
                job.result(timeout=30)
        assert time.monotonic() - killed < 10  # backoff 0.1 s, 0.2 s (jittered) and the reconnects
        answered = len(calls_made(calls))  # the request in flight at the kill may or may not have arrived
        assert answered + 2 <= remote.endpoint.calls <= answered + 3  # it, then 2 retries, then no more
        remote.close()



@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificate")
def test_tls_and_token_options_reach_an_endpoint_that_requires_them(served, tmp_path):
    """onnxplain's own OIP endpoint with TLS and a bearer token as the remote: the entry's ``tls.ca`` and
    ``token_file`` (files of the model folder) get through; without the token the endpoint refuses."""
    root, _, _ = served
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", tmp_path / "key.pem",
                    "-out", tmp_path / "cert.pem"], check=True, capture_output=True, timeout=60)
    served_root = tmp_path / "served"
    shutil.copytree(root / "local", served_root / "cnn")
    running = ServerThread(served_root, token="s3cret", tls=TlsFiles(cert=tmp_path / "cert.pem", key=tmp_path / "key.pem"))
    try:
        folder = tmp_path / "repository" / "secure"
        folder.mkdir(parents=True)
        shutil.copy(tmp_path / "cert.pem", folder / "ca.pem")
        (folder / "token").write_text("s3cret\n")
        (folder / "config.json").write_text(json.dumps(CONFIG))
        entry = {"address": running.address, "model": "cnn", "tls": {"ca": "ca.pem"}}
        (folder / "remote.json").write_text(json.dumps({**entry, "token_file": "token"}))
        repository = ModelRepository(tmp_path / "repository")
        assert repository.names() == ["secure"]
        remote = repository.load("secure").classifier
        local = OnnxClassifier.load(root / "local" / "model.onnx", config=ModelConfig.from_dict(CONFIG))
        batch = np.random.default_rng(5).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
        np.testing.assert_array_equal(remote.predict(batch), local.predict(batch))
        (folder / "remote.json").write_text(json.dumps(entry))
        with pytest.raises(FailedPrecondition, match="refused the request: .*UNAUTHENTICATED after 1 attempt"):
            repository.load("secure")
    finally:
        running.stop()
