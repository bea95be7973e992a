"""CDeepEx (explainers/methods/cdeepex.py): the nearest latent point whose decoding is ambiguous between P
and Q — exact on a linear generator and classifier, ambiguous and close on the trained digits pair, and
clear errors when what it needs is missing."""

from __future__ import annotations

import builders
import digits
import numpy as np
import pytest

from onnxplain.explainers import CompanionModel, Objective, OnnxClassifier, Progress, RunContext, explain, explain_once
from onnxplain.explainers.errors import Cancelled, FailedPrecondition, InvalidArgument, NotFound
from onnxplain.explainers.methods.cdeepex import reconstruct
from onnxplain.explainers.model import CompanionHandle

RNG = np.random.default_rng(7)
A = np.eye(4) + 0.3 * RNG.standard_normal((4, 4))  # G(z) = A z + b, invertible
B = 0.1 * RNG.standard_normal(4)
CLASSES = RNG.standard_normal((3, 1, 2, 2))


def linear_pair(softmax: bool = False):
    """A linear classifier on 1×2×2 images (class 2 far below: only h = s_0 − s_1 binds; ``softmax``: it
    outputs probabilities), its linear generator and the generator's exact inverse as encoder."""
    classifier = OnnxClassifier(builders.linear(CLASSES.astype(np.float32), bias=np.array([0.0, 0.0, -100.0]),
                                                softmax=softmax))
    inverse = np.linalg.inv(A)
    companions = {"g": CompanionModel(builders.affine_generator(A, B, (1, 2, 2)), name="g"),
                  "e": CompanionModel(builders.affine_generator(inverse, -inverse @ B, (4,), (1, 2, 2)), name="e")}
    return classifier, companions


@pytest.mark.parametrize("softmax", [False, True], ids=["logits", "softmax"])
def test_on_a_linear_generator_and_classifier_the_contrast_is_the_projection_onto_the_boundary(softmax):
    """The same answer from a Softmax output: log-probabilities differ exactly as the logits do."""
    classifier, companions = linear_pair(softmax)
    x = np.array([[[0.9, -0.4], [0.3, 0.8]]], np.float32)
    a = A.T @ (CLASSES[0] - CLASSES[1]).reshape(-1)  # h(z) = aᵀ z + const
    z0 = np.linalg.solve(A, x.reshape(-1) - B)
    h0 = float((CLASSES[0] - CLASSES[1]).reshape(-1) @ x.reshape(-1))
    z_star = z0 - h0 * a / (a @ a)  # argmin ‖z − z₀‖ subject to h(z) = 0
    result = explain_once(classifier, x, "cdeepex", Objective.for_classes([0], 3, contrast=1),
                          {"generator": "g", "encoder": "e", "reconstruction_steps": 0, "outer_steps": 12,
                           "inner_steps": 50, "learning_rate": 0.01}, companions=companions)
    np.testing.assert_allclose(result.heatmaps[0], (A @ (z_star - z0)).reshape(2, 2), atol=0.02)
    assert result.extras["latent_distance"] == pytest.approx(abs(h0) / np.linalg.norm(a), rel=0.03)
    assert result.extras["score_gap_input"] == pytest.approx(abs(h0), rel=1e-5)
    assert result.extras["score_gap_ratio"] < 0.02 and result.extras["converged"] == 1.0
    if not softmax:
        assert result.scores[0] == pytest.approx(h0, rel=1e-5)  # the objective e_P − e_Q at x
    steps = 12 * 50
    assert (result.forward, result.backward) == (1 + 1 + 2 + 12 * 4 * 50, 2 * steps)  # G(z) and its scores carried


@pytest.fixture(scope="module")
def digits_pair():
    """A held-out digit, its two top classes and the explanation of "P rather than Q"."""
    x_test, _ = digits.held_out()
    x = x_test[0]
    order = np.argsort(-digits.classifier().predict(x[None])[0])
    positive, contrast = int(order[0]), int(order[1])
    result = explain_once(digits.classifier(), x, "cdeepex", Objective.for_classes([positive], 10, contrast=contrast),
                          {"generator": "digits_decoder", "encoder": "digits_encoder"}, companions=digits.companions())
    return x, positive, contrast, result


def test_the_digits_contrast_image_is_ambiguous_and_close_in_latent_space(digits_pair):
    x, positive, contrast, result = digits_pair
    extras = result.extras
    assert extras["class_input"] == positive and extras["class_contrast"] in (positive, contrast)
    assert extras["score_gap"] < 0.05 * extras["score_gap_input"] and extras["converged"] == 1.0
    assert extras["other_class_excess"] == 0.0
    # the decoded contrast image, rebuilt independently: G(z₀) (same deterministic search) plus the map
    handle = CompanionHandle(digits.companion("digits_decoder"), RunContext())
    start = CompanionHandle(digits.companion("digits_encoder"), RunContext()).forward(x[None]).astype(np.float64)
    z0 = reconstruct(handle, x, start, 200, 0.05)
    reconstruction = handle.forward(z0)
    scores = digits.classifier().predict((reconstruction + result.heatmaps[:, None]).astype(np.float32))[0]
    assert abs(scores[positive] - scores[contrast]) < 0.05 * extras["score_gap_input"]
    assert abs(scores[positive] - scores[contrast]) == pytest.approx(extras["score_gap"], abs=1e-3)
    # close: the boundary is nearer z₀ than any held-out image of class Q (about half as near for this digit)
    x_test, labels = digits.held_out()
    encoder = CompanionHandle(digits.companion("digits_encoder"), RunContext())
    nearest = np.linalg.norm(encoder.forward(x_test[labels == contrast]) - z0, axis=1).min()
    assert 0 < extras["latent_distance"] < nearest
    assert 0 < np.abs(result.heatmaps).max() < 1  # the map moved some pixels, within the image range


