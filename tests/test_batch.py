"""Whole datasets: ``onnxplain.batch`` on an embedded Ray (one session for the module) and the plain
multi-image ``onnxplain explain``. Every good image's row holds the map the library computes for it directly;
corrupt images get error rows and the job goes on; a rerun evaluates nothing already written."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from builders import png
from serving import ServerThread

from onnxplain.batch import explain_dataset, heatmap
from onnxplain.batch.records import encode_heatmap
from onnxplain.batch.sources import list_paths
from onnxplain.cli import main as onnxplain
from onnxplain.explainers import ModelConfig, Objective, OnnxClassifier, explain_once, top_classes

OCCLUSION = {"window": 8, "stride": 8}
RISE = {"masks": 64, "grid": 4}
pytestmark = pytest.mark.timeout(240)  # a Ray job that cannot be scheduled waits forever: fail instead
CORRUPT = {"garbage.png": b"this is not an image", "empty.jpg": b"", "truncated.png": None}


@pytest.fixture(scope="module")
def local_ray():
    """One bounded embedded Ray for every batch test (what ``explain_dataset`` starts when none runs)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """24 small photos of assorted sizes (PNG and JPEG) and 3 corrupt files in one folder."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(7)
    for i in range(24):
        pixels = rng.integers(0, 256, (int(rng.integers(24, 64)), int(rng.integers(24, 64)), 3), dtype=np.uint8)
        (folder / f"photo{i:02d}.{'png' if i % 3 else 'jpg'}").write_bytes(png(pixels, "PNG" if i % 3 else "JPEG"))
    for name, content in CORRUPT.items():
        (folder / name).write_bytes(content if content is not None else (folder / "photo01.png").read_bytes()[:60])
    return folder


@pytest.fixture(scope="module")
def linear(repository) -> OnnxClassifier:
    folder = repository / "linear"
    return OnnxClassifier.load(folder / "model.onnx", config=ModelConfig.from_file(folder / "config.json"),
                               name="linear", threads=1)


@pytest.fixture(scope="module")
def server(repository):
    thread = ServerThread(repository)
    yield thread.address
    thread.stop()


def direct(classifier: OnnxClassifier, data: bytes, method: str, params: dict, *, top_k: int = 1, seed: int = 0):
    """The library's own answer for one image: (classes, Explanation)."""
    tensor, _ = classifier.preprocess(data)
    classes = top_classes(classifier.predict(tensor[None])[0], top_k)
    objective = Objective.for_classes(classes, classifier.num_classes)
    return classes, explain_once(classifier, tensor, method, objective, params, seed=seed)


def test_a_folder_in_process_matches_the_library_and_a_rerun_evaluates_nothing(local_ray, photos, repository, linear,
                                                                               tmp_path, capsys):
    out = tmp_path / "out"
    summary = explain_dataset(str(photos), out, "occlusion", models=repository, model="linear", params=OCCLUSION,
                              actors=2, progress=False)
    assert (summary.source_rows, summary.images, summary.failed, summary.rows, summary.skipped) == (27, 27, 3, 27, 0)
    table = pd.read_parquet(out).set_index("path")
    for path in sorted(photos.iterdir()):
        row = table.loc[str(path)]
        if path.name in CORRUPT:
            assert row["error"].startswith("InvalidArgument: image.encoded") and pd.isna(row["target"]), path
            continue
        (cls,), expected = direct(linear, path.read_bytes(), "occlusion", OCCLUSION)
        assert pd.isna(row["error"]) and (row["model"], row["method"]) == ("linear", "occlusion")
        # passes per image: the method's, plus the one forward that chose the best class
        assert (row["target"], row["label"], row["forward"]) == (cls, "abcd"[cls], expected.forward + 1)
        assert row["score"] == pytest.approx(float(expected.scores[0]), rel=1e-5) and row["seconds"] > 0
        np.testing.assert_array_equal(heatmap(row), expected.heatmaps[0].astype(np.float16).astype(np.float32))

    # the same job again, from the command line: every row is already written, nothing is evaluated
    code = onnxplain(["batch", str(photos), "--models", str(repository), "--model", "linear", "--method",
                      "occlusion", "--param", "window=8", "--param", "stride=8", "-o", str(out), "-q", "--json"])
    again = json.loads(capsys.readouterr().out)
    assert code == 0 and (again["images"], again["skipped"], again["rows"]) == (0, 27, 0)
    assert len(pd.read_parquet(out)) == 27
    # other parameters are another job: those rows are not "done"
    changed = explain_dataset(str(photos / "photo0[12].png"), out, "occlusion", models=repository, model="linear",
                              params={"window": 16, "stride": 16}, actors=1, progress=False)
    assert (changed.images, changed.skipped) == (2, 0)


