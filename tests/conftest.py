"""Shared fixtures: tiny analytic models, the bundled model, an in-process server on port 0."""

from __future__ import annotations

import asyncio
import io
import shutil
import threading
from pathlib import Path

import builders
import numpy as np
import onnx
import pytest
from PIL import Image
from skimage import data

from explainers import ModelConfig, OnnxClassifier

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "models" / "efficientnet_lite0"


@pytest.fixture(scope="session")
def bundled() -> OnnxClassifier:
    return OnnxClassifier.load(BUNDLED / "model.onnx", config=ModelConfig.from_file(BUNDLED / "config.json"),
                               name="efficientnet_lite0")


def png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def coffee_png() -> bytes:
    return png(data.coffee())


@pytest.fixture(scope="session")
def chelsea_png() -> bytes:
    return png(data.chelsea())


class ServerThread:
    """An onnxplain server on 127.0.0.1:0 with its event loop on a background thread."""

    def __init__(self, models: Path, **kwargs):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        from server.app import create_server

        self.app = self.run(create_server(models, **kwargs))
        self.address = f"127.0.0.1:{self.app.port}"

    def run(self, coroutine, timeout: float = 120):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.run(self.app.stop(grace=1))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="session")
def repository(tmp_path_factory) -> Path:
    """A model repository: the bundled model, a small linear model, and a corrupt one."""
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(BUNDLED, root / "efficientnet_lite0")
    rng = np.random.default_rng(1)
    (root / "linear").mkdir()
    onnx.save(builders.linear(rng.standard_normal((4, 3, 32, 32)).astype(np.float32)), root / "linear" / "model.onnx")
    (root / "linear" / "config.json").write_text('{"labels": ["a", "b", "c", "d"]}')
    (root / "corrupt").mkdir()
    (root / "corrupt" / "model.onnx").write_bytes(b"this is not an onnx model")
    return root