def test_missing_generator_contrast_or_companion_is_a_clear_error():
    classifier, companions = linear_pair()
    x = np.zeros((1, 2, 2), np.float32)
    contrast = Objective.for_classes([0], 3, contrast=1)
    with pytest.raises(InvalidArgument, match="params.generator: required: the name of a companion generator"):
        explain_once(classifier, x, "cdeepex", contrast, companions=companions)
    with pytest.raises(NotFound, match="unknown companion model 'gan'; available: none"):
        explain_once(classifier, x, "cdeepex", contrast, {"generator": "gan"})
    with pytest.raises(InvalidArgument, match="target.contrast_class: cdeepex explains \"P rather than Q\""):
        explain_once(classifier, x, "cdeepex", Objective.for_classes([0], 3), {"generator": "g"},
                     companions=companions)
    with pytest.raises(InvalidArgument, match="target.contrast_loss: cdeepex makes the logits of P and Q equal"):
        explain_once(classifier, x, "cdeepex", Objective.for_classes([0], 3, contrast=1, loss="cross_entropy"),
                     {"generator": "g"}, companions=companions)
    with pytest.raises(FailedPrecondition, match=r"generator 'e' makes images \[4\]; the classifier takes \[1, 2, 2\]"):
        explain_once(classifier, x, "cdeepex", contrast, {"generator": "e"}, companions=companions)


def test_cdeepex_stops_between_batches_when_cancelled():
    classifier, companions = linear_pair()
    context = RunContext()
    events = explain(classifier, np.zeros((1, 2, 2), np.float32), "cdeepex", Objective.for_classes([0], 3, contrast=1),
                     {"generator": "g", "outer_steps": 5}, companions=companions, context=context)
    with pytest.raises(Cancelled):
        for event in events:
            if isinstance(event, Progress):
                context.cancel()
    assert context.forward < 1 + 2 * 200 + 2 + 5 * (4 * 20 + 2)  # stopped before the plan ran out


def test_over_grpc_the_server_finds_the_generator_in_its_repository(tmp_path, digits_pair):
    import shutil

    import grpc
    from serving import ServerThread

    from onnxplain.client import Client

    for name in ("digits_cnn", "digits_decoder", "digits_encoder"):
        shutil.copytree(digits.DIGITS / name, tmp_path / name)
    x, positive, contrast, library = digits_pair
    server = ServerThread(tmp_path)
    try:
        with Client(server.address, timeout=120) as client:
            models = {m.name: m for m in client.list_models()}
            assert models["digits_decoder"].description.startswith("companion model digits_decoder ([10] → [1, 8, 8])")
            params = {"generator": "digits_decoder", "encoder": "digits_encoder"}
            result = client.explain("digits_cnn", x[None], "cdeepex", classes=[positive], contrast=contrast,
                                    params=params)
            assert result.accepted.parameters["generator"] == "digits_decoder"
            np.testing.assert_allclose(result.heatmaps, library.heatmaps, atol=1e-4)  # what the library computes
            assert result.extras["score_gap_ratio"] < 0.05 and result.forward_evaluations == library.forward
            for generator, code, text in (("gan", grpc.StatusCode.NOT_FOUND, "available: digits_decoder, digits_encoder"),
                                          ("digits_cnn", grpc.StatusCode.FAILED_PRECONDITION, "is a classifier")):
                with pytest.raises(grpc.RpcError) as error:
                    client.explain("digits_cnn", x[None], "cdeepex", classes=[positive], contrast=contrast,
                                   params={"generator": generator})
                assert error.value.code() == code and text in error.value.details()
            with pytest.raises(grpc.RpcError) as error:
                client.explain("digits_decoder", x[None], "saliency", classes=[0])
            assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "companion model" in error.value.details()
    finally:
        server.stop()


def test_each_target_searches_alone():
    """Two targets in one batched run give each target's result of its own run."""
    classifier, companions = linear_pair()
    x = np.array([[[0.9, -0.4], [0.3, 0.8]]], np.float32)
    params = {"generator": "g", "reconstruction_steps": 20, "outer_steps": 3, "inner_steps": 10}
    both = explain_once(classifier, x, "cdeepex", Objective.for_classes([0, 2], 3, contrast=1), params,
                        companions=companions)
    for row, positive in enumerate((0, 2)):
        alone = explain_once(classifier, x, "cdeepex", Objective.for_classes([positive], 3, contrast=1), params,
                             companions=companions)
        np.testing.assert_allclose(both.heatmaps[row], alone.heatmaps[0], rtol=1e-5, atol=1e-6)
        assert both.extras[f"penalty[{row}]"] == alone.extras["penalty"]


def test_the_contrast_image_and_reconstruction_travel_as_tensors_and_make_the_heatmap(digits_pair):
    """The result carries G(z′) and G(z₀) [T, C, H, W]; their difference summed over channels is the heatmap."""
    x, _, _, result = digits_pair
    contrast, reconstruction = result.tensors["contrast_image"], result.tensors["reconstruction"]
    assert contrast.shape == reconstruction.shape == (1, *x.shape)
    assert np.abs(contrast - reconstruction).max() > 0
    np.testing.assert_allclose((contrast - reconstruction).sum(axis=1), result.heatmaps, atol=1e-6)
