"""--warm-up: each loaded model explains a probe image with the listed methods before it is READY, so the first
request finds the graphs those methods use already built and compiled."""

from __future__ import annotations

import logging

import builders
import numpy as np
import onnx
import pytest

from onnxplain.explainers import Objective, explain_once
from onnxplain.explainers.errors import Cancelled, NotFound
from onnxplain.server import cli as server_cli
from onnxplain.server.repository import ModelRepository, State


@pytest.fixture
def repository_root(tmp_path):
    for name, model in (("cnn", builders.small_cnn()), ("linear", builders.linear(np.ones((3, 3, 4, 4), np.float32)))):
        (tmp_path / name).mkdir()
        onnx.save(model, tmp_path / name / "model.onnx")
    return tmp_path


def test_a_warmed_model_serves_its_methods_without_building_a_graph(repository_root):
    classifier = ModelRepository(repository_root, warm_up=("saliency", "grad_cam")).load("cnn").classifier
    warmed = classifier.sessions.stats()
    kinds = {(variant.kind, variant.layers, variant.input_gradient) for variant in classifier.sessions.variants()}
    assert {("gradient", (), True), ("gradient", (classifier.cam_layer,), False)} <= kinds
    image = np.random.default_rng(1).standard_normal((3, 16, 16)).astype(np.float32)
    for method in ("saliency", "grad_cam"):
        explain_once(classifier, image, method, Objective.for_classes([2], 3))
    assert classifier.sessions.stats().builds == warmed.builds


def test_without_warm_up_the_first_request_builds_its_graph(repository_root):
    classifier = ModelRepository(repository_root).load("cnn").classifier
    before = classifier.sessions.stats().builds
    explain_once(classifier, np.zeros((3, 16, 16), np.float32), "saliency", Objective.for_classes([0], 3))
    assert classifier.sessions.stats().builds == before + 1


def test_a_method_that_cannot_run_on_a_model_is_logged_and_the_model_still_loads(repository_root, caplog):
    with caplog.at_level(logging.WARNING, logger="onnxplain.server"):
        entry = ModelRepository(repository_root, warm_up=("grad_cam", "saliency")).load("linear")
    assert entry.state is State.READY
    (skipped,) = [r.getMessage() for r in caplog.records if "warm-up" in r.getMessage()]
    assert skipped.startswith("model linear: warm-up of grad_cam skipped:") and "layer" in skipped


def test_an_abandoned_load_stops_warming_up_and_swaps_nothing_in(repository_root):
    asked = []

    def abandoned():
        asked.append(True)
        return len(asked) > 1  # given up while the first method warmed up

    repository = ModelRepository(repository_root, warm_up=("saliency", "grad_cam"))
    with pytest.raises(Cancelled):
        repository.load("cnn", abandoned=abandoned)
    assert len(asked) == 3 and repository.entry("cnn").state is State.UNLOADED  # before each method, then the load


def test_graphs_the_session_cache_cannot_keep_are_warned_about(repository_root, caplog):
    (repository_root / "cnn" / "config.json").write_text('{"max_cache_bytes": 1}')
    with caplog.at_level(logging.WARNING, logger="onnxplain.server"):
        ModelRepository(repository_root, warm_up=("saliency", "grad_cam")).load("cnn")
    assert any("exceed its config.max_cache_bytes (1 bytes)" in r.getMessage() for r in caplog.records)
    caplog.clear()
    (repository_root / "cnn" / "config.json").unlink()
    with caplog.at_level(logging.WARNING, logger="onnxplain.server"):
        ModelRepository(repository_root, warm_up=("saliency", "grad_cam")).load("cnn")
    assert not any("max_cache_bytes" in r.getMessage() for r in caplog.records)


def test_method_names_are_checked_when_the_server_starts(repository_root, capsys, monkeypatch):
    assert ModelRepository(repository_root, warm_up=(" saliency", "", "saliency", "cam")).warm_up == ("saliency", "cam")
    with pytest.raises(NotFound, match="grad_cam"):
        ModelRepository(repository_root, warm_up=("gradcam",))
    monkeypatch.setattr(server_cli, "configure_logging", lambda *args, **kwargs: None)  # keep pytest's handlers
    assert server_cli.main(["--models", str(repository_root), "--port", "0", "--warm-up", "saliency,gradcam"]) == 1
    assert "gradcam" in capsys.readouterr().err
