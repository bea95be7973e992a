"""GraphIndex: producers, consumers, constants (folded lazily) and the walks graph passes share."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxplain.explainers.graph.dce import eliminate_dead_code
from onnxplain.explainers.graph.index import GraphIndex


@pytest.fixture
def model() -> onnx.ModelProto:
    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        m (float[N, 3] x, float[N, 3] side) => (float[N, 3] y, float[N, 3] other) {
            shape = Constant <value_ints = [-1, 3]> ()
            target = Identity(shape)
            doubled = Mul(x, two)
            flat = Reshape(doubled, target)
            y = Add(flat, x)
            other = Relu(side)
        }
    """)
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(2.0, np.float32), "two"))
    return model


def test_producers_consumers_inputs_and_opset(model):
    index = GraphIndex(model)
    assert index.producer("flat").op_type == "Reshape" and index.producer("x") is None
    assert [node.output[0] for node in index.consumers_of("x")] == ["doubled", "y"]
    assert index.consumers_of("y") == []
    assert index.inputs == ["x", "side"] and index.opset == 17


def test_constants_are_read_and_folded(model):
    index = GraphIndex(model)
    assert index.constant("two") == 2.0
    np.testing.assert_array_equal(index.constant("shape"), [-1, 3])
    assert index.constant("target") is None  # computed, not stored
    np.testing.assert_array_equal(index.folded_constants["target"], [-1, 3])  # folded through Identity
    assert "doubled" not in index.folded_constants  # depends on the input


def test_walks(model):
    index = GraphIndex(model)
    assert index.downstream(["x"]) == {"x", "doubled", "flat", "y"}
    assert index.downstream(["x"], lambda node, name: node.op_type != "Mul") == {"x", "y"}  # y reads x too
    assert index.upstream(["y"]) == {"y", "flat", "x", "doubled", "two", "target", "shape"}
    assert [n.output[0] for n in index.nodes_producing({"y", "other"})] == ["y", "other"]


def test_dead_code_elimination_keeps_what_the_outputs_need(model):
    eliminate_dead_code(model.graph, ["other"])
    assert [node.output[0] for node in model.graph.node] == ["other"]
    assert [init.name for init in model.graph.initializer] == [] and [o.name for o in model.graph.output] == ["other"]
