"""The contract and the architecture: committed stubs match proto/, layering holds."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from onnxplain.explainers import list_methods
from onnxplain.v1 import explanation_service_pb2 as ex_pb2

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
    proto_root = GENERATED.parent.parent
    committed = sorted(p.relative_to(proto_root) for p in proto_root.rglob("*_pb2*.py*"))
    assert fresh == committed, "run `make proto` and commit the stubs"
    for path in fresh:
        assert (tmp_path / path).read_text() == (proto_root / path).read_text(), f"{path} is stale: run `make proto`"


def imports(folder: str) -> dict[Path, set[str]]:
    """Absolute module names each file under ``folder`` imports, at any depth of the code (lazy ones too)."""
    found = {}
    for path in (ROOT / folder).rglob("*.py"):
        if "_pb2" in path.name:
            continue
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
        found[path.relative_to(ROOT)] = names
    return found


def imports_any(names: set[str], banned: set[str]) -> set[str]:
    """The imported names that are, or live under, a banned module."""
    return {n for n in names if any(n == b or n.startswith(b + ".") for b in banned)}


def test_explainers_knows_nothing_about_grpc_and_only_model_imports_onnxruntime():
    for path, names in imports("explainers").items():
        assert not imports_any(names, {"grpc", "onnxplain.v1", "onnxplain.server", "onnxplain.client", "torch"}), path
        if imports_any(names, {"onnxruntime"}):
            assert path.parts[:2] == ("explainers", "model"), path


def test_client_is_thin_and_never_imports_the_server():
    banned = {"onnxruntime", "onnx", "onnxplain.explainers", "onnxplain.server", "torch", "skimage", "sklearn", "PIL"}
    for path, names in imports("client").items():
        assert not imports_any(names, banned), path


def test_server_never_imports_the_client():
    for path, names in imports("server").items():
        assert not imports_any(names, {"onnxplain.client"}), path


def test_batch_sits_above_the_library_and_the_client_and_takes_only_the_model_repository_from_the_server():
    """onnxplain.batch may use the library in-process or a server through the client; of the server it uses only
    the model repository (a folder loads as the server loads it), and the library only lazily (a Ray driver with
    --server needs no onnxruntime)."""
    for path, names in imports("batch").items():
        server = imports_any(names, {"onnxplain.server"})
        assert server <= {"onnxplain.server.repository"} and not imports_any(names, {"torch"}), path
        source = (ROOT / path).read_text()
        top_level = {n.module for n in ast.parse(source).body if isinstance(n, ast.ImportFrom) and n.module}
        assert not imports_any(top_level, {"onnxplain.explainers", "onnxruntime"}), path


def test_the_contract_package_imports_only_numpy_and_protobuf_at_module_level():
    """``onnxplain`` and ``onnxplain.v1`` load on a thin install; only the CLI dispatcher reaches further (lazily)."""
    for path in (ROOT / "proto" / "onnxplain").rglob("*.py"):
        if "_pb2" in path.name or path.name in ("cli.py", "__main__.py"):
            continue
        top_level = [n for n in ast.parse(path.read_text()).body if isinstance(n, ast.Import | ast.ImportFrom)]
        names = {a.name for n in top_level if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in top_level if isinstance(n, ast.ImportFrom) and n.module}
        third_party = {n for n in names if n.split(".")[0] not in sys.stdlib_module_names}
        assert imports_any(third_party, {"numpy", "google", "onnxplain"}) == third_party, path


@pytest.mark.parametrize("folder", ["explainers", "server", "client", "batch", "proto", "tests", "tools", "bench"])
def test_no_bare_top_level_names(folder):
    """Everything imports through ``onnxplain.*``: a bare ``explainers``/``server``/``client`` import would load a
    second copy of each module (two method registries, two classes per exception) from the working directory."""
    for path, names in imports(folder).items():
        assert not imports_any(names, {"explainers", "server", "client", "batch"}), path


def test_nothing_imports_torch_at_run_time():
    for package in ("explainers", "server", "client", "batch", "proto"):
        for path, names in imports(package).items():
            assert not imports_any(names, {"torch"}), path


def test_method_names_are_the_contract_names():
    names = {spec.name for spec in list_methods()}
    assert names <= SERVICE_MD_NAMES
    oneof = {f.name for f in ex_pb2.ExplainRequest.DESCRIPTOR.oneofs_by_name["params"].fields}
    assert oneof <= names, "a params message without a registered method"


@pytest.mark.parametrize("name, number", [("score_cam", 23), ("cam", 25), ("grad_cam", 26),
                                          ("guided_grad_cam", 27), ("grad_cam_plus_plus", 28)])
def test_the_cams_share_layer_params_on_the_wire_of_their_former_messages(name, number):
    """Each CAM had its own ``{ optional string layer = 1; }`` message at the same oneof number: bytes an
    old client sends (hand-encoded here) decode as the shared LayerParams (Score-CAM: ScoreCamParams,
    whose field 1 is the same layer), and encode the same."""
    layer = b"features.7"
    inner = bytes([1 << 3 | 2, len(layer)]) + layer  # field 1, length-delimited
    old = bytes([(number << 3 | 2) & 0x7F | 0x80, (number << 3 | 2) >> 7, len(inner)]) + inner
    request = ex_pb2.ExplainRequest.FromString(old)
    assert request.WhichOneof("params") == name and getattr(request, name).layer == layer.decode()
    assert getattr(request, name).DESCRIPTOR.name == ("ScoreCamParams" if name == "score_cam" else "LayerParams")
    assert request.SerializeToString() == old


def test_method_info_fills_the_citation_and_its_deprecated_alias():
    from onnxplain.server.convert import method_info

    fields = ex_pb2.MethodInfo.DESCRIPTOR.fields_by_name
    assert (fields["reference"].number, fields["citation"].number) == (5, 8)
    assert fields["reference"].GetOptions().deprecated
    for spec in list_methods():
        message = method_info(spec)
        assert message.citation == message.reference == spec.citation and spec.citation


@pytest.mark.parametrize("spec", list_methods(), ids=lambda s: s.name)
def test_every_parameter_has_a_proto_field(spec):
    """Generated clients can set every library parameter of a method that has a params message."""
    oneof = ex_pb2.ExplainRequest.DESCRIPTOR.oneofs_by_name["params"]
    message = next((f.message_type for f in oneof.fields if f.name == spec.name), None)
    if spec.params.describe():
        assert message is not None, f"{spec.name} has parameters but no params message"
        assert {p.name for p in spec.params.describe()} == set(message.fields_by_name)


def test_every_package_is_listed_in_pyproject():
    """The folders map into one ``onnxplain`` namespace; a new sub-package must be listed to ship."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for package, folder in setuptools["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join((package, *relative.parts)))
    assert found == listed


def test_the_time_to_quality_parameters_reach_the_library_from_the_wire():
    from onnxplain.server.convert import params_from_proto
    from onnxplain.v1 import method_params_pb2 as mp

    score_cam = mp.ScoreCamParams(layer="act", skip_constant=True, constant_tolerance=0.25, top_channels=7)
    assert params_from_proto(score_cam) == {"layer": "act", "skip_constant": True, "constant_tolerance": 0.25,
                                            "top_channels": 7}
    lime = mp.LimeParams(sampling=mp.LIME_SAMPLING_QUASI_RANDOM, convergence_tolerance=0.5)
    assert params_from_proto(lime) == {"sampling": "quasi_random", "convergence_tolerance": 0.5}
    ig = mp.IntegratedGradientsParams(completeness_tolerance=0.25)
    assert params_from_proto(ig) == {"completeness_tolerance": 0.25}
