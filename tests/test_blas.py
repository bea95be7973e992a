"""numpy's BLAS runs on one thread while a method runs, and gets its thread count back after."""

from __future__ import annotations

import gc
import threading

import builders
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from explainers import Objective, OnnxClassifier, explain
from explainers.blas import one_blas_thread


def blas_threads() -> set[int]:
    return {library["num_threads"] for library in threadpool_info() if library["user_api"] == "blas"}


@pytest.fixture
def two_blas_threads():
    gc.collect()  # runs abandoned in earlier tests (suspended generators in reference cycles) end here
    if not blas_threads():
        pytest.skip("numpy has no BLAS library that threadpoolctl controls")
    with threadpool_limits(limits=2, user_api="blas"):
        if blas_threads() != {2}:
            pytest.skip("this BLAS cannot run two threads here")
        yield


def test_a_run_holds_blas_to_one_thread_until_it_ends(two_blas_threads):
    classifier = OnnxClassifier(builders.small_cnn())
    image = np.random.default_rng(0).standard_normal((3, 16, 16)).astype(np.float32)
    events = explain(classifier, image, "saliency", Objective.for_classes([0], 3))
    next(events)  # Planned: the run is open
    assert blas_threads() == {1}
    list(events)
    assert blas_threads() == {2}
    abandoned = explain(classifier, image, "saliency", Objective.for_classes([0], 3))
    next(abandoned)
    abandoned.close()  # a client that stops reading (cancel, deadline) releases it too
    assert blas_threads() == {2}


def test_nested_and_overlapping_runs_restore_only_when_the_last_one_leaves(two_blas_threads):
    seen = []

    def worker_run():  # the server's workers run inside the main thread's hold
        with one_blas_thread():
            seen.append(blas_threads())

    with one_blas_thread():
        with one_blas_thread():
            seen.append(blas_threads())
        seen.append(blas_threads())
        worker = threading.Thread(target=worker_run)
        worker.start()
        worker.join()
        seen.append(blas_threads())
    assert seen == [{1}] * 4 and blas_threads() == {2}
