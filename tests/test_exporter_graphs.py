"""Every exporter's graph works with every method (issue 11, items 4-5).

Each quirky export (opset 7-9 with Slice-1/Upsample, tf2onnx's NHWC graph with Transpose wrappers and
a Reshape after the pooling, skl2onnx's ZipMap output, an extra input with a default) computes the
same function as a plain reference model; predict and every registered method must give the
reference's answer on it, or a clear error — never an internal one.
"""

from __future__ import annotations

import builders
import exports
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from test_conformance import CONTRASTS, FAST, METHODS, companions

from onnxplain.explainers import ModelConfig, Objective, OnnxClassifier, explain, explain_once
from onnxplain.explainers.errors import FailedPrecondition, InvalidModel
from onnxplain.explainers.graph.exports import final_activation_last
from onnxplain.explainers.model.export_repairs import TARGET_OPSET

OBJECTIVE = Objective.for_classes([0, 2], 3)
PAIRS = {
    "opset7": (lambda: exports.upsampling_cnn(7), lambda: exports.upsampling_cnn(17)),
    "opset8": (lambda: exports.upsampling_cnn(8), lambda: exports.upsampling_cnn(17)),
    "opset9": (lambda: exports.upsampling_cnn(9), lambda: exports.upsampling_cnn(17)),
    "tf2onnx_nhwc": (lambda: exports.conv_net("NHWC"), lambda: exports.conv_net("NCHW")),
    "zipmap": (lambda: exports.softmax_cnn(zipmap=True), lambda: exports.softmax_cnn()),
    "input_with_default": (lambda: exports.softmax_cnn(scale_input="scale"), lambda: exports.softmax_cnn()),
    "unread_input": (lambda: exports.softmax_cnn(unread_input=True), lambda: exports.softmax_cnn()),
}
_LOADED: dict[str, tuple[OnnxClassifier, OnnxClassifier]] = {}


def pair(name: str) -> tuple[OnnxClassifier, OnnxClassifier]:
    if name not in _LOADED:
        quirky, reference = PAIRS[name]
        _LOADED[name] = (OnnxClassifier(quirky(), config=ModelConfig(max_batch=8)),
                         OnnxClassifier(reference(), config=ModelConfig(max_batch=8)))
    return _LOADED[name]


def image() -> np.ndarray:
    return np.random.default_rng(4).standard_normal((3, 16, 16)).astype(np.float32)


