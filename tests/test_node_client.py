"""The cross-language check: a Node.js client generated from proto/ at run time talks to a server.

The example is copied out of the repository with nothing but ``proto/onnxplain/v1`` beside it and
installed from its own package.json, as a user would. Needs node and npm (the npm registry serves
@grpc/grpc-js and @grpc/proto-loader); skipped, saying so, where they are missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from serving import ServerThread

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "client" / "examples" / "node"
pytestmark = pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")), reason="node/npm not installed")


@pytest.fixture(scope="module")
def client_folder(tmp_path_factory) -> Path:
    """The example alone, outside the repository: its two files, the contract's .proto files, npm install."""
    folder = tmp_path_factory.mktemp("node-client")
    for name in ("explain.js", "package.json"):
        shutil.copy(EXAMPLE / name, folder / name)
    shutil.copytree(ROOT / "proto" / "onnxplain" / "v1", folder / "proto" / "onnxplain" / "v1",
                    ignore=shutil.ignore_patterns("*.py", "*.pyi", "__pycache__"))
    subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund"], cwd=folder, check=True, timeout=300)
    return folder


def test_a_node_client_predicts_streams_and_gets_typed_errors(client_folder, repository, tmp_path, coffee_png):
    server = ServerThread(repository)
    try:
        image = tmp_path / "coffee.png"
        image.write_bytes(coffee_png)
        run = subprocess.run(["npm", "start", "--silent", "--", server.address, "efficientnet_lite0", str(image)],
                             cwd=client_folder, capture_output=True, text=True, timeout=300)
    finally:
        server.stop()
    assert run.returncode == 0, run.stderr
    predict, result, error = (json.loads(line) for line in run.stdout.splitlines())
    assert predict == {"predict": "espresso"}
    assert result["request_id"] == "node-1" and result["kinds"][0] == "accepted" and result["kinds"][-1] == "result"
    assert result["datatype"] == "FP32" and result["shape"] == [1, 224, 224] and result["bytes"] == 224 * 224 * 4
    assert result["label"] == "espresso" and result["overlay_png_bytes"] > 1000 and result["forward"] == 4 * 4 + 2
    assert error["error_code"] == 3 and "params.window" in error["error_details"]  # INVALID_ARGUMENT
