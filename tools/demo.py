#!/usr/bin/env python3
"""``make demo``: serve the bundled model, explain three real photos through the CLI (occlusion,
a black-box method, and Grad-CAM, through the gradient graph), stop.

Writes the photos (from scikit-image's bundled samples) to ``OUT/images/`` and, for each, the
heatmaps (.npy, model-input and original grids) and a PNG overlay on the original photo to ``OUT/``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PHOTOS = {"chelsea": data.chelsea, "coffee": data.coffee, "rocket": data.rocket}


def wait_until_serving(address: str, server: subprocess.Popen, timeout: float = 120.0) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if server.poll() is not None:
                sys.exit(f"the server exited with code {server.returncode}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.5)
    sys.exit(f"the server did not become healthy within {timeout:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    parser.add_argument("--methods", default="occlusion,grad_cam", help="comma-separated method names")
    args = parser.parse_args()
    images = args.out / "images"
    images.mkdir(parents=True, exist_ok=True)
    for name, load in PHOTOS.items():
        Image.fromarray(load()).save(images / f"{name}.png")

    address = f"localhost:{args.port}"
    cli = [str(BIN / "onnxplain")]
    server = subprocess.Popen([*cli, "serve", "--models", str(ROOT / "models"), "--host", "127.0.0.1",
                               "--port", str(args.port), "--drain-seconds", "0"])  # no load balancer to tell
    try:
        wait_until_serving(address, server)
        for name in PHOTOS:
            print(f"\n== {name}", flush=True)
            subprocess.run([*cli, "predict", str(images / f"{name}.png"), "--server", address, "--top-k", "3"], check=True)
            for method in args.methods.split(","):
                subprocess.run([*cli, "explain", str(images / f"{name}.png"), "--server", address,
                                "--method", method, "-o", str(args.out)], check=True)
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(f"\noverlays written to {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
