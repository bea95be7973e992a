"""OnnxClassifier: detection, validation, batch rewriting and the batched evaluation loop."""

from __future__ import annotations

import builders
import numpy as np
import onnx
import pytest

from onnxplain.explainers import ModelConfig, Objective, OnnxClassifier, RunContext
from onnxplain.explainers.autodiff import INPUT_GRAD
from onnxplain.explainers.errors import Cancelled, DeadlineExceeded, InvalidArgument, InvalidModel, ResourceExhausted
from onnxplain.explainers.model import IMAGE, Evaluator, canonical_tensor

RNG = np.random.default_rng(0)
W = RNG.standard_normal((5, 3, 8, 8)).astype(np.float32)


def test_linear_model_scores_are_exact():
    classifier = OnnxClassifier(builders.linear(W))
    x = RNG.standard_normal((4, 3, 8, 8)).astype(np.float32)
    expected = np.einsum("kchw,nchw->nk", W, x)
    np.testing.assert_allclose(classifier.predict(x), expected, rtol=1e-5, atol=1e-5)
    info = classifier.info
    assert (info.layout, info.output_kind, info.batch_mode, info.num_classes) == ("NCHW", "logits", "dynamic", 5)
    assert info.labels[0] == "class_0" and info.providers[-1] == "CPUExecutionProvider"


def test_nhwc_is_detected_and_inputs_are_transposed():
    classifier = OnnxClassifier(builders.linear(W, layout="NHWC"))
    assert classifier.info.layout == "NHWC"
    x = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)  # canonical NCHW in, model gets NHWC
    np.testing.assert_allclose(classifier.predict(x), np.einsum("kchw,nchw->nk", W, x), rtol=1e-5, atol=1e-5)


def test_softmax_output_is_detected_as_probabilities():
    assert OnnxClassifier(builders.linear(W, softmax=True)).output_kind == "probabilities"
    assert OnnxClassifier(builders.linear(W)).output_kind == "logits"
    forced = OnnxClassifier(builders.linear(W, softmax=True), config=ModelConfig(output_kind="logits"))
    assert forced.output_kind == "logits"


