"""numpy's BLAS runs on one thread while a method works, and gets its thread count back after."""

from __future__ import annotations

import threading

import builders
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from onnxplain.explainers import Objective, OnnxClassifier, explain
from onnxplain.explainers.blas import one_blas_thread
from onnxplain.explainers.model import loop


def blas_threads() -> set[int]:
    return {library["num_threads"] for library in threadpool_info() if library["user_api"] == "blas"}


@pytest.fixture
def two_blas_threads():
    if not blas_threads():
        pytest.skip("numpy has no BLAS library that threadpoolctl controls")
    with threadpool_limits(limits=2, user_api="blas"):
        if blas_threads() != {2}:
            pytest.skip("this BLAS cannot run two threads here")
        yield


def test_onnxruntime_runs_with_one_blas_thread_and_the_caller_gets_its_threads_back(two_blas_threads, monkeypatch):
    seen_in_runs = []
    run_once = loop.run_once

    def recording(*args, **kwargs):
        seen_in_runs.append(blas_threads())
        return run_once(*args, **kwargs)

    monkeypatch.setattr(loop, "run_once", recording)
    classifier = OnnxClassifier(builders.small_cnn())
    image = np.random.default_rng(0).standard_normal((3, 16, 16)).astype(np.float32)
    seen_between_events = [blas_threads() for _ in explain(classifier, image, "saliency", Objective.for_classes([0], 3))]
    assert seen_in_runs and all(threads == {1} for threads in seen_in_runs)
    assert all(threads == {2} for threads in seen_between_events) and blas_threads() == {2}
    abandoned = explain(classifier, image, "smoothgrad", Objective.for_classes([0], 3), {"samples": 64})
    next(abandoned)
    abandoned.close()  # a caller that stops reading (cancel, deadline)
    assert blas_threads() == {2}


def test_nested_blocks_restore_at_the_outermost_exit_and_other_threads_change_nothing(two_blas_threads):
    seen = []

    def off_main_thread():
        with one_blas_thread():
            seen.append(blas_threads())

    with one_blas_thread():
        with one_blas_thread():
            seen.append(blas_threads())
        seen.append(blas_threads())
        worker = threading.Thread(target=off_main_thread)  # a server worker inside the main thread's hold
        worker.start()
        worker.join()
        seen.append(blas_threads())
    assert seen == [{1}] * 4 and blas_threads() == {2}
    worker = threading.Thread(target=off_main_thread)  # alone, it neither limits nor restores
    worker.start()
    worker.join()
    assert seen[-1] == {2} and blas_threads() == {2}
