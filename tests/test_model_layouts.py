"""A repository of models as users bring them (issue 11): Triton's layout with config.pbtxt and versions,
files beside the model, and the warning every result of a model with defaulted preprocessing carries."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import builders
import exports
import numpy as np
import onnx
import pytest
from serving import ServerThread

from onnxplain.client import Client
from onnxplain.client.cli import main as cli_main
from onnxplain.explainers.errors import InvalidModel
from onnxplain.server.repository import ModelRepository, State
from onnxplain.server.triton import read_config
from onnxplain.v1 import model_service_pb2 as model_pb2

DARK = builders.png(np.full((12, 16, 3), 50, np.uint8))
CENTRED = {"preprocessing": {"scale": 1 / 127.5, "mean": [1.0], "std": [1.0]}}  # pixels to [-1, 1]
TRITON_CONFIG = """
name: "{name}"
backend: "onnxruntime"
max_batch_size: 8
input [ {{ name: "x", data_type: TYPE_FP32, format: FORMAT_NHWC, dims: [ 4, 4, 3 ] }} ]
output [ {{ name: "logits", data_type: TYPE_FP32, dims: [ 2 ], label_filename: "labels.txt" }} ]
instance_group [ {{ count: 2, kind: KIND_CPU }} ]
dynamic_batching {{ max_queue_delay_microseconds: 100 }}
{policy}
"""


def nhwc(sign: float) -> onnx.ModelProto:
    """Brightness classifier on a [N, 4, 4, 3] input; ``sign`` −1 swaps the classes (another version)."""
    model = exports.brightness(size=4, layout="NHWC")
    weights = next(i for i in model.graph.initializer if i.name == "W")
    weights.CopyFrom(onnx.numpy_helper.from_array(sign * onnx.numpy_helper.to_array(weights), "W"))
    return model


def triton_model(root: Path, name: str, policy: str = "", folder: str | None = None) -> Path:
    home = root / (folder or name)
    for version, sign in ((1, -1.0), (2, 1.0)):
        (home / str(version)).mkdir(parents=True)
        onnx.save(nhwc(sign), home / str(version) / "model.onnx")
    (home / "config.pbtxt").write_text(TRITON_CONFIG.format(name=name, policy=policy))
    (home / "labels.txt").write_text("light\ndark\n")
    (home / "config.json").write_text(json.dumps(CENTRED))
    return home


@pytest.fixture(scope="module")
def brought(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("brought")
    triton_model(root, "triton")
    triton_model(root, "pinned", "version_policy: { specific: { versions: [ 1 ] } }")
    triton_model(root, "misnamed", folder="renamed")
    (root / "bare").mkdir()  # a bare export: nothing says how to preprocess
    onnx.save(exports.with_metadata(exports.brightness(), names="{0: 'light', 1: 'dark'}"), root / "bare" / "model.onnx")
    (root / "hf").mkdir()
    onnx.save(exports.brightness(), root / "hf" / "model.onnx")
    (root / "hf" / "labels.txt").write_text("light\ndark\n")
    (root / "hf" / "preprocessor_config.json").write_text(json.dumps(
        {"do_resize": True, "size": {"height": 8, "width": 8}, "do_rescale": True, "rescale_factor": 1 / 255,
         "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}))
    return root


@pytest.fixture(scope="module")
def server(brought):
    serving = ServerThread(brought)
    yield serving
    serving.stop()


def test_config_pbtxt_is_read_with_text_format_skipping_what_onnxplain_does_not_use(brought):
    config = read_config(brought / "triton" / "config.pbtxt")
    assert (config.name, config.max_batch_size, config.output[0].label_filename) == ("triton", 8, "labels.txt")
    assert config.input[0].format == config.input[0].FORMAT_NHWC and list(config.input[0].dims) == [4, 4, 3]


def test_triton_layout_serves_the_highest_version_or_the_policys(brought):
    repository = ModelRepository(brought)
    assert {"triton", "pinned", "renamed", "bare", "hf"} <= set(repository.names())
    served = {}
    for name in ("triton", "pinned"):
        classifier = repository.load(name).classifier
        tensor, _ = classifier.preprocess(DARK)
        served[name] = classifier.labels[int(np.argmax(classifier.predict(tensor[None])[0]))]
        provenance = classifier.info.provenance
        assert classifier.labels == ("light", "dark") and str(provenance["labels"]) == "metadata (config.pbtxt)"
        assert classifier.signature.layout == "NHWC" and str(provenance["layout"]) == "metadata (config.pbtxt)"
        assert classifier.config.max_batch == 8 and provenance["max_batch"].detail == "config.pbtxt"
        assert provenance["preprocessing.scale"].source == "configured" and classifier.info.warnings == ()
    assert served == {"triton": "dark", "pinned": "light"}  # version 2 is right; version 1 has the classes swapped
    with pytest.raises(InvalidModel, match="names the model 'misnamed' but its folder is 'renamed'"):
        repository.load("renamed")
    assert repository.entry("renamed").state is State.FAILED


def test_predict_and_explain_carry_the_defaulted_preprocessing_warning(server, caplog):
    with Client(server.address) as client:
        bare = client.predictions("bare", DARK, top_k=2)
        assert bare.classes[0].label == "light"  # raw pixels: wrong, and said so
        assert len(bare.warnings) == 1 and "preprocessing was defaulted" in bare.warnings[0]
        result = client.explain("bare", DARK, "occlusion", params={"window": 4, "stride": 4})
        assert result.warnings == bare.warnings and result.accepted.warnings == bare.warnings
        read = client.predictions("hf", DARK)
        assert read.classes[0].label == "dark" and read.warnings == ()
        assert client.explain("hf", DARK, "occlusion", params={"window": 4, "stride": 4}).warnings == ()
        info = next(m for m in client.list_models() if m.name == "bare")
    origins = {o.setting: (model_pb2.SettingSource.Name(o.source), o.detail, o.value) for o in info.provenance}
    assert origins["labels"] == ("SETTING_SOURCE_METADATA", "metadata_props['names']", "2 labels: light, dark")
    assert origins["preprocessing.mean"] == ("SETTING_SOURCE_DEFAULTED", "", "[0, 0, 0]")
    assert origins["layout"][:2] == ("SETTING_SOURCE_DETECTED", "from the input's shape and the ops it feeds")
    assert list(info.warnings) == list(bare.warnings)


def test_the_server_logs_the_warning_once_per_model(brought, caplog):
    repository = ModelRepository(brought)
    with caplog.at_level(logging.WARNING, logger="onnxplain.server"):
        repository.load("bare")
        repository.load("hf")
    assert [r.getMessage()[:40] for r in caplog.records] == ["model bare: preprocessing was defaulted:"]


def test_the_cli_prints_settings_and_warnings_next_to_the_answer(server, tmp_path, capsys):
    photo = tmp_path / "dark.png"
    photo.write_bytes(DARK)
    assert cli_main(["predict", str(photo), "--server", server.address, "--model", "bare"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split()[-1] == "light" and "settings (value, and where it came from):" in lines
    assert any(line.split()[:2] == ["preprocessing.mean", "[0,"] and line.endswith("defaulted") for line in lines)
    assert any(line.split()[0] == "labels" and line.endswith("metadata (metadata_props['names'])") for line in lines)
    assert err.startswith("warning: preprocessing was defaulted")

    assert cli_main(["explain", str(photo), "--server", server.address, "--model", "bare", "-o", str(tmp_path),
                     "-q", "--param", "window=4", "--param", "stride=4"]) == 0
    assert "warning: preprocessing was defaulted" in capsys.readouterr().err

    assert cli_main(["models", "--server", server.address]) == 0
    listing = capsys.readouterr().out
    bare = listing[listing.index("bare"):listing.index("\nhf")]
    assert "warning: preprocessing was defaulted" in bare and "defaulted: " in bare and "metadata: labels" in bare
    assert cli_main(["predict", str(photo), "--server", server.address, "--model", "hf", "-q"]) == 0
    out, err = capsys.readouterr()
    assert out.split()[2] == "dark" and "settings" not in out and err == ""


def test_an_upload_reads_its_metadata_under_its_config_json():
    repository = ModelRepository(None, allow_uploads=True)
    model = exports.with_metadata(exports.brightness(), **{"onnxplain.labels": '["light", "dark"]'})
    entry = repository.load_bytes("up", model.SerializeToString(), json.dumps(CENTRED))
    provenance = entry.classifier.info.provenance
    assert entry.classifier.labels == ("light", "dark")
    assert str(provenance["labels"]) == "metadata (metadata_props['onnxplain.labels'])"
    assert str(provenance["preprocessing.scale"]) == "configured (config_json)" and entry.classifier.info.warnings == ()
