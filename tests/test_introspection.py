"""The shape probe runs the model's skeleton fed its weights as arrays, and gives the shapes the model itself
gives (value-dependent ones included)."""

from __future__ import annotations

from pathlib import Path

import builders
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxplain.explainers import OnnxClassifier
from onnxplain.explainers.graph import skeleton as skeleton_module
from onnxplain.explainers.graph.skeleton import is_weight, weight_arrays
from onnxplain.explainers.model import introspect

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RNG = np.random.default_rng(3)


def large_linear() -> onnx.ModelProto:
    """logits = W·flatten(x), W [3, 3·32·32]: one weight over skeleton.KEPT_ELEMENTS."""
    return builders.linear(RNG.standard_normal((3, 3, 32, 32)).astype(np.float32))


def probed_models(classifier: OnnxClassifier, monkeypatch) -> list[onnx.ModelProto]:
    """Record the graphs the probe compiles."""
    compiled: list[onnx.ModelProto] = []
    opener = classifier.introspection._open_session

    def recording(model):
        compiled.append(model)
        return opener(model)

    monkeypatch.setattr(classifier.introspection, "_open_session", recording)
    return compiled


def full_model_shapes(classifier: OnnxClassifier, monkeypatch) -> dict[str, tuple]:
    with monkeypatch.context() as patch:
        patch.setattr(introspect, "weight_arrays", lambda model: None)
        return classifier.introspection._probe_shapes()


@pytest.mark.parametrize("make", [large_linear, lambda: onnx.load(FIXTURES / "vgg_legacy.onnx")],
                         ids=["linear", "vgg_legacy"])
def test_the_probe_compiles_no_weight_and_finds_the_shapes_of_the_model_itself(make, monkeypatch):
    classifier = OnnxClassifier(make())
    compiled = probed_models(classifier, monkeypatch)
    shapes = classifier.introspection.tensor_shapes()
    (probe,) = compiled
    weights = [t.name for t in classifier.model.graph.initializer if is_weight(t)]
    assert weights and not any(is_weight(t) for t in probe.graph.initializer)
    assert set(weights) <= {value.name for value in probe.graph.input}
    assert shapes == full_model_shapes(classifier, monkeypatch)
    assert shapes[classifier.signature.output_name] == ("batch", classifier.num_classes)


def test_a_skeleton_that_cannot_run_falls_back_to_the_model(monkeypatch):
    classifier = OnnxClassifier(large_linear())
    compiled = probed_models(classifier, monkeypatch)

    def unrunnable(model):
        broken = skeleton_module.skeleton(model)
        broken.graph.node[0].op_type = "NoSuchOp"
        return broken

    monkeypatch.setattr(introspect, "skeleton", unrunnable)
    shapes = classifier.introspection._probe_shapes()
    assert [model.graph.node[0].op_type for model in compiled] == ["NoSuchOp", "Reshape"]
    assert any(is_weight(t) for t in compiled[1].graph.initializer)
    assert shapes == full_model_shapes(classifier, monkeypatch)


def test_weight_arrays_are_the_weights_and_bfloat16_has_none():
    model = large_linear()
    (name, array), = weight_arrays(model).items()
    weight = next(t for t in model.graph.initializer if t.name == name)
    np.testing.assert_array_equal(array, onnx.numpy_helper.to_array(weight))
    model.graph.initializer.append(helper.make_tensor("b16", TensorProto.BFLOAT16, [5000], np.zeros(5000, np.uint16),
                                                      raw=False))
    assert weight_arrays(model) is None


def nonzero_head() -> onnx.ModelProto:
    """A shape that depends on values: NonZero of the rectified logits (of a weight over the kept size), beside
    the logits themselves."""
    model = large_linear()
    model.graph.node.extend([helper.make_node("Relu", ["logits"], ["positive"]),
                             helper.make_node("NonZero", ["positive"], ["where"])])
    model.graph.output.append(helper.make_tensor_value_info("where", TensorProto.INT64, [2, None]))
    return model


def test_a_value_dependent_shape_is_probed_as_the_model_computes_it(monkeypatch):
    """Zero weights would give NonZero no element at all; the weights themselves give the model's count."""
    classifier = OnnxClassifier(nonzero_head())
    shapes = classifier.introspection.tensor_shapes()
    assert shapes == full_model_shapes(classifier, monkeypatch)
    images = [classifier._probe_batch(n) for n in (1, 2)]
    counts = [int((classifier.predict(batch) > 0).sum()) for batch in images]
    assert shapes["where"] == ((2, "batch") if counts[0] != counts[1] else (2, counts[0])) and max(counts) > 0
