"""The contract and the architecture: committed stubs match proto/, layering holds."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from onnxplain.v1 import explanation_service_pb2 as ex_pb2

from explainers import list_methods

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "proto" / "onnxplain" / "v1"
SERVICE_MD_NAMES = {
    "occlusion", "lime", "rise", "extremal_perturbation", "meaningful_perturbation", "score_cam", "saliency",
    "input_x_gradient", "guided_backprop", "deconvnet", "cam", "grad_cam", "guided_grad_cam", "grad_cam_plus_plus",
    "integrated_gradients", "smoothgrad", "deeplift", "fullgrad", "cem", "cdeepex",
}


def test_committed_stubs_match_a_fresh_generation(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_proto.py"), "--out", str(tmp_path)], check=True)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    committed = sorted(p.relative_to(GENERATED.parent.parent) for p in GENERATED.glob("*_pb2*.py*"))
    assert fresh == committed, "run `make proto` and commit the stubs"
    for path in fresh:
        assert (tmp_path / path).read_text() == (GENERATED.parent.parent / path).read_text(), (
            f"{path} is stale: run `make proto`"
        )


def imports(package: str) -> dict[Path, set[str]]:
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[path.relative_to(ROOT)] = names
    return found


def test_explainers_knows_nothing_about_grpc_and_only_model_imports_onnxruntime():
    for path, names in imports("explainers").items():
        assert not names & {"grpc", "server", "client", "onnxplain", "torch"}, path
        if "onnxruntime" in names:
            assert path.parts[:2] == ("explainers", "model"), path


def test_client_is_thin():
    for path, names in imports("client").items():
        allowed_lazy = {"server"} if path.name == "cli.py" else set()  # `onnxplain serve` imports it lazily
        assert not names & ({"onnxruntime", "onnx", "explainers", "torch", "skimage", "sklearn", "PIL"} - allowed_lazy), path


def test_nothing_imports_torch_at_run_time():
    for package in ("explainers", "server", "client"):
        for path, names in imports(package).items():
            assert "torch" not in names, path


def test_method_names_are_the_contract_names():
    names = {spec.name for spec in list_methods()}
    assert names <= SERVICE_MD_NAMES
    oneof = {f.name for f in ex_pb2.ExplainRequest.DESCRIPTOR.oneofs_by_name["params"].fields}
    assert oneof <= names, "a params message without a registered method"


@pytest.mark.parametrize("spec", list_methods(), ids=lambda s: s.name)
def test_every_parameter_has_a_proto_field(spec):
    """Generated clients can set every library parameter of a method that has a params message."""
    oneof = ex_pb2.ExplainRequest.DESCRIPTOR.oneofs_by_name["params"]
    message = next((f.message_type for f in oneof.fields if f.name == spec.name), None)
    if spec.params.describe():
        assert message is not None, f"{spec.name} has parameters but no params message"
        assert {p.name for p in spec.params.describe()} == set(message.fields_by_name)


def test_every_package_is_listed_in_pyproject():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {str(p.parent.relative_to(ROOT)).replace("/", ".") for top in ("explainers", "server", "client")
             for p in (ROOT / top).rglob("__init__.py")}
    found |= {str(p.parent.relative_to(ROOT / "proto")).replace("/", ".") for p in (ROOT / "proto").rglob("__init__.py")}
    assert found == listed
