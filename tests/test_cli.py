"""The ``onnxplain`` CLI end to end against a real server process."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

ONNXPLAIN = str(Path(sys.executable).parent / "onnxplain")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(repository):
    port = free_port()
    process = subprocess.Popen([ONNXPLAIN, "serve", "--models", str(repository), "--host", "127.0.0.1",
                                "--port", str(port), "--grace", "5", "--drain-seconds", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
    yield address, process
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0  # graceful shutdown


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ONNXPLAIN, *args], capture_output=True, text=True, timeout=120)


def test_models_methods_predict(served, tmp_path, coffee_png):
    address, _ = served
    models = cli("models", "--server", address)
    assert models.returncode == 0
    assert "efficientnet_lite0" in models.stdout and "ready" in models.stdout
    assert "corrupt" in models.stdout and "failed" in models.stdout and "not an ONNX model" in models.stdout
    methods = cli("methods", "--server", address)
    assert "occlusion" in methods.stdout and "window=16" in methods.stdout
    image = tmp_path / "coffee.png"
    image.write_bytes(coffee_png)
    predict = cli("predict", str(image), "--server", address, "--model", "efficientnet_lite0", "--top-k", "2")
    assert predict.returncode == 0 and predict.stdout.splitlines()[0].split()[-1] == "espresso"


def test_explain_writes_heatmaps_and_an_overlay_on_the_original(served, tmp_path, chelsea_png):
    address, _ = served
    image = tmp_path / "chelsea.png"
    image.write_bytes(chelsea_png)
    out = tmp_path / "out"
    run = cli("explain", str(image), "--server", address, "--model", "efficientnet_lite0", "--method", "occlusion",
              "--target", "282", "--param", "window=32", "--param", "stride=16", "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert "evaluations" in run.stderr  # the progress bar and the summary
    heatmap = np.load(out / "chelsea_occlusion_282.npy")
    original = np.load(out / "chelsea_occlusion_282_original.npy")
    assert heatmap.shape == (224, 224) and original.shape == (300, 451)
    assert Image.open(out / "chelsea_occlusion_282.png").size == (451, 300)


def test_cli_reports_errors_without_a_traceback(served, tmp_path, chelsea_png):
    address, _ = served
    image = tmp_path / "chelsea.png"
    image.write_bytes(chelsea_png)
    run = cli("explain", str(image), "--server", address, "--model", "efficientnet_lite0", "--param", "window=0")
    assert run.returncode == 1
    assert "INVALID_ARGUMENT" in run.stderr and "params.window" in run.stderr and "Traceback" not in run.stderr


def test_gradient_methods_take_typed_parameters_and_several_targets(served, tmp_path, coffee_png):
    """SmoothGrad around Integrated Gradients (an int, a float, strings and an enum through --param)
    for the two best classes; then Grad-CAM++ on a named layer."""
    address, _ = served
    image = tmp_path / "coffee.png"
    image.write_bytes(coffee_png)
    out = tmp_path / "out"
    run = cli("explain", str(image), "--server", address, "--model", "efficientnet_lite0", "--method", "smoothgrad",
              "--top-k", "2", "--param", "samples=2", "--param", "noise_level=0.1", "--param",
              "inner=integrated_gradients", "--param", "ig_steps=4", "--param", "ig_rule=trapezoid", "-o", str(out))
    assert run.returncode == 0, run.stderr
    heatmaps = sorted(out.glob("coffee_smoothgrad_*[0-9].npy"))
    assert len(heatmaps) == 2 and "coffee_smoothgrad_967.npy" in [path.name for path in heatmaps]
    assert all(np.isfinite(np.load(path)).all() and np.load(path).shape == (224, 224) for path in heatmaps)
    # 2 targets × 2 samples × 4 steps, + 1 forward for f(x) and 1 to find the top-2 classes: all planned
    assert "34 evaluations planned" in run.stderr and "18 forward + 16 backward" in run.stderr
    run = cli("explain", str(image), "--server", address, "--model", "efficientnet_lite0", "--method",
              "grad_cam_plus_plus", "--param", "layer=/_swish_1/Clip_output_0", "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert np.load(out / "coffee_grad_cam_plus_plus_967.npy").shape == (224, 224)


def test_contrast_loss_flag(served, tmp_path, coffee_png):
    """--contrast-loss cross_entropy reaches the objective (another map, the loss in the JSON report); a value
    outside the choices is refused by the parser naming them."""
    address, _ = served
    image = tmp_path / "coffee.png"
    image.write_bytes(coffee_png)
    maps, reports = {}, {}
    for loss in ("difference", "cross_entropy"):
        out = tmp_path / loss
        run = cli("explain", str(image), "--server", address, "--model", "efficientnet_lite0", "--method", "grad_cam",
                  "--target", "967", "--contrast", "968", "--contrast-loss", loss, "--json", "-o", str(out))
        assert run.returncode == 0, run.stderr
        maps[loss], reports[loss] = np.load(out / "coffee_grad_cam_967.npy"), json.loads(run.stdout)
    assert not np.allclose(maps["difference"], maps["cross_entropy"])
    target = reports["cross_entropy"]["images"][0]["targets"][0]
    assert (target["contrast_class"], target["contrast_loss"]) == (968, "cross_entropy")
    run = cli("explain", str(image), "--server", address, "--contrast", "968", "--contrast-loss", "hinge")
    assert run.returncode == 2 and "choose from 'difference', 'cross_entropy'" in run.stderr
