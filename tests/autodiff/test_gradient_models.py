"""Whole gradient models: analytic answers, invariants, integration with OnnxClassifier."""

from __future__ import annotations

from pathlib import Path

import builders
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxplain.explainers import Evaluator, ModelConfig, Objective, OnnxClassifier, RunContext
from onnxplain.explainers.autodiff import (
    BASELINE_INPUT,
    CLASS_WEIGHTS,
    INPUT_GRAD,
    GradientError,
    build_gradient_model,
    rule_set,
)
from onnxplain.explainers.errors import InvalidArgument
from onnxplain.explainers.model import Variant, layer_gradient
from onnxplain.explainers.model.provider_check import kink_gradient

RNG = np.random.default_rng(5)


def gradients(classifier: OnnxClassifier, x: np.ndarray, weights: np.ndarray, max_batch: int | None = None, **kw):
    chunks = list(Evaluator(classifier).gradient_rows(len(x), lambda a, b: (x[a:b], weights[a:b]),
                                                      max_batch=max_batch, **kw))
    return chunks, np.concatenate([c.outputs[INPUT_GRAD] for c in chunks])


def test_linear_model_gradient_is_its_weights():
    w = RNG.standard_normal((4, 3, 5, 5)).astype(np.float32)
    classifier = OnnxClassifier(builders.linear(w, softmax=True))  # the Softmax is cut: logits are explained
    x = RNG.standard_normal((3, 3, 5, 5)).astype(np.float32)
    seeds = np.eye(4, dtype=np.float32)[[0, 3, 1]]
    seeds[2, 2] = -1  # "1 rather than 2"
    chunks, grad = gradients(classifier, x, seeds)
    np.testing.assert_allclose(grad[0], w[0], rtol=1e-6)
    np.testing.assert_allclose(grad[1], w[3], rtol=1e-6)
    np.testing.assert_allclose(grad[2], w[1] - w[2], rtol=1e-5, atol=1e-6)
    assert chunks[0].outputs[classifier.signature.output_name].shape == (3, 4)


def test_nhwc_model_gradients_come_back_in_the_canonical_layout():
    w = RNG.standard_normal((2, 3, 4, 6)).astype(np.float32)
    classifier = OnnxClassifier(builders.linear(w, layout="NHWC"))
    x = RNG.standard_normal((2, 3, 4, 6)).astype(np.float32)
    _, grad = gradients(classifier, x, np.eye(2, dtype=np.float32))
    np.testing.assert_allclose(grad, w, rtol=1e-6)


def test_probabilities_can_be_differentiated_instead_of_logits():
    w = RNG.standard_normal((3, 1, 2, 2)).astype(np.float32)
    model = builders.linear(w, softmax=True)
    x = RNG.standard_normal((1, 1, 2, 2)).astype(np.float64)
    seed = np.array([[1.0, 0, 0]])
    graph = build_gradient_model(model, cut_final_activation=False)
    assert graph.score_tensor == "probs"
    z = np.einsum("kchw,nchw->nk", w.astype(np.float64), x)
    p = np.exp(z) / np.exp(z).sum()
    expected = p[0, 0] * (w[0] - np.einsum("k,kchw->chw", p[0], w))  # d p_0 / d x
    grad = ReferenceEvaluator(graph.model).run([INPUT_GRAD], {"x": x.astype(np.float32),
                                                              CLASS_WEIGHTS: seed.astype(np.float32)})[0]
    np.testing.assert_allclose(grad[0], expected, rtol=1e-4, atol=1e-6)


