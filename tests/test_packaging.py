"""What a user installs: one ``onnxplain`` namespace in the wheel, a thin client without onnxruntime,
an sdist that carries the tests, and the README's in-process snippet running as written.

The wheel and sdist are built offline with the project's own build backend (setuptools, a dev
dependency) and installed into fresh virtual environments: the ``[cpu]`` one borrows its
dependencies from the test environment (a path file, not an editable install), the thin one sees
only numpy, grpcio and protobuf, so a stray import of the server or onnxruntime fails there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import builders
import numpy as np
import onnx
import pytest
from skimage import data

import onnxplain

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """The sdist built from this checkout, and the wheel built from the unpacked sdist (as pip builds it),
    each by setuptools' PEP 517 hook in its own process."""
    out = tmp_path_factory.mktemp("dist")

    def build(hook: str, source: Path) -> None:
        code = f"import sys; from setuptools import build_meta; build_meta.{hook}(sys.argv[1])"
        subprocess.run([sys.executable, "-c", code, str(out)], cwd=source, check=True, capture_output=True)

    build("build_sdist", ROOT)
    sdist = next(out.glob("onnxplain-*.tar.gz"))
    with tarfile.open(sdist) as archive:
        archive.extractall(out / "unpacked", filter="data")
    build("build_wheel", next((out / "unpacked").iterdir()))
    return {"wheel": next(out.glob("onnxplain-*.whl")), "sdist": sdist}


def thin_dependency_closure() -> set[str]:
    """Paths of the top-level names installed by onnxplain's requirements without extras, and theirs,
    recursively (each from wherever its distribution is installed)."""
    seen, names, todo = set(), set(), [r for r in metadata.requires("onnxplain") if "extra ==" not in r]
    while todo:
        project = re.match(r"[A-Za-z0-9._-]+", todo.pop())[0].lower()
        if project in seen:
            continue
        seen.add(project)
        dist = metadata.distribution(project)
        site = Path(dist.locate_file(""))
        names |= {str(site / f.parts[0]) for f in dist.files or () if f.parts[0] not in ("..", "__pycache__")}
        todo += [r for r in dist.requires or () if "extra ==" not in r]
    return names


def installed_site_dirs() -> set[Path]:
    """Every directory some installed distribution lives in (the test environment's dependencies)."""
    return {Path(dist.locate_file("")) for dist in metadata.distributions() if dist.metadata["Name"] != "onnxplain"}


