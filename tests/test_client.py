"""The Python clients: retries with backoff where a retry can help (and only there), the asyncio client."""

from __future__ import annotations

import asyncio
import threading
import time

import builders
import grpc
import numpy as np
import onnx
import pytest
from serving import ServerThread

from onnxplain.client import AsyncClient, Client, Result
from onnxplain.server.limits import ServerLimits


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("client")
    (root / "linear").mkdir()
    weights = np.random.default_rng(9).standard_normal((3, 3, 8, 8)).astype(np.float32)
    onnx.save(builders.linear(weights), root / "linear" / "model.onnx")
    running = ServerThread(root, limits=ServerLimits(max_concurrent=1, max_queue=0, max_evaluations=50))
    yield running
    running.stop()


IMAGE = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)


def count_attempts(server, monkeypatch, delay: float = 0.0) -> list[float]:
    """Record each request the server starts (repository lookups), optionally holding its worker."""
    attempts: list[float] = []
    original = server.app.repository.get

    def get(name):
        attempts.append(time.monotonic())
        time.sleep(delay)
        return original(name)

    monkeypatch.setattr(server.app.repository, "get", get)
    return attempts


def test_a_busy_server_is_retried_with_backoff(server, monkeypatch):
    attempts = count_attempts(server, monkeypatch, delay=0.8)
    with Client(server.address, timeout=30) as first, Client(server.address, timeout=30) as second:
        holder = threading.Thread(target=first.predict, args=("linear", IMAGE))
        holder.start()
        while not attempts:
            time.sleep(0.01)
        started = time.monotonic()
        assert len(second.predict("linear", IMAGE, top_k=1)) == 1  # RESOURCE_EXHAUSTED, retried, served
        holder.join()
    assert len(attempts) == 2 and time.monotonic() - started > 0.5


def test_without_retries_a_busy_server_says_so(server, monkeypatch):
    attempts = count_attempts(server, monkeypatch, delay=0.8)
    with Client(server.address, timeout=30) as first, Client(server.address, retries=False) as second:
        holder = threading.Thread(target=first.predict, args=("linear", IMAGE))
        holder.start()
        while not attempts:
            time.sleep(0.01)
        with pytest.raises(grpc.RpcError) as info:
            second.predict("linear", IMAGE, top_k=1)
        holder.join()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "server busy" in info.value.details()


def test_a_limit_the_request_itself_exceeds_is_not_retried(server, monkeypatch):
    attempts = count_attempts(server, monkeypatch)
    with Client(server.address, timeout=30) as client:
        with pytest.raises(grpc.RpcError) as info:
            client.explain("linear", IMAGE, "occlusion", params={"window": 1, "stride": 1})  # 65 evaluations
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "at most 50" in info.value.details()
    assert len(attempts) == 1


def test_the_async_client_gives_what_the_blocking_client_gives(server):
    with Client(server.address) as client:
        expected = client.explain("linear", IMAGE, "occlusion", classes=[2], params={"window": 4, "stride": 4})
        listed = [m.name for m in client.list_models()]

    async def run():
        async with AsyncClient(server.address) as client:
            events = [e async for e in client.explain_stream("linear", IMAGE, "occlusion", classes=[2],
                                                             params={"window": 4, "stride": 4})]
            models = [m.name for m in await client.list_models()]
            top = await client.predict("linear", IMAGE, top_k=1)
            return events, models, top

    events, models, top = asyncio.run(run())
    assert isinstance(events[-1], Result) and models == listed and len(top) == 1
    np.testing.assert_array_equal(events[-1].heatmaps, expected.heatmaps)