def test_layer_gradient_is_the_input_gradient_of_the_head():
    classifier = OnnxClassifier(builders.small_cnn(size=8, hidden=4, classes=3))
    x = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    seeds = np.eye(3, dtype=np.float32)[[2, 0]]
    chunks, _ = gradients(classifier, x, seeds, layers=["act"])
    activation, layer_grad = chunks[0].outputs["act"], chunks[0].outputs[layer_gradient("act")]
    fw = numpy_helper.to_array(next(i for i in classifier.model.graph.initializer if i.name == "fw"))
    # head = GlobalAveragePool → Gemm: d score / d act[c, h, w] = fw[class, c] / (H·W)
    expected = (seeds @ fw)[:, :, None, None] / 64 * np.ones((1, 1, 8, 8))
    np.testing.assert_allclose(layer_grad, expected, rtol=1e-6)
    assert activation.shape == (2, 4, 8, 8) and np.all(activation >= 0)


def test_a_layer_only_graph_differentiates_only_the_head():
    """Without the input gradient the backward stops at the layer: no Conv is differentiated (the
    head is GlobalAveragePool → Flatten → Gemm), and the layer gradient is the analytic one."""
    model = builders.small_cnn(size=8, hidden=4, classes=3)
    head = build_gradient_model(model, layers=["act"], input_gradient=False)
    full = build_gradient_model(model, layers=["act"])
    assert head.input_grad is None and INPUT_GRAD not in [o.name for o in head.model.graph.output]
    backward_ops = {n.op_type for n in head.model.graph.node if n.name.startswith("grad/") or "grad/" in n.output[0]}
    assert "Gemm" in backward_ops and not backward_ops & {"Conv", "ConvTranspose", "Greater", "Mul"}
    assert len(head.model.graph.node) < len(full.model.graph.node)
    x = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    seeds = np.eye(3, dtype=np.float32)[[1, 2]]
    run = ReferenceEvaluator(head.model).run(None, {"x": x, CLASS_WEIGHTS: seeds})
    got = dict(zip([o.name for o in head.model.graph.output], run))[head.layers["act"][1]]
    fw = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "fw"))
    np.testing.assert_allclose(got, (seeds @ fw)[:, :, None, None] / 64 * np.ones((1, 1, 8, 8)), rtol=1e-6)


@pytest.mark.parametrize("kwargs", [{}, {"layers": ["act"], "baseline_pass": True}])
def test_a_graph_without_the_input_gradient_needs_layers_and_no_baseline(kwargs):
    with pytest.raises(InvalidArgument, match="layers"):
        build_gradient_model(builders.small_cnn(), input_gradient=False, **kwargs)


@pytest.mark.parametrize("rules", ["vanilla", "guided_backprop", "deconvnet"])
def test_batch_sizes_give_identical_per_sample_gradients(rules):
    classifier = OnnxClassifier(builders.small_cnn(), config=ModelConfig(max_batch=8))
    x = RNG.standard_normal((8, 3, 16, 16)).astype(np.float32)
    seeds = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, 8)]
    _, reference = gradients(classifier, x, seeds, max_batch=8, rules=rules)
    for batch in (1, 3):
        _, grad = gradients(classifier, x, seeds, max_batch=batch, rules=rules)
        np.testing.assert_allclose(grad, reference, rtol=1e-5, atol=1e-7)


def test_gradients_are_charged_and_the_graph_is_cached():
    classifier = OnnxClassifier(builders.small_cnn(), config=ModelConfig(max_batch=4))
    x = RNG.standard_normal((5, 3, 16, 16)).astype(np.float32)
    context = RunContext()
    list(Evaluator(classifier, context).gradient_rows(5, lambda a, b: (x[a:b], np.ones((b - a, 3), np.float32))))
    assert (context.forward, context.backward) == (5, 5)
    first = classifier.compiled(Variant.gradient())
    assert classifier.compiled(Variant.gradient()) is first


def test_only_the_needed_nodes_are_kept():
    graph = build_gradient_model(builders.small_cnn()).model
    ops = [n.op_type for n in graph.graph.node]
    # forward + data gradient + the ReLU mask (a HardSigmoid); no weight gradients
    assert ops.count("Gemm") == 2 and ops.count("Conv") == 2
    masks = [n for n in graph.graph.node if n.op_type == "HardSigmoid" and n.input[0] == "act"]
    assert len(masks) == 1
    assert {i.name for i in graph.graph.input} == {"x", CLASS_WEIGHTS}


