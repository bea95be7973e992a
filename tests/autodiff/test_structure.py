"""The autodiff package's shape: no import cycle, a table row for every rule, rules that leave the
forward graph alone and decline with a reason."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import test_rules_core
import test_rules_data
import test_rules_elementwise
import test_rules_layers

from onnxplain.explainers import autodiff
from onnxplain.explainers.autodiff import GradientError, build_gradient_model, supported_ops, vjp

PACKAGE = Path(autodiff.__file__).parent
ROOT = "onnxplain.explainers.autodiff"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([ROOT, *parts])


def _import_graph() -> dict[str, set[str]]:
    """Module → the autodiff modules it imports (at any depth in the file, lazy imports included).

    ``from . import x`` counts as importing module ``x`` when ``x`` is one; the implicit import of
    a parent package is not counted (every submodule has it)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.level and node.module else (base if node.level else node.module)
                for alias in node.names:
                    edges.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
            elif isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
        graph[name] = {edge for edge in edges if edge in modules and edge != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target] if target in path else [module, target]
            if target not in state and (found := visit(target, path + [target])):
                return found
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module, [module])):
            return found
    return None


def test_the_autodiff_modules_import_each_other_without_a_cycle():
    graph = _import_graph()
    assert f"{ROOT}.registry" in graph[f"{ROOT}.rules.activations"]  # the walk sees imports at all
    assert f"{ROOT}.rules" in graph[f"{ROOT}.rule_sets"]
    assert _cycle(graph) is None, " → ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


TABLES = test_rules_core.CASES + test_rules_data.CASES + test_rules_elementwise.CASES + test_rules_layers.CASES


def _ops_in(body: str) -> set[str]:
    return set(re.findall(r"=\s*([A-Z]\w*)\s*[<(]", body))


def test_every_supported_op_has_a_row_in_a_rule_table():
    covered = set().union(*(_ops_in(case.body) for case in TABLES))
    assert "Conv" in covered and "Resize" in covered  # the parse finds ops
    assert sorted(set(supported_ops()) - covered) == []


def _max_pool_model() -> onnx.ModelProto:
    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        pool (float[N, 1, 4, 4] x) => (float[N, K] score) {
            y = MaxPool <kernel_shape = [3, 3], strides = [1, 1]> (x)
            score = Flatten <axis = 1> (y)
        }
    """)
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("rules", ["vanilla", "deeplift_rescale"])
def test_max_pool_leaves_the_forward_node_untouched(rules):
    model = _max_pool_model()
    before = model.SerializeToString()
    built = build_gradient_model(model, rules=rules, baseline_pass=rules != "vanilla").model
    assert model.SerializeToString() == before
    forward = next(node for node in built.graph.node if node.name == "" and node.op_type == "MaxPool"
                   and node.input[0] == "x")
    assert list(forward.output) == ["y"]  # no Indices output was added to the forward node


def test_a_declined_rule_names_the_op_the_node_and_the_reason():
    from onnxplain.explainers.autodiff import Declined, registry

    @vjp("Softsign", rule_set="declines_for_test")
    def decline(ctx, node, grads):
        raise Declined("softsign is refused in this test")

    try:
        model = onnx.parser.parse_model("""
            <ir_version: 8, opset_import: ["" : 17]>
            m (float[N, 3] x) => (float[N, 3] y) { y = Softsign(x) }
        """)
        model.graph.node[0].name = "gate"
        with pytest.raises(GradientError, match=r"^Softsign node 'gate': softsign is refused in this test$"):
            build_gradient_model(model, rules="declines_for_test")
    finally:
        del registry._OVERRIDES["declines_for_test"]


def test_deeplift_records_where_it_falls_back_to_the_gradient():
    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        m (float[N, 3] x) => (float[N, 3] y) {
            e = Exp(x)
            y = Einsum <equation = "ij,ij,ij->ij"> (x, x, e)
        }
    """)
    built = build_gradient_model(model, rules="deeplift_rescale", baseline_pass=True)
    assert len(built.approximations) == 1
    assert "Einsum node 'y': an Einsum of three or more operands" in built.approximations[0]
    assert build_gradient_model(model).approximations == ()
    np.testing.assert_equal(len(built.model.graph.output), 2)
