"""The Open Inference Protocol endpoint, called by the real ``tritonclient`` (Triton's Python client).

tritonclient pins protobuf < 7 and ships its own copy of the protocol's stubs (the same proto package,
which cannot share a descriptor pool with ours), so it runs in its own virtualenv
(``.venv-tritonclient``, made by ``make test``) as a separate process, as a user's client would.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import builders
import numpy as np
import onnx
import pytest
from serving import ServerThread

from onnxplain.explainers import OnnxClassifier
from onnxplain.server.oip import decode_input, input_shape

ROOT = Path(__file__).resolve().parent.parent
TRITON_PYTHON = ROOT / ".venv-tritonclient" / "bin" / "python"
pytestmark = pytest.mark.skipif(not TRITON_PYTHON.exists(),
                                reason="tritonclient's virtualenv is missing: `make test` creates .venv-tritonclient")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("oip")
    rng = np.random.default_rng(11)
    (root / "nchw").mkdir()
    onnx.save(builders.linear(rng.standard_normal((4, 3, 8, 8)).astype(np.float32)), root / "nchw" / "model.onnx")
    (root / "nhwc").mkdir()
    onnx.save(builders.linear(rng.standard_normal((5, 3, 8, 8)).astype(np.float32), layout="NHWC"),
              root / "nhwc" / "model.onnx")
    running = ServerThread(root)
    yield root, running
    running.stop()


def run_triton(address: str, model: str, batch: np.ndarray, tmp_path: Path) -> dict:
    np.save(tmp_path / "input.npy", batch)
    subprocess.run([TRITON_PYTHON, ROOT / "tests" / "peers" / "oip_client.py", address, model,
                    tmp_path / "input.npy", tmp_path / "out.json"], check=True, timeout=120, capture_output=True)
    return json.loads((tmp_path / "out.json").read_text())


@pytest.mark.parametrize("model", ["nchw", "nhwc"])
def test_tritonclient_predicts_what_onnxplain_predicts(models, model, tmp_path):
    root, running = models
    classifier = OnnxClassifier.load(root / model / "model.onnx")
    info = classifier.info
    batch = np.random.default_rng(2).standard_normal((3, *input_shape(info)[1:])).astype(np.float32)
    report = run_triton(running.address, model, batch, tmp_path)
    assert report["live"] and report["ready"] and report["model_ready"] and not report["unknown_model_ready"]
    assert report["server"]["name"] == "onnxplain"
    assert report["metadata"]["inputs"][0]["shape"] == [str(d) for d in input_shape(info)]
    assert report["metadata"]["outputs"][0]["shape"] == ["-1", str(info.num_classes)]
    canonical = batch if info.layout == "NCHW" else batch.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(report["scores"], classifier.predict(np.ascontiguousarray(canonical)), rtol=1e-6)
    assert report["response"]["id"] == "r-1" and report["response"]["model_version"] == "1"
    assert report["bad_shape"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "inputs[0]" in report["bad_shape"]["message"]


def test_typed_contents_decode_like_raw_contents(models):
    from onnxplain.oip import grpc_service_pb2 as oip_pb2

    root, _ = models
    info = OnnxClassifier.load(root / "nchw" / "model.onnx").info
    batch = np.random.default_rng(4).standard_normal((2, 3, 8, 8)).astype(np.float32)
    tensor = oip_pb2.ModelInferRequest.InferInputTensor(name=info.input_name, datatype="FP32", shape=batch.shape)
    typed = oip_pb2.ModelInferRequest(inputs=[tensor])
    typed.inputs[0].contents.fp32_contents.extend(batch.ravel())
    raw = oip_pb2.ModelInferRequest(inputs=[tensor], raw_input_contents=[batch.tobytes()])
    np.testing.assert_array_equal(decode_input(typed, info), batch)
    np.testing.assert_array_equal(decode_input(raw, info), batch)


KSERVE_PYTHON = ROOT / ".venv-kserve" / "bin" / "python"


@pytest.mark.skipif(not KSERVE_PYTHON.exists(), reason="KServe's virtualenv is missing: `make test` creates .venv-kserve")
def test_kserves_grpc_client_predicts_what_onnxplain_predicts(models, tmp_path):
    root, running = models
    classifier = OnnxClassifier.load(root / "nchw" / "model.onnx")
    batch = np.random.default_rng(6).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "input.npy", batch)
    subprocess.run([KSERVE_PYTHON, ROOT / "tests" / "peers" / "kserve_client.py", running.address, "nchw",
                    classifier.info.input_name, tmp_path / "input.npy", tmp_path / "out.json"],
                   check=True, timeout=120, capture_output=True)
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["live"] and report["ready"] and report["model_ready"] and report["id"] == "k-1"
    np.testing.assert_allclose(report["scores"], classifier.predict(batch), rtol=1e-6)