def test_missing_rule_is_a_build_time_error_naming_op_and_node():
    model = builders.small_cnn()
    node = next(n for n in model.graph.node if n.op_type == "Relu")
    node.op_type, node.name = "Softsign", "my_activation"
    with pytest.raises(GradientError, match=r"op Softsign \(node 'my_activation'\); supported: .*Relu"):
        build_gradient_model(model)
    custom = builders.small_cnn()
    custom.graph.node[1].domain = "com.example"
    custom.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(GradientError, match="com.example.Relu"):
        build_gradient_model(custom)


def test_nodes_off_the_input_score_path_need_no_rule():
    # an unsupported op on a constant branch (not depending on the input) is never visited
    model = builders.small_cnn()
    model.graph.initializer.append(numpy_helper.from_array(np.ones(3, np.float32), "ones"))
    model.graph.node.insert(0, helper.make_node("Softsign", ["ones"], ["soft"]))
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    gemm.output[0] = "pre"
    model.graph.node.append(helper.make_node("Add", ["pre", "soft"], ["logits"]))
    onnx.checker.check_model(model)
    graph = build_gradient_model(model).model
    assert "Softsign" not in {n.op_type for n in graph.graph.node if n.name.startswith("grad/")}


def _relu_mlp(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"]),
        helper.make_node("Gemm", ["f", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("Gemm", ["a", "w2", "b2"], ["logits"], transB=1),
    ]
    inits = [numpy_helper.from_array(v.astype(np.float32), n) for n, v in
             [("w1", rng.standard_normal((6, 8))), ("b1", rng.standard_normal(6)),
              ("w2", rng.standard_normal((3, 6))), ("b2", rng.standard_normal(3))]]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 2, 2])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_baseline_pass_lets_a_rule_read_the_baseline_tensors():
    """A DeepLIFT-rescale ReLU written against ctx.baseline satisfies completeness exactly."""

    def rescale_relu(ctx, node, grads):
        x, y = node.input[0], node.output[0]
        dx = ctx.op("Sub", x, ctx.baseline(x))
        dy = ctx.op("Sub", y, ctx.baseline(y))
        small = ctx.op("Less", ctx.op("Abs", dx), ctx.const(1e-6, like=x))
        safe = ctx.op("Where", small, ctx.const(1.0, like=x), dx)
        gradient = ctx.op("Where", ctx.op("Greater", x, ctx.const(0, like=x)), ctx.const(1, like=x), ctx.const(0, like=x))
        multiplier = ctx.op("Where", small, gradient, ctx.op("Div", dy, safe))
        return [ctx.op("Mul", grads[0], multiplier)]

    model = _relu_mlp()
    graph = build_gradient_model(model, rules={**rule_set("vanilla"), "Relu": rescale_relu}, baseline_pass=True)
    assert graph.baseline_input == BASELINE_INPUT
    x = RNG.standard_normal((4, 2, 2, 2)).astype(np.float32)
    baseline = np.zeros_like(x)
    seeds = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    evaluator = ReferenceEvaluator(graph.model)
    grad, logits = evaluator.run([INPUT_GRAD, "logits"], {"x": x, BASELINE_INPUT: baseline, CLASS_WEIGHTS: seeds})
    base_logits = ReferenceEvaluator(model).run(["logits"], {"x": baseline})[0]
    attribution = ((x - baseline) * grad).reshape(4, -1).sum(1)
    expected = ((logits - base_logits) * seeds).sum(1)
    np.testing.assert_allclose(attribution, expected, rtol=1e-5, atol=1e-5)
    # without a reference pass the same rule set fails at build time with a clear message
    with pytest.raises(GradientError, match="baseline pass"):
        build_gradient_model(model, rules={**rule_set("vanilla"), "Relu": rescale_relu})


