"""Gradient graphs of every fixture family agree with torch autograd (float64 golden files).

The fixtures (tests/fixtures/, made by tools/fixtures/export_fixtures.py) are narrow versions of
ResNet, MobileNetV2/V3, EfficientNet, DenseNet, VGG, SqueezeNet, GoogLeNet, ViT, ConvNeXt and Swin
from both torch exporters, an sklearn MLP (skl2onnx) and a TF-style NHWC graph. onnxruntime runs
our gradient graphs in float32; the golden gradients are float64, so ReLU/MaxPool nets can differ
where float32 rounding flips a kink (AUTODIFF.md): they get a cosine bound, smooth nets a tight one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from onnxplain.explainers import ModelConfig, OnnxClassifier
from onnxplain.explainers.autodiff import INPUT_GRAD
from onnxplain.explainers.model import Evaluator, Variant, layer_gradient
from onnxplain.explainers.model.loop import concatenate
from onnxplain.explainers.model.variants import build_variant

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NAMES = sorted(Path(name).stem for name in json.loads((FIXTURES / "manifest.json").read_text())["fixtures"])


def compare(got: np.ndarray, expected: np.ndarray, smooth: bool, what: str) -> None:
    got, expected = got.astype(np.float64).ravel(), expected.astype(np.float64).ravel()
    cosine = got @ expected / (np.linalg.norm(got) * np.linalg.norm(expected) + 1e-30)
    relative = np.linalg.norm(got - expected) / (np.linalg.norm(expected) + 1e-30)
    if smooth:
        assert relative < 1e-3, f"{what}: relative error {relative:.2e}"
    else:
        assert cosine > 0.999 and relative < 0.05, f"{what}: cosine {cosine:.6f}, relative error {relative:.2e}"


@pytest.fixture(scope="module", params=NAMES)
def fixture(request):
    golden = np.load(FIXTURES / f"{request.param}.npz")
    classifier = OnnxClassifier.load(FIXTURES / f"{request.param}.onnx", config=ModelConfig(max_batch=8),
                                     name=request.param)
    return request.param, classifier, golden


def test_forward_matches_torch(fixture):
    name, classifier, golden = fixture
    x = golden["x"]
    canonical = x.transpose(0, 3, 1, 2) if classifier.signature.layout == "NHWC" else x
    np.testing.assert_allclose(classifier.predict(np.ascontiguousarray(canonical)), golden["logits"],
                               rtol=1e-4, atol=1e-4)


def test_input_and_layer_gradients_match_torch(fixture):
    name, classifier, golden = fixture
    x, seeds, smooth = golden["x"], golden["class_weights"], bool(golden["smooth"])
    nhwc = classifier.signature.layout == "NHWC"
    canonical = np.ascontiguousarray(x.transpose(0, 3, 1, 2) if nhwc else x)
    layers = [str(golden["layer"])] if "layer" in golden else []
    chunks = list(Evaluator(classifier).gradient_rows(
        len(x), lambda a, b: (canonical[a:b], seeds[a:b]), layers=layers,
        cut_final_activation=classifier.output_kind == "logits",
    ))
    grad = np.concatenate([c.outputs[INPUT_GRAD] for c in chunks])
    expected = golden["input_grad"].transpose(0, 3, 1, 2) if nhwc else golden["input_grad"]
    for i in range(len(x)):
        compare(grad[i], expected[i], smooth, f"{name} input gradient, sample {i}")
    if layers:
        activation = np.concatenate([c.outputs[layers[0]] for c in chunks])
        layer_grad = np.concatenate([c.outputs[layer_gradient(layers[0])] for c in chunks])
        np.testing.assert_allclose(activation, golden["layer_activation"], rtol=1e-3, atol=1e-4)
        for i in range(len(x)):
            compare(layer_grad[i], golden["layer_grad"][i], smooth, f"{name} layer gradient, sample {i}")


def test_batch_sizes_one_three_and_eight_agree(fixture):
    name, classifier, golden = fixture
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, classifier.channels, classifier.height, classifier.width)).astype(np.float32)
    seeds = np.eye(classifier.num_classes, dtype=np.float32)[rng.integers(0, classifier.num_classes, 8)]
    results = {}
    for batch in (1, 3, 8):
        chunks = Evaluator(classifier).gradient_rows(8, lambda a, b: (x[a:b], seeds[a:b]), max_batch=batch)
        results[batch] = np.concatenate([c.outputs[INPUT_GRAD] for c in chunks])
    np.testing.assert_allclose(results[1], results[8], rtol=1e-4, atol=1e-6 * np.abs(results[8]).max())
    np.testing.assert_allclose(results[3], results[8], rtol=1e-4, atol=1e-6 * np.abs(results[8]).max())


def test_default_cam_layer_is_the_last_activation_before_global_pooling(fixture):
    name, classifier, golden = fixture
    if "layer" in golden:
        assert classifier.cam_layer == str(golden["layer"])
        layer = {layer.name: layer for layer in classifier.layers()}[classifier.cam_layer]
        assert layer.shape == golden["layer_activation"].shape[1:]


def test_layer_gradients_without_the_input_gradient_are_the_same(fixture):
    """Grad-CAM's graph stops back-propagating at the layer: no input gradient, fewer nodes, and
    the layer's activation and gradient equal the full graph's (and torch's)."""
    name, classifier, golden = fixture
    if "layer" not in golden:
        pytest.skip("no spatial layer in this family (ViT, MLP)")
    layer, x, seeds = str(golden["layer"]), golden["x"], golden["class_weights"]
    canonical = np.ascontiguousarray(x.transpose(0, 3, 1, 2) if classifier.signature.layout == "NHWC" else x)
    cut = classifier.output_kind == "logits"
    outputs, graphs = {}, {}
    for wanted in (True, False):
        chunks = list(Evaluator(classifier).gradient_rows(
            len(x), lambda a, b: (canonical[a:b], seeds[a:b]), layers=[layer], cut_final_activation=cut,
            input_gradient=wanted))
        outputs[wanted] = concatenate(chunks)
        variant = Variant.gradient(layers=(layer,), cut_final_activation=cut, input_gradient=wanted)
        graphs[wanted] = build_variant(variant, classifier.introspection, classifier.model_input)
    assert INPUT_GRAD in outputs[True] and INPUT_GRAD not in outputs[False]
    for key in (layer, layer_gradient(layer), classifier.signature.output_name):  # float32 rounding apart
        np.testing.assert_allclose(outputs[False][key], outputs[True][key], rtol=1e-5,
                                   atol=1e-6 * np.abs(outputs[True][key]).max())
    for i in range(len(x)):
        compare(outputs[False][layer_gradient(layer)][i], golden["layer_grad"][i], bool(golden["smooth"]),
                f"{name} layer gradient without the input gradient, sample {i}")
    (full, full_names), (head, head_names) = graphs[True], graphs[False]
    assert head_names.input_grad is None and full_names.input_grad == INPUT_GRAD
    assert INPUT_GRAD not in [o.name for o in head.graph.output]
    assert len(head.graph.node) < len(full.graph.node)