def fresh_venv(root: Path, wheel: Path, dependency_dirs: list[Path]) -> Path:
    """A new virtualenv with ``wheel`` installed (no dependencies resolved) and ``dependency_dirs`` on its path."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True)
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "_test_dependencies.pth").write_text("".join(f"{d}\n" for d in dependency_dirs))
    return root / "bin"


def test_the_wheel_installs_one_top_level_name_typed_and_licensed(dist):
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = wheel.namelist()
        metadata = next(wheel.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"onnxplain"}
    for expected in ("onnxplain/py.typed", "onnxplain/v1/wire.py", "onnxplain/v1/tensor.proto",
                     "onnxplain/v1/model_service_pb2.pyi", "onnxplain/explainers/autodiff/rules/conv.py",
                     "onnxplain/server/app.py", "onnxplain/client/cli.py", "onnxplain/batch/runner.py"):
        assert expected in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert f"Version: {onnxplain.__version__}" in metadata
    requires = re.findall(r"^Requires-Dist: (.*)$", metadata, re.M)
    thin = [r for r in requires if "extra ==" not in r]
    assert thin and not any("onnx" in r for r in thin), thin
    assert any(r.startswith("onnxruntime") and 'extra == "cpu"' in r for r in requires)
    assert any(r.startswith("onnxruntime-gpu") and 'extra == "gpu"' in r for r in requires)
    assert any(r.startswith("ray[data]") and 'extra == "ray"' in r for r in requires)


def test_the_sdist_carries_everything_the_tests_need(dist):
    with tarfile.open(dist["sdist"]) as sdist:
        members = {"/".join(Path(m.name).parts[1:]) for m in sdist.getmembers() if m.isfile()}
    needed = {"LICENSE", "Makefile", "pyproject.toml", "MANIFEST.in", "README.md"}
    for folder in ("tests", "models", "proto", "explainers", "server", "client", "batch", "tools"):
        needed |= {str(p.relative_to(ROOT)) for p in (ROOT / folder).rglob("*")
                   if p.is_file() and not {"__pycache__", ".ruff_cache", ".pytest_cache"} & set(p.parts)}
    assert not needed - members, sorted(needed - members)[:20]


def test_the_thin_install_has_no_server_and_says_what_to_install(dist, tmp_path):
    deps = tmp_path / "thin-deps"
    deps.mkdir()
    closure = thin_dependency_closure()
    assert not {"onnxruntime", "onnx", "PIL", "skimage"} & {Path(p).name for p in closure}
    for path in closure:
        (deps / Path(path).name).symlink_to(path)
    bin_dir = fresh_venv(tmp_path / "venv", dist["wheel"], [deps])
    env = {**os.environ, "PYTHONPATH": ""}
    version = subprocess.run([bin_dir / "onnxplain", "--version"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert version.stdout.strip() == f"onnxplain {onnxplain.__version__}", version.stderr
    client = subprocess.run([bin_dir / "python", "-c", "import onnxplain.client, onnxplain.v1.wire; import onnxruntime"],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert "No module named 'onnxruntime'" in client.stderr  # the client imported; onnxruntime is absent
    serve = subprocess.run([bin_dir / "onnxplain", "serve", "--models", str(tmp_path)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    assert serve.returncode == 2
    assert "pip install 'onnxplain[cpu]'" in serve.stderr and "Traceback" not in serve.stderr
    batch = subprocess.run([bin_dir / "onnxplain", "batch", str(tmp_path), "--models", str(tmp_path), "-o", "out"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert batch.returncode == 2
    assert "pip install 'onnxplain[ray]'" in batch.stderr and "Traceback" not in batch.stderr


def test_the_installed_wheel_serves_a_repository_and_the_cli_explains(dist, tmp_path):
    bin_dir = fresh_venv(tmp_path / "venv", dist["wheel"], sorted(installed_site_dirs()))
    models = tmp_path / "models"
    (models / "linear").mkdir(parents=True)
    weights = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    onnx.save(builders.linear(weights), models / "linear" / "model.onnx")
    (tmp_path / "photo.png").write_bytes(builders.png(data.chelsea()[::20, ::20]))
    env = {**os.environ, "PYTHONPATH": ""}
    where = subprocess.run([bin_dir / "python", "-c", "import onnxplain.server as s; print(s.__file__)"],
                           cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout
    assert where.startswith(str(tmp_path / "venv")), where  # the wheel's copy, not the checkout
    server = subprocess.Popen([bin_dir / "onnxplain", "serve", "--models", str(models), "--host", "127.0.0.1",
                               "--port", "0"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline()
        port = re.search(r"serving on port (\d+)", line)
        assert port, line
        explained = subprocess.run(
            [bin_dir / "onnxplain", "explain", "photo.png", "--server", f"127.0.0.1:{port[1]}", "--method",
             "occlusion", "--param", "window=4", "--param", "stride=4", "-o", "out", "-q"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert explained.returncode == 0, explained.stderr
        heatmap = np.load(next((tmp_path / "out").glob("photo_occlusion_*[0-9].npy")))
        assert heatmap.shape == (16, 16) and np.isfinite(heatmap).all() and np.ptp(heatmap) > 0
    finally:
        server.terminate()
        server.wait(30)


def test_the_readme_in_process_snippet_runs_as_written(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "explain_once" in block)
    (tmp_path / "cat.jpg").write_bytes(builders.png(data.chelsea()))
    (tmp_path / "models").symlink_to(ROOT / "models")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    result, geometry = namespace["result"], namespace["geometry"]
    assert result.heatmaps.shape == (1, 224, 224) and np.isfinite(result.heatmaps).all()
    assert geometry.to_original(result.heatmaps).shape == (1, *data.chelsea().shape[:2])