def test_unknown_layer_is_rejected():
    with pytest.raises(Exception, match="no tensor named 'nope'"):
        build_gradient_model(builders.small_cnn(), layers=["nope"])


def test_candidate_layers_and_default_cam_layer():
    classifier = OnnxClassifier(builders.small_cnn(size=16, hidden=4))
    layers = {layer.name: layer for layer in classifier.layers()}
    assert layers["act"].shape == (4, 16, 16) and layers["conv"].op_type == "Conv"
    assert classifier.cam_layer == "act"


@pytest.mark.parametrize("rules", ["vanilla", "guided_backprop", "deconvnet"])
def test_rule_sets_match_literal_numpy_backprop_on_a_relu_net(rules):
    """x → Gemm(w1, b1) → Relu → Gemm(w2, b2): backpropagate by hand with each rule's ReLU."""
    model = _relu_mlp(seed=3)
    weights = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    x = RNG.standard_normal((5, 2, 2, 2)).astype(np.float32)
    seeds = np.eye(3, dtype=np.float32)[[0, 1, 2, 1, 0]]
    hidden = x.reshape(5, -1).astype(np.float64) @ weights["w1"].T + weights["b1"]
    upstream = seeds.astype(np.float64) @ weights["w2"]  # gradient reaching the ReLU output
    through = {
        "vanilla": upstream * (hidden > 0),
        "guided_backprop": upstream * (hidden > 0) * (upstream > 0),
        "deconvnet": np.maximum(upstream, 0),
    }[rules]
    assert (through >= 0).all() or rules == "vanilla"  # what reaches the layer below is non-negative
    expected = (through @ weights["w1"]).reshape(x.shape)
    graph = build_gradient_model(model, rules=rules).model
    grad = ReferenceEvaluator(graph).run([INPUT_GRAD], {"x": x, CLASS_WEIGHTS: seeds})[0]
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["vgg_legacy", "resnet_legacy"])
@pytest.mark.parametrize("rules", ["guided_backprop", "deconvnet"])
def test_the_gradient_leaving_every_relu_is_non_negative_on_real_nets(name, rules):
    """Guided backprop and DeconvNet: what every ReLU passes down is ≥ 0 (what reaches it from the
    layer above, and the input gradient, need not be). VGG (conv, MaxPool, Linear–ReLU head) and
    ResNet (residual Adds): each ReLU input feeds only that ReLU, so its gradient is the ReLU's."""
    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    model = onnx.load(fixtures / f"{name}.onnx")
    relu_inputs = [node.input[0] for node in model.graph.node if node.op_type == "Relu"]
    consumers = [sum(tensor in node.input for node in model.graph.node) for tensor in relu_inputs]
    assert len(relu_inputs) >= 4 and set(consumers) == {1}
    x = np.load(fixtures / f"{name}.npz")["x"][:2]
    classifier = OnnxClassifier(model, config=ModelConfig(max_batch=4))
    objective = Objective.for_classes([3, 7], 10, contrast=1)

    def gradients(rule_set: str):
        (batch,) = Evaluator(classifier).gradients(2, lambda start, stop: x[start:stop], objective,
                                                   layers=relu_inputs, rules=rule_set)
        return batch

    modified, vanilla = gradients(rules), gradients("vanilla")
    assert all((modified.layers[tensor][1] >= 0).all() for tensor in relu_inputs)
    assert any((vanilla.layers[tensor][1] < 0).any() for tensor in relu_inputs)  # the plain gradient goes negative
    assert (modified.input_grad < 0).any()  # behind the first conv, the rules' gradient has both signs


