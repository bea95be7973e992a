"""An in-process onnxplain server for tests."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path


class ServerThread:
    """An onnxplain server on 127.0.0.1:0 with its event loop on a background thread."""

    def __init__(self, models: Path, **kwargs):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        from onnxplain.server.app import create_server

        self.app = self.run(create_server(models, **kwargs))
        self.address = f"127.0.0.1:{self.app.port}"

    def run(self, coroutine, timeout: float = 120):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.run(self.app.stop(grace=1))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def wait_for(predicate, timeout: float) -> bool:
    """Poll ``predicate`` every 50 ms until it holds or ``timeout`` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