@pytest.mark.parametrize("name", PAIRS)
def test_predict_matches_the_reference_export(name):
    quirky, reference = pair(name)
    batch = np.random.default_rng(1).standard_normal((3, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(quirky.predict(batch), reference.predict(batch), rtol=1e-5, atol=1e-5)
    assert (quirky.output_kind, quirky.num_classes) == (reference.output_kind, reference.num_classes)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", PAIRS)
def test_every_method_gives_the_reference_map(name, method):
    quirky, reference = pair(name)
    objective = CONTRASTS.get(method, OBJECTIVE)
    maps = [list(explain(model, image(), method, objective, FAST.get(method), seed=3,
                         companions=companions()))[-1].heatmaps for model in (quirky, reference)]
    scale = np.abs(maps[1]).max() or 1.0
    np.testing.assert_allclose(maps[0], maps[1], rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("opset", [7, 8, 9])
def test_old_opsets_are_converted_at_load_and_say_so(opset):
    info = pair(f"opset{opset}")[0].info
    assert info.opset == TARGET_OPSET
    assert info.provenance["opset"].detail == (f"converted from opset {opset} to {TARGET_OPSET} "
                                               "with onnx.version_converter")
    assert "opset" not in pair("opset9")[1].info.provenance  # opset 17: left alone


def test_the_cam_layer_of_an_nhwc_graph_is_the_pooled_activation_not_the_reshape_after_it():
    quirky, reference = pair("tf2onnx_nhwc")
    assert quirky.cam_layer == reference.cam_layer == "act"
    layers = {layer.name: layer for layer in quirky.layers()}
    assert (layers["act"].shape, layers["act"].layout) == ((4, 16, 16), "NHWC")
    assert layers["keras_reshape"].shape == (1, 1, 4)  # [N, 1, 1, K]: a candidate, never the default
    assert {layers[name].layout for name in ("t1", "c1", "t2", "c2")} == {"NCHW"}


@pytest.mark.parametrize("pool", ["reduce_mean_nchw", "reduce_mean_nhwc_keepdims", "average_pool_over_the_map"])
def test_every_form_of_global_pooling_marks_the_cam_layer(pool):
    model = exports.conv_net("NHWC" if "nhwc" in pool else "NCHW")
    graph = model.graph
    position = next(i for i, node in enumerate(graph.node) if node.output[0] == "pool")
    node = {"reduce_mean_nchw": helper.make_node("ReduceMean", ["act"], ["pool"], axes=[2, 3]),
            "reduce_mean_nhwc_keepdims": helper.make_node("ReduceMean", ["act"], ["pool"], axes=[-3, -2]),
            "average_pool_over_the_map": helper.make_node("AveragePool", ["act"], ["pool"], kernel_shape=[16, 16]),
            }[pool]
    graph.node[position].CopyFrom(node)
    onnx.checker.check_model(model)
    classifier = OnnxClassifier(model)
    assert classifier.cam_layer == "act"
    grad_cam = list(explain(classifier, image(), "grad_cam", OBJECTIVE, seed=0))[-1].heatmaps
    reference = list(explain(pair("tf2onnx_nhwc")[1], image(), "grad_cam", OBJECTIVE, seed=0))[-1].heatmaps
    np.testing.assert_allclose(grad_cam, reference, rtol=1e-4, atol=1e-6)


def test_a_model_without_a_pooled_or_flattened_map_has_no_default_cam_layer_and_says_so():
    model = exports.conv_net("NCHW")
    graph = model.graph
    position = next(i for i, node in enumerate(graph.node) if node.output[0] == "pool")
    graph.node[position].CopyFrom(helper.make_node("Reshape", ["act", "tokens"], ["pool_tokens"]))
    graph.node.insert(position + 1, helper.make_node("ReduceMean", ["pool_tokens"], ["pool"], axes=[2]))
    graph.initializer.append(onnx.numpy_helper.from_array(np.array([0, 4, -1], np.int64), "tokens"))
    onnx.checker.check_model(model)
    classifier = OnnxClassifier(model)
    assert classifier.cam_layer is None
    with pytest.raises(FailedPrecondition) as info:
        list(explain(classifier, image(), "grad_cam", OBJECTIVE, seed=0))
    message = str(info.value)
    assert "no default CAM layer" in message and "params.layer" in message and "act (4×16×16)" in message
    layer = list(explain(classifier, image(), "grad_cam", OBJECTIVE, {"layer": "act"}, seed=0))[-1]
    assert layer.heatmaps.shape == (2, 16, 16)


def test_zipmap_is_read_as_probabilities_and_says_so():
    classifier = pair("zipmap")[0]
    assert classifier.signature.output_name == "output_probability" and classifier.output_kind == "probabilities"
    assert "ZipMap" in classifier.info.provenance["zipmap"].detail


def test_a_zipmap_beside_its_own_probabilities_output_is_dropped():
    model = exports.softmax_cnn(zipmap=True)
    model.graph.output.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3]))
    classifier = OnnxClassifier(model)
    assert classifier.signature.output_name == "probabilities"
    assert [o.name for o in classifier.model.graph.output] == ["output_label", "probabilities"]


def test_a_sequence_output_that_is_not_zipmap_is_refused_with_the_skl2onnx_hint():
    model = exports.softmax_cnn()
    graph = model.graph
    graph.node.append(helper.make_node("SequenceConstruct", ["output_probability"], ["sequence"]))
    del graph.output[:]
    graph.output.append(helper.make_value_info("sequence", helper.make_sequence_type_proto(
        helper.make_tensor_type_proto(TensorProto.FLOAT, ["N", 3]))))
    with pytest.raises(InvalidModel) as info:
        OnnxClassifier(model)
    assert "options={'zipmap': False}" in str(info.value) and "'sequence'" not in str(info.value)