@pytest.mark.parametrize("activation", ["Relu", "Clip"])
def test_relu_and_relu6_masks_are_exact_at_the_kinks(activation):
    """The blocked-layout masks (HardSigmoids) give exactly [x > 0] / [0 < x < 6] at the values where a
    scaled formula could go wrong: ±0, the smallest normal float, the floats next to 6, and values whose
    scaled product overflows — tiled over a 64×64 map so the vectorised kernels see them too, not only
    a scalar tail (the same check gates gradient graphs on a provider: model/provider_check.py)."""
    model, grad, expected = kink_gradient(activation, ["CPUExecutionProvider"])
    assert any(n.op_type == "HardSigmoid" and n.input[0] == "act" for n in model.graph.node)  # the blocked mask
    np.testing.assert_array_equal(grad, expected)


def test_a_zero_pad_before_a_conv_is_folded_into_its_pads():
    """TF-"SAME" exports pad explicitly before strided Convs: the builder differentiates Conv(X, pads = p + q)
    instead, with no Slice in the backward, and the input gradient equals the one through the kept Pad
    (keeping it is forced here by requesting the Pad's output as a layer)."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Pad", ["x", "amounts"], ["padded"], mode="constant"),
        helper.make_node("Conv", ["padded", "w"], ["conv"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 0, 1]),
        helper.make_node("Relu", ["conv"], ["act"]),
        helper.make_node("Flatten", ["act"], ["logits"]),
    ]
    inits = [numpy_helper.from_array(np.array([0, 0, 0, 1, 0, 0, 2, 1], np.int64), "amounts"),
             numpy_helper.from_array(rng.standard_normal((2, 3, 3, 3)).astype(np.float32), "w")]
    graph = helper.make_graph(nodes, "padded", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 9, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 50])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    folded = build_gradient_model(model)
    kept = build_gradient_model(model, layers=["padded"])
    assert not any(n.op_type in ("Pad", "Slice") for n in folded.model.graph.node)
    assert any(n.op_type == "Pad" for n in kept.model.graph.node)
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    feed = {"x": x, CLASS_WEIGHTS: rng.standard_normal((2, 50)).astype(np.float32)}
    grads = [ort.InferenceSession(b.model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        [b.score_output, b.input_grad], feed) for b in (folded, kept)]
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-5, atol=1e-6)
    assert np.abs(grads[0][1]).max() > 0.1


@pytest.mark.parametrize("score_seed", ["linear", "softmax", "log_softmax"])
def test_score_seeds_differentiate_the_named_function_of_the_logits(score_seed):
    """z = W x: the input gradient of Σ_c w_c φ(z)_c is Wᵀ (∂φ/∂z)ᵀ w, with the seed computed in the graph —
    softmax: s ⊙ (w − s·w), log-softmax: w − (Σw) s, s = softmax(z) — checked against numpy, per sample."""
    import onnxruntime as ort

    weights = RNG.standard_normal((4, 2, 3, 3)).astype(np.float32)
    built = build_gradient_model(builders.linear(weights), score_seed=score_seed)
    session = ort.InferenceSession(built.model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = RNG.standard_normal((3, 2, 3, 3)).astype(np.float32)
    w = RNG.standard_normal((3, 4)).astype(np.float32)
    (grad,) = session.run([built.input_grad], {"x": x, CLASS_WEIGHTS: w})
    flat = weights.reshape(4, -1).astype(np.float64)
    z = x.reshape(3, -1) @ flat.T
    s = np.exp(z - z.max(axis=1, keepdims=True))
    s /= s.sum(axis=1, keepdims=True)
    seed = {"linear": w, "softmax": s * (w - (s * w).sum(axis=1, keepdims=True)),
            "log_softmax": w - w.sum(axis=1, keepdims=True) * s}[score_seed]
    np.testing.assert_allclose(grad.reshape(3, -1), seed @ flat, rtol=1e-4, atol=1e-5)


def test_an_unknown_score_seed_is_refused_by_name():
    with pytest.raises(ValueError, match="score_seed 'probit'"):
        build_gradient_model(builders.linear(np.ones((2, 1, 2, 2), np.float32)), score_seed="probit")
