"""The cross-language check: a Node.js client generated from proto/ at run time talks to a server.

Needs node and npm (it installs @grpc/grpc-js and @grpc/proto-loader from the npm registry into a
temporary folder); skipped, saying so, where they are missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from serving import ServerThread

EXAMPLE = Path(__file__).resolve().parent.parent / "client" / "examples" / "explain.js"
pytestmark = pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")), reason="node/npm not installed")


@pytest.fixture(scope="module")
def node_modules(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("node")
    subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(folder),
                    "@grpc/grpc-js@1", "@grpc/proto-loader@0"], check=True, timeout=300)
    return folder / "node_modules"


def test_a_node_client_predicts_streams_and_gets_typed_errors(node_modules, repository, tmp_path, coffee_png):
    server = ServerThread(repository)
    try:
        image = tmp_path / "coffee.png"
        image.write_bytes(coffee_png)
        run = subprocess.run(["node", str(EXAMPLE), server.address, "efficientnet_lite0", str(image)],
                             capture_output=True, text=True, timeout=300, env={"NODE_PATH": str(node_modules)})
    finally:
        server.stop()
    assert run.returncode == 0, run.stderr
    predict, result, error = (json.loads(line) for line in run.stdout.splitlines())
    assert predict == {"predict": "espresso"}
    assert result["request_id"] == "node-1" and result["kinds"][0] == "accepted" and result["kinds"][-1] == "result"
    assert result["datatype"] == "FP32" and result["shape"] == [1, 224, 224] and result["bytes"] == 224 * 224 * 4
    assert result["label"] == "espresso" and result["overlay_png_bytes"] > 1000 and result["forward"] == 4 * 4 + 2
    assert error["error_code"] == 3 and "params.window" in error["error_details"]  # INVALID_ARGUMENT