def test_a_parquet_of_images_through_a_server_matches_the_library(local_ray, photos, repository, linear, server,
                                                                  tmp_path):
    """RISE with one seed for every image, the two best classes, heatmaps as 16-bit PNGs; a corrupt image's
    row carries the server's error."""
    names = ["photo03.jpg", "photo04.png", "photo05.png", "garbage.png"]
    source = tmp_path / "images.parquet"
    pq.write_table(pa.table({"path": names, "image": [(photos / n).read_bytes() for n in names]}), source)
    out = tmp_path / "out"
    summary = explain_dataset(str(source), out, "rise", server=server, model="linear", params=RISE, seed=3, top_k=2,
                              heatmap_format="png", actors=2, batch_size=2, progress=False)
    assert (summary.images, summary.failed, summary.rows) == (4, 1, 7)
    table = pd.read_parquet(out)
    assert table.loc[table.path == "garbage.png", "error"].item().startswith("INVALID_ARGUMENT: image.encoded")
    for name in names[:3]:
        classes, expected = direct(linear, (photos / name).read_bytes(), "rise", RISE, top_k=2, seed=3)
        rows = table[table.path == name].set_index("target").loc[classes]
        for (_, row), want, score in zip(rows.iterrows(), expected.heatmaps, expected.scores):
            tolerance = (want.max() - want.min()) / 65535 + 1e-6 * np.abs(want).max()
            np.testing.assert_allclose(heatmap(row), want, rtol=0, atol=tolerance)
            assert row["score"] == pytest.approx(float(score), rel=1e-5) and row["forward"] == expected.forward + 1


def test_sources_name_paths_relative_to_their_table(photos, tmp_path):
    (tmp_path / "list.csv").write_text(f"path,label\n{photos / 'photo01.png'},x\nmissing.png,y\n")
    assert list_paths(str(tmp_path / "list.csv")) == [str(photos / "photo01.png"), str(tmp_path / "missing.png")]
    assert list_paths(str(photos / "photo1*.png")) == [str(photos / f"photo{i}.png") for i in (10, 11, 13, 14, 16, 17, 19)]
    assert len(list_paths(str(photos))) == 27
    with pytest.raises(FileNotFoundError, match="no such folder"):
        list_paths(str(tmp_path / "nothing*.png"))
    pq.write_table(pa.table({"file": ["a.png"]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="no 'path' column"):
        list_paths(str(tmp_path / "bad.parquet"))


def test_png_heatmaps_decode_to_within_one_step_of_their_range():
    values = np.random.default_rng(0).standard_normal((12, 9)).astype(np.float32)
    row = {"path": "p", "error": None, "heatmap": encode_heatmap(values, "png"), "height": 12, "width": 9,
           "heatmap_min": values.min(), "heatmap_max": values.max()}
    step = (values.max() - values.min()) / 65535
    np.testing.assert_allclose(heatmap(row), values, atol=step)
    with pytest.raises(ValueError, match="error row"):
        heatmap({**row, "heatmap": None, "error": "InvalidArgument: image.encoded"})


def test_the_plain_cli_explains_a_folder_skips_what_exists_and_reports_json(photos, server, tmp_path, capsys):
    from onnxplain.client.cli import main as client

    out = tmp_path / "out"
    args = ["explain", str(photos), "--server", server, "--model", "linear", "--method", "occlusion", "--param",
            "window=8", "--param", "stride=8", "--no-overlay", "--no-original", "--json", "-q", "-o", str(out)]
    assert client(args) == 1  # the corrupt files failed; every other photo was explained
    report = json.loads(capsys.readouterr().out)
    assert (report["explained"], report["skipped"], report["failed"]) == (24, 0, 3)
    failed = {r["image"].rsplit("/", 1)[-1]: r["error"] for r in report["images"] if r["status"] == "failed"}
    assert set(failed) == set(CORRUPT) and all("INVALID_ARGUMENT" in e for e in failed.values())
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == 24 and all(n.endswith(".npy") and "_original" not in n for n in written)
    first = next(r for r in report["images"] if r["status"] == "explained")
    assert np.load(first["targets"][0]["heatmap"]).shape == (32, 32)

    (out / written[0]).unlink()
    assert client([*args, "--skip-existing"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["explained"], report["skipped"], report["failed"]) == (1, 23, 3)
    assert sorted(p.name for p in out.iterdir()) == written


def test_a_model_folder_loads_as_the_server_loads_it_and_the_chosen_model_is_reported(local_ray, photos, tmp_path):
    """A folder with only model.onnx and labels.txt: the server reads the labels; batch used to say class_0."""
    import builders
    import onnx

    repo = tmp_path / "models"
    (repo / "lonely").mkdir(parents=True)
    onnx.save(builders.linear(np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)),
              repo / "lonely" / "model.onnx")
    (repo / "lonely" / "labels.txt").write_text("cat\ndog\n")
    summary = explain_dataset(str(photos / "photo0*.png"), tmp_path / "out", method="occlusion", params=OCCLUSION,
                              models=repo, actors=1, progress=False)
    assert summary.model == "lonely" and summary.images > 0
    labels = set(pq.read_table(tmp_path / "out").column("label").to_pylist()) - {None}
    assert labels and labels <= {"cat", "dog"}


def test_bad_parameters_are_refused_before_any_work(local_ray, photos, repository, tmp_path):
    from onnxplain.explainers.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="unknown parameter"):
        explain_dataset(str(photos), tmp_path / "out", method="occlusion", params={"windw": 8}, models=repository,
                        model="linear", progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
