"""Companion models (explainers/model/companions.py): forward and VJPs through the one loop, counted and
cancellable; resolved by name in the library (a mapping) and the server (the repository)."""

from __future__ import annotations

import json
import shutil

import digits
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxplain.explainers import CompanionModel, Evaluator, RunContext
from onnxplain.explainers.errors import Cancelled, FailedPrecondition, InvalidArgument, InvalidModel, NotFound
from onnxplain.explainers.model import CompanionHandle
from onnxplain.server.convert import model_info
from onnxplain.server.repository import ModelRepository, State


def sigmoid_affine(weights: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    """z [N, d] → sigmoid(z Wᵀ + b) reshaped to [N, 1, 2, k/2]: a generator with a known Jacobian."""
    k, d = weights.shape
    nodes = [helper.make_node("Gemm", ["z", "W", "b"], ["affine"], transB=1),
             helper.make_node("Sigmoid", ["affine"], ["flat"]),
             helper.make_node("Reshape", ["flat", "shape"], ["image"])]
    graph = helper.make_graph(
        nodes, "generator", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", d])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", None, None, None])],
        initializer=[numpy_helper.from_array(weights.astype(np.float32), "W"),
                     numpy_helper.from_array(bias.astype(np.float32), "b"),
                     numpy_helper.from_array(np.array([-1, 1, 2, k // 2], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


RNG = np.random.default_rng(0)
W, B = RNG.standard_normal((6, 3)), RNG.standard_normal(6)


def test_vjp_is_the_transposed_jacobian_of_an_analytic_generator():
    handle = CompanionHandle(CompanionModel(sigmoid_affine(W, B), name="g"), RunContext())
    assert handle.input_shape == (3,) and handle.output_shape == (1, 2, 3)  # probed: the graph declares no shape
    z = RNG.standard_normal((5, 3)).astype(np.float32)
    v = RNG.standard_normal((5, 1, 2, 3)).astype(np.float32)
    s = 1 / (1 + np.exp(-(z.astype(np.float64) @ W.T + B)))
    image, grad = handle.vjp(z, v)
    np.testing.assert_allclose(image.reshape(5, 6), s, atol=1e-6)
    np.testing.assert_allclose(grad, (v.reshape(5, 6) * s * (1 - s)) @ W, atol=1e-5)  # vᵀ diag(s(1−s)) W
    np.testing.assert_allclose(handle.forward(z), image, atol=1e-7)
    assert (handle.context.forward, handle.context.backward) == (10, 5)  # vjp: forward + backward per sample


def test_the_digits_decoder_vjp_matches_finite_differences():
    handle = CompanionHandle(digits.companion("digits_decoder"), RunContext())
    z = RNG.standard_normal((2, 10)).astype(np.float32)
    v = RNG.standard_normal((2, 1, 8, 8)).astype(np.float32)
    _, grad = handle.vjp(z, v)
    step = np.zeros_like(z)
    step[:, 4] = 1e-2
    difference = (handle.forward(z + step).astype(np.float64) - handle.forward(z - step)) / 2e-2
    np.testing.assert_allclose((difference * v).sum((1, 2, 3)), grad[:, 4], rtol=2e-2, atol=1e-3)


def test_companion_passes_chunk_and_stop_when_cancelled():
    generator = CompanionModel(sigmoid_affine(W, B), name="g")
    context = RunContext()
    context.cancel()
    with pytest.raises(Cancelled):
        CompanionHandle(generator, context).forward(np.zeros((2, 3), np.float32))
    budget = RunContext(max_evaluations=3)
    with pytest.raises(Exception, match="more than 3 model evaluations"):
        CompanionHandle(generator, budget).vjp(np.zeros((2, 3), np.float32), np.zeros((2, 1, 2, 3), np.float32))


def test_wrong_shapes_and_models_are_refused_with_what_is_allowed():
    handle = CompanionHandle(CompanionModel(sigmoid_affine(W, B), name="g"), RunContext())
    with pytest.raises(InvalidArgument, match=r"companion input: shape \[2, 4\] .* allowed: \[n, 3\]"):
        handle.forward(np.zeros((2, 4), np.float32))
    with pytest.raises(InvalidArgument, match="companion cotangent"):
        handle.vjp(np.zeros((2, 3), np.float32), np.zeros((2, 6), np.float32))
    symbolic = sigmoid_affine(W, B)
    symbolic.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "d"
    with pytest.raises(InvalidModel, match="every dimension after the batch fixed"):
        CompanionModel(symbolic, name="g")


def test_evaluator_resolves_companions_by_name_and_names_what_there_is():
    evaluator = Evaluator(digits.classifier(), companions=digits.companions())
    assert evaluator.companion("digits_decoder").output_shape == (1, 8, 8)
    with pytest.raises(NotFound, match="unknown companion model 'gan'; available: digits_autoencoder, "
                                       "digits_decoder, digits_encoder"):
        evaluator.companion("gan")
    with pytest.raises(NotFound, match="available: none"):
        Evaluator(digits.classifier()).companion("digits_decoder")


@pytest.fixture
def digits_repository(tmp_path):
    for name in ("digits_cnn", "digits_decoder"):
        shutil.copytree(digits.DIGITS / name, tmp_path / name)
    return tmp_path


def test_repository_loads_companions_apart_from_classifiers(digits_repository):
    repository = ModelRepository(digits_repository)
    with pytest.raises(FailedPrecondition, match="companion model 'digits_decoder' is not loaded"):
        repository.companion("digits_decoder")
    for name in repository.names():
        repository.load(name)
    decoder = repository.companion("digits_decoder")
    assert decoder.output_shape == (1, 8, 8) and repository.entry("digits_decoder").classifier is None
    assert model_info(repository.entry("digits_decoder")).description.startswith(
        "companion model digits_decoder ([10] → [1, 8, 8]): decoder of the digits VAE")
    with pytest.raises(FailedPrecondition, match="'digits_decoder' is a companion model .* cannot be explained"):
        repository.get("digits_decoder")
    with pytest.raises(FailedPrecondition, match="'digits_cnn' is a classifier, not a companion model.*"
                                                 "companions loaded: digits_decoder"):
        repository.companion("digits_cnn")
    with pytest.raises(NotFound, match="unknown companion model 'gan'; available: digits_decoder"):
        repository.companion("gan")
    repository.unload("digits_decoder")
    assert repository.entry("digits_decoder").companion is None


def test_a_broken_companion_config_fails_that_model_only(digits_repository):
    config = digits_repository / "digits_decoder" / "config.json"
    config.write_text(json.dumps({"kind": "companion", "max_batch": 0}))
    repository = ModelRepository(digits_repository)
    with pytest.raises(InvalidArgument, match=r"config.max_batch: 0; allowed: \[1, 4096\]"):
        repository.load("digits_decoder")
    assert repository.entry("digits_decoder").state is State.FAILED
    with pytest.raises(FailedPrecondition, match="'digits_decoder' failed to load: config.max_batch"):
        repository.companion("digits_decoder")
    repository.load("digits_cnn")
    assert repository.get("digits_cnn").num_classes == 10