def test_class_score_output_chosen_among_several():
    classifier = OnnxClassifier(builders.two_outputs(W))
    assert classifier.signature.output_name == "output_probability"
    assert classifier.output_kind == "probabilities"
    x = RNG.standard_normal((3, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(classifier.predict(x).sum(axis=1), 1.0, rtol=1e-5)


def test_fixed_batch_is_rewritten_and_verified():
    model = builders.linear(W, batch=1)  # batch 1 baked into the input and into a Reshape [1, 192]
    classifier = OnnxClassifier(model, config=ModelConfig(max_batch=4))
    assert classifier.batch_mode == "rewritten"
    assert classifier.max_batch == 4
    x = RNG.standard_normal((6, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(classifier.predict(x), np.einsum("kchw,nchw->nk", W, x), rtol=1e-5, atol=1e-5)


def test_unfixable_batch_falls_back_to_one_sample_per_run():
    # Flatten the whole tensor including the batch: a batch of 2 can never be right.
    model = builders.linear(W, batch=1)
    shape = next(i for i in model.graph.initializer if i.name == "flat_shape")
    shape.CopyFrom(onnx.numpy_helper.from_array(np.array([1, -1], np.int64), "flat_shape"))
    # Pin the allowzero attribute so the Reshape fix does not apply.
    reshape = next(n for n in model.graph.node if n.op_type == "Reshape")
    reshape.attribute.append(onnx.helper.make_attribute("allowzero", 1))
    classifier = OnnxClassifier(model)
    assert classifier.batch_mode == "per_sample" and classifier.max_batch == classifier.gradient_max_batch == 1
    x = RNG.standard_normal((3, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(classifier.predict(x), np.einsum("kchw,nchw->nk", W, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "source, fragment",
    [
        (b"", "not an ONNX model"),
        (b"\x00\x01garbage\xff" * 10, "not an ONNX model"),
        (b"PK\x03\x04 a zip file", "not an ONNX model"),
    ],
)
def test_corrupt_bytes_are_rejected_clearly(source, fragment):
    with pytest.raises(InvalidModel, match=fragment):
        OnnxClassifier.load(source)


def test_graph_that_is_not_an_image_classifier_is_rejected():
    model = builders.linear(W)
    model.graph.input[0].type.tensor_type.shape.dim.pop()  # rank 3 input
    with pytest.raises(InvalidModel, match="rank 3"):
        OnnxClassifier(model)


def test_invalid_graph_is_rejected_by_the_checker():
    model = builders.linear(W)
    model.graph.node[0].input[0] = "does_not_exist"
    with pytest.raises(InvalidModel, match="invalid ONNX graph"):
        OnnxClassifier(model)


def lying_model(real_shape: list[int]) -> onnx.ModelProto:
    """Declares logits [N, 10] but reshapes its Gemm output to ``real_shape`` (0 keeps the batch)."""
    helper = onnx.helper
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W"], ["scores"], transB=1),
        helper.make_node("Reshape", ["scores", "shape"], ["logits"]),
    ]
    inits = [onnx.numpy_helper.from_array(RNG.standard_normal((10, 3 * 8 * 8)).astype(np.float32), "W"),
             onnx.numpy_helper.from_array(np.array(real_shape, np.int64), "shape")]
    image = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 8, 8])
    declared = helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 10])
    graph = helper.make_graph(nodes, "liar", [image], [declared], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize(("real_shape", "produced"), [([0, 10, 1, 1], r"\[2, 10, 1, 1\]"), ([0, 5, 2], r"\[2, 5, 2\]"),
                                                      ([-1, 5], r"\[4, 5\]")])
def test_a_model_whose_real_output_is_not_the_declared_batch_by_classes_is_refused_at_load(real_shape, produced):
    with pytest.raises(InvalidModel, match=r"'logits' is declared \[N, 10\] but the model produces " + produced):
        OnnxClassifier(lying_model(real_shape))
    assert OnnxClassifier(lying_model([0, 10])).num_classes == 10  # the honest twin loads


def test_labels_must_match_the_classes():
    with pytest.raises(InvalidModel, match="5 classes"):
        OnnxClassifier(builders.linear(W), config=ModelConfig(labels=("a", "b")))


def test_run_chunks_counts_and_keeps_order():
    classifier = OnnxClassifier(builders.linear(W), config=ModelConfig(max_batch=4))
    x = RNG.standard_normal((10, 3, 8, 8)).astype(np.float32)
    context = RunContext()
    chunks = list(classifier.run(10, lambda a, b: {IMAGE: x[a:b]}, context=context))
    assert [(c.start, c.stop) for c in chunks] == [(0, 4), (4, 8), (8, 10)]
    assert context.forward == 10 and context.backward == 0
    scores = np.concatenate([c.outputs["logits"] for c in chunks])
    np.testing.assert_allclose(scores, np.einsum("kchw,nchw->nk", W, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("config", "forward_chunks", "gradient_chunks"), [
    (ModelConfig(max_batch=4), [4, 4, 2], [4, 4, 2]),
    (ModelConfig(max_batch=4, gradient_max_batch=3), [4, 4, 2], [3, 3, 3, 1]),
])
def test_gradient_graphs_run_in_chunks_of_gradient_max_batch(config, forward_chunks, gradient_chunks):
    classifier = OnnxClassifier(builders.linear(W), config=config)
    x = RNG.standard_normal((10, 3, 8, 8)).astype(np.float32)
    seeds = np.eye(5, dtype=np.float32)[np.arange(10) % 5]
    forward = list(classifier.run(10, lambda a, b: {IMAGE: x[a:b]}, context=RunContext()))
    backward = list(Evaluator(classifier).gradient_rows(10, lambda a, b: (x[a:b], seeds[a:b])))
    assert [c.stop - c.start for c in forward] == forward_chunks
    assert [c.stop - c.start for c in backward] == gradient_chunks
    grads = np.concatenate([c.outputs[INPUT_GRAD] for c in backward])
    np.testing.assert_allclose(grads, W[np.arange(10) % 5], rtol=1e-6)
    assert classifier.info.gradient_max_batch == gradient_chunks[0]


@pytest.mark.parametrize("value", [0, 5000, 2.5, "4"])
def test_gradient_max_batch_is_checked(value):
    with pytest.raises(InvalidArgument) as info:
        ModelConfig(gradient_max_batch=value)
    assert info.value.field == "config.gradient_max_batch"


def test_run_stops_between_chunks_when_cancelled():
    classifier = OnnxClassifier(builders.linear(W), config=ModelConfig(max_batch=2))
    x = RNG.standard_normal((10, 3, 8, 8)).astype(np.float32)
    context = RunContext()
    done = []
    with pytest.raises(Cancelled):
        for chunk in classifier.run(10, lambda a, b: {IMAGE: x[a:b]}, context=context):
            done.append(chunk.stop)
            context.cancel()
    assert done == [2] and context.forward == 2


def test_a_passed_deadline_stops_the_run_as_deadline_exceeded_and_the_first_reason_wins():
    classifier = OnnxClassifier(builders.linear(W), config=ModelConfig(max_batch=2))
    x = RNG.standard_normal((10, 3, 8, 8)).astype(np.float32)
    context = RunContext()
    with pytest.raises(DeadlineExceeded, match="deadline exceeded"):
        for _ in classifier.run(10, lambda a, b: {IMAGE: x[a:b]}, context=context):
            context.cancel("deadline exceeded", deadline=True)
            context.cancel("the client went away")  # later reasons do not replace the first
    assert context.forward == 2
    cancelled = RunContext()
    cancelled.cancel()
    assert type(cancelled.stopped()) is Cancelled


def test_run_enforces_the_evaluation_budget():
    classifier = OnnxClassifier(builders.linear(W), config=ModelConfig(max_batch=4))
    x = RNG.standard_normal((10, 3, 8, 8)).astype(np.float32)
    with pytest.raises(ResourceExhausted, match="more than 6"):
        list(classifier.run(10, lambda a, b: {IMAGE: x[a:b]}, context=RunContext(max_evaluations=6)))


def test_preprocessed_tensor_is_checked():
    classifier = OnnxClassifier(builders.linear(W, layout="NHWC"))
    good = RNG.standard_normal((1, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(canonical_tensor(good, classifier.model_input), good[0].transpose(2, 0, 1))
    with pytest.raises(InvalidArgument, match=r"shape \[1, 3, 8, 8\].*allowed: \[8, 8, 3\]"):
        canonical_tensor(RNG.standard_normal((1, 3, 8, 8)).astype(np.float32), classifier.model_input)
    with pytest.raises(InvalidArgument, match="datatype float64.*allowed: float32"):
        canonical_tensor(good.astype(np.float64), classifier.model_input)
    with pytest.raises(InvalidArgument, match="NaN"):
        canonical_tensor(np.full((8, 8, 3), np.nan, np.float32), classifier.model_input)


class _ReportsOpenVino(OnnxClassifier):
    """A CPU classifier that says it runs on OpenVINO's provider (this machine has no OpenVINO build)."""

    @property
    def providers(self) -> tuple[str, ...]:
        return ("OpenVINOExecutionProvider", "CPUExecutionProvider")


def test_gradient_methods_are_refused_on_an_unchecked_provider_and_forward_methods_run():
    """OpenVINO's provider returned gradients off by 10⁶ of their range on onnxplain's gradient graphs
    (bench/README.md): a white-box method there is refused by name before any pass, a forward-only one runs."""
    from onnxplain.explainers.errors import FailedPrecondition
    from onnxplain.explainers.explain import explain
    from onnxplain.explainers.model.provider_check import check_gradient_providers

    check_gradient_providers(("CPUExecutionProvider",))  # checked, and exact here
    classifier = _ReportsOpenVino(builders.small_cnn())
    image = np.random.default_rng(0).standard_normal((3, 16, 16)).astype(np.float32)
    objective = Objective.for_classes([0], classifier.num_classes)
    with pytest.raises(FailedPrecondition, match="not available on OpenVINOExecutionProvider.*CPUExecutionProvider"):
        list(explain(classifier, image, "saliency", objective, {}))
    *_, final = explain(classifier, image, "occlusion", objective, {"window": 4, "stride": 4})
    assert np.isfinite(final.heatmaps).all()


def test_a_provider_that_computes_the_masks_inexactly_is_refused(monkeypatch):
    """The self-check runs the mask formulas on the provider at the kinks: masks built with a scale too small
    for the smallest normal floats (2⁻¹²⁶·2²⁰ < 1: a fraction, not 1) fail it, and gradients are refused."""
    from onnxplain.explainers.autodiff.rules import activations
    from onnxplain.explainers.errors import FailedPrecondition
    from onnxplain.explainers.model import provider_check

    assert provider_check.masks_are_exact(("CPUExecutionProvider",))
    exact = activations._affine_clip
    monkeypatch.setattr(activations, "_affine_clip",
                        lambda ctx, y, scale, offset: exact(ctx, y, min(scale, 2.0**20), offset))
    provider_check.masks_are_exact.cache_clear()
    try:
        with pytest.raises(FailedPrecondition, match="computes the gradient graphs' ReLU masks inexactly"):
            provider_check.check_gradient_providers(("CPUExecutionProvider",))
    finally:
        monkeypatch.undo()
        provider_check.masks_are_exact.cache_clear()
    assert provider_check.masks_are_exact(("CPUExecutionProvider",))
