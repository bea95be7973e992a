"""The on-disk cache of built gradient graphs: hits skip the builder, anything doubtful is rebuilt."""

from __future__ import annotations

import os
import threading

import builders
import numpy as np
import onnx
import pytest

from onnxplain.explainers import Objective, OnnxClassifier, explain_once
from onnxplain.explainers.model import Variant, graph_cache, variants
from onnxplain.explainers.model.graph_cache import GraphCache, model_digest

X = np.random.default_rng(3).standard_normal((3, 16, 16)).astype(np.float32)
OBJECTIVE = Objective.for_classes([1], 3)
GRADIENT = Variant.gradient(layers=("act",))


@pytest.fixture
def builds(monkeypatch) -> list[Variant]:
    """The variants the builder is asked for (a cache hit does not ask)."""
    asked, build = [], variants.build_variant

    def counting(variant, *args, **kwargs):
        asked.append(variant)
        return build(variant, *args, **kwargs)

    monkeypatch.setattr(variants, "build_variant", counting)
    return asked


def saliency(classifier: OnnxClassifier) -> np.ndarray:
    return explain_once(classifier, X, "saliency", OBJECTIVE).heatmaps


def entries(cache: GraphCache) -> list:
    return sorted(cache.folder.glob("*.graph"))


def test_a_restart_reads_the_graph_instead_of_building_it(tmp_path, builds):
    cache = GraphCache(tmp_path)
    first = OnnxClassifier(builders.small_cnn(), graph_cache=cache)
    expected = saliency(first)
    assert len(builds) == 1 and len(entries(cache)) == 1
    restarted = OnnxClassifier(builders.small_cnn(), graph_cache=cache)
    np.testing.assert_array_equal(saliency(restarted), expected)
    assert len(builds) == 1  # the hit did not build
    names = restarted.compiled(Variant.gradient()).gradient
    assert names.input_grad == "input_grad" and names.score_output == first.signature.output_name


def test_layer_names_survive_the_cache(tmp_path):
    cache = GraphCache(tmp_path)
    built = OnnxClassifier(builders.small_cnn(), graph_cache=cache).compiled(GRADIENT).gradient
    read = OnnxClassifier(builders.small_cnn(), graph_cache=cache).compiled(GRADIENT).gradient
    assert read.layers == built.layers and read.input_grad == built.input_grad
    assert read.approximations == built.approximations


def test_a_changed_model_or_variant_misses(tmp_path, builds):
    cache = GraphCache(tmp_path)
    saliency(OnnxClassifier(builders.small_cnn(seed=0), graph_cache=cache))
    changed = OnnxClassifier(builders.small_cnn(seed=1), graph_cache=cache)
    assert model_digest(changed.model) != model_digest(OnnxClassifier(builders.small_cnn(seed=0)).model)
    saliency(changed)
    explain_once(changed, X, "grad_cam", OBJECTIVE)  # another variant of the same model
    assert len(builds) == 3 and len(entries(cache)) == 3


@pytest.mark.parametrize("damage", ["flip a payload byte", "truncate", "garbage", "another key's entry"])
def test_a_corrupt_entry_is_deleted_and_rebuilt(tmp_path, builds, damage):
    cache = GraphCache(tmp_path)
    expected = saliency(OnnxClassifier(builders.small_cnn(), graph_cache=cache))
    (path,) = entries(cache)
    data = bytearray(path.read_bytes())
    if damage == "flip a payload byte":
        data[-20] ^= 0x55
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(os.urandom(len(data)))
    else:
        other = GraphCache(tmp_path / "other")
        saliency(OnnxClassifier(builders.small_cnn(seed=5), graph_cache=other))
        data = bytearray(entries(other)[0].read_bytes())
    path.write_bytes(bytes(data))
    assert cache.load(path.stem) is None and not path.exists()  # never used, and removed
    path.write_bytes(bytes(data))
    builds.clear()
    np.testing.assert_array_equal(saliency(OnnxClassifier(builders.small_cnn(), graph_cache=cache)), expected)
    assert len(builds) == 1 and cache.load(path.stem) is not None  # rebuilt and stored again


def test_metadata_naming_missing_outputs_is_rejected(tmp_path, builds):
    """An intact entry whose stored names do not match its graph is rebuilt, not trusted."""
    cache = GraphCache(tmp_path)
    explain_once(OnnxClassifier(builders.small_cnn(), graph_cache=cache), X, "grad_cam", OBJECTIVE)
    (path,) = entries(cache)
    entry = cache.load(path.stem)
    cache.store(path.stem, entry.model, {**entry.meta, "layers": {"act": ["layer_0", "no_such_output"]}})
    builds.clear()
    expected = explain_once(OnnxClassifier(builders.small_cnn(), graph_cache=None), X, "grad_cam", OBJECTIVE)
    got = explain_once(OnnxClassifier(builders.small_cnn(), graph_cache=cache), X, "grad_cam", OBJECTIVE)
    assert len(builds) == 2  # the uncached classifier's build and the rebuild of the lying entry
    np.testing.assert_array_equal(got.heatmaps, expected.heatmaps)