def test_an_extra_input_without_a_default_is_refused_by_name():
    with pytest.raises(InvalidModel) as info:
        OnnxClassifier(exports.softmax_cnn(scale_input="gain", scale_default=None))
    message = str(info.value)
    assert "besides the image 'x'" in message and "gain" in message and "initializer" in message


def test_an_unread_input_is_dropped_and_says_so():
    info = pair("unread_input")[0].info
    assert info.provenance["inputs"].detail == "inputs no node reads were dropped: training"


_CONVERT = onnx.version_converter.convert_version


def _wrong_conversion(model, target):
    converted = _CONVERT(model, target)
    bias = next(init for init in converted.graph.initializer if init.name == "fb")
    bias.CopyFrom(onnx.numpy_helper.from_array(np.array([5, 0, 0], np.float32), "fb"))
    return converted


def _failed_conversion(model, target):
    raise RuntimeError("No Adapter For Upsample")


@pytest.mark.parametrize("converter, reason", [(_wrong_conversion, "computes other values"),
                                               (_failed_conversion, "No Adapter For Upsample")])
def test_a_conversion_that_fails_or_changes_the_model_leaves_it_as_it_was(monkeypatch, converter, reason):
    from onnxplain.explainers.graph import exports as graph_exports

    monkeypatch.setattr(graph_exports.onnx.version_converter, "convert_version", converter)
    classifier = OnnxClassifier(exports.upsampling_cnn(9))
    assert classifier.info.opset == 9
    assert reason in classifier.info.provenance["opset"].detail
    batch = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(classifier.predict(batch), pair("opset9")[1].predict(batch), rtol=1e-5, atol=1e-5)
    with pytest.raises(FailedPrecondition, match="opset 9: onnx.version_converter could not convert it"):
        list(explain(classifier, image(), "occlusion", OBJECTIVE, FAST["occlusion"], seed=0))


def sigmoid_head(*tail: str) -> onnx.ModelProto:
    """Linear logits → Sigmoid → the ``tail`` ops (each only reshaping [N, 3])."""
    model = builders.linear(np.random.default_rng(5).standard_normal((3, 3, 4, 4)).astype(np.float32))
    previous = "logits"
    for index, op in enumerate(("Sigmoid", *tail)):
        name = "probs" if index == len(tail) else f"t{index}"
        model.graph.node.append(helper.make_node(op, [previous], [name]))
        previous = name
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3]))
    return model


@pytest.mark.parametrize("tail", [("Identity",), ("Flatten", "Identity")])
def test_a_sigmoid_behind_reshapes_is_moved_last_and_read_as_the_models_probabilities(tail):
    """Every reader of the output's producer (output kind, the gradient builder's cut to the logits, the
    cross-entropy checks) then treats it as the plain Sigmoid head it is: same scores, same maps."""
    plain, moved = OnnxClassifier(sigmoid_head()), OnnxClassifier(sigmoid_head(*tail))
    assert moved.signature.output_producer == "Sigmoid" and moved.outputs_are_probabilities
    assert "moved after" in str(moved.info.provenance["output_kind"])
    x = np.random.default_rng(6).standard_normal((3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(moved.predict(x[None]), plain.predict(x[None]), rtol=1e-6)
    for space in ("output", "probability"):
        objective = Objective.for_classes([1], 3, space=space)
        np.testing.assert_allclose(explain_once(moved, x, "input_x_gradient", objective).heatmaps,
                                   explain_once(plain, x, "input_x_gradient", objective).heatmaps, rtol=1e-5)


def test_a_softmax_behind_a_reshape_stays_where_it_is():
    """A reshape can change which axis a Softmax normalises: only an Identity after it is looked through."""
    model = sigmoid_head("Flatten")
    model.graph.node[-2].op_type = "Softmax"
    assert final_activation_last(model) is None