def test_concurrent_writers_and_readers_see_whole_entries(tmp_path):
    """Writers of one key race; readers see a whole entry of one of them, never a missing or torn one
    once the first is written (a torn one would also be deleted as corrupt)."""
    cache = GraphCache(tmp_path)
    models = [builders.small_cnn(seed=seed) for seed in range(4)]
    key, start, writing = "k" * 64, threading.Barrier(6), threading.Event()
    reads: list[list[bytes | None]] = [[], []]

    def write(model: onnx.ModelProto) -> None:
        start.wait()
        for _ in range(25):
            cache.store(key, model, {})

    def read(seen: list[bytes | None]) -> None:
        start.wait()
        while writing.is_set() or not seen:
            entry = cache.load(key)
            seen.append(None if entry is None else entry.model.SerializeToString())

    writing.set()
    writers = [threading.Thread(target=write, args=(m,)) for m in models]
    readers = [threading.Thread(target=read, args=(seen,)) for seen in reads]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join()
    writing.clear()
    for thread in readers:
        thread.join()
    whole = {m.SerializeToString() for m in models}
    for seen in reads:
        first = next(i for i, data in enumerate(seen) if data is not None)
        assert set(seen[first:]) <= whole  # no None (deleted as torn) and no mixed bytes after the first write
    assert cache.load(key).model.SerializeToString() in whole
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.graph"]  # no temporary files left


def test_the_size_bound_evicts_the_least_recently_used(tmp_path):
    model = builders.small_cnn()
    size = len(model.SerializeToString())
    cache = GraphCache(tmp_path, max_bytes=int(2.5 * (size + 400)))
    for key in ("a", "b"):
        assert cache.store(key * 64, model, {})
    os.utime(cache.folder / f"{'a' * 64}.graph", (1, 1))
    os.utime(cache.folder / f"{'b' * 64}.graph", (2, 2))
    assert cache.load("a" * 64) is not None  # a hit makes "a" the most recent
    assert cache.store("c" * 64, model, {})
    assert [p.stem[0] for p in entries(cache)] == ["a", "c"]
    assert not GraphCache(tmp_path, max_bytes=size // 2).store("d" * 64, model, {})  # over the bound alone


def test_the_environment_configures_or_disables_it(tmp_path, monkeypatch):
    monkeypatch.setenv(graph_cache.FOLDER_ENV, "off")
    assert GraphCache.from_environment() is None
    monkeypatch.setenv(graph_cache.FOLDER_ENV, str(tmp_path / "graphs"))
    monkeypatch.setenv(graph_cache.BYTES_ENV, "12345")
    cache = GraphCache.from_environment()
    assert cache.folder == tmp_path / "graphs" and cache.max_bytes == 12345
    assert (tmp_path / "graphs").stat().st_mode & 0o777 == 0o700
    monkeypatch.delenv(graph_cache.FOLDER_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert GraphCache.from_environment().folder == tmp_path / "xdg" / "onnxplain" / "graphs"


def test_a_folder_others_may_write_is_not_used(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv(graph_cache.FOLDER_ENV, str(shared))
    assert GraphCache.from_environment() is None


def test_models_differing_only_in_a_local_function_have_different_digests():
    """A local function's body is part of the model: Relu vs Sigmoid inside ``custom.F`` must not share a graph."""
    def with_function(op: str) -> onnx.ModelProto:
        function = onnx.helper.make_function("custom", "F", ["x"], ["y"], [onnx.helper.make_node(op, ["x"], ["y"])],
                                             [onnx.helper.make_opsetid("", 17)])
        graph = onnx.helper.make_graph(
            [onnx.helper.make_node("F", ["image"], ["out"], domain="custom")], "g",
            [onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [1, 3])],
            [onnx.helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [1, 3])])
        return onnx.helper.make_model(graph, functions=[function], opset_imports=[
            onnx.helper.make_opsetid("", 17), onnx.helper.make_opsetid("custom", 1)])

    assert model_digest(with_function("Relu")) != model_digest(with_function("Sigmoid"))


def test_an_edited_builder_never_reads_the_old_builders_graphs(monkeypatch):
    """The key includes the builder's source, not only the package version (unchanged in a source checkout)."""
    before = graph_cache.cache_key("m", {"kind": "gradient"}, (3, 16, 16))
    monkeypatch.setattr(graph_cache, "builder_fingerprint", lambda: "an edited rule")
    assert graph_cache.cache_key("m", {"kind": "gradient"}, (3, 16, 16)) != before


def test_a_dead_writers_temporary_file_is_deleted_and_not_counted(tmp_path):
    model = builders.small_cnn()
    size = len(model.SerializeToString())
    cache = GraphCache(tmp_path, max_bytes=int(2.5 * (size + 400)))
    stale, fresh = cache.folder / ".tmp-dead.graph", cache.folder / ".tmp-writing.graph"
    for path in (stale, fresh):
        path.write_bytes(b"x" * 4 * size)  # together far over the bound
    os.utime(stale, (1, 1))
    assert cache.store("a" * 64, model, {}) and cache.store("b" * 64, model, {})
    assert not stale.exists() and fresh.exists()  # a write in progress is left alone
    assert [p.stem[0] for p in entries(cache) if p != fresh] == ["a", "b"]  # no temporary evicted a real entry
