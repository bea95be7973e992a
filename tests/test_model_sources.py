"""What exports say about themselves, and where every setting came from (issue 11, items 1–2)."""

from __future__ import annotations

import json

import builders
import exports
import numpy as np
import pytest

from onnxplain.explainers import ModelConfig, OnnxClassifier, Preprocessing
from onnxplain.explainers.errors import InvalidArgument, InvalidModel
from onnxplain.explainers.model.provenance import CONFIGURED, DEFAULTED, DETECTED, METADATA, PREPROCESSING_SETTINGS
from onnxplain.explainers.model.sources import hf_preprocessing, parse_labels, read_sources, timm_preprocessing

DARK = np.full((8, 8, 3), 50, np.uint8)  # mid-grey is 127.5: dark after centring
BRIGHT = np.full((8, 8, 3), 200, np.uint8)


def classify(classifier: OnnxClassifier, image: np.ndarray) -> str:
    tensor, _ = classifier.preprocess(builders.png(image))
    return classifier.labels[int(np.argmax(classifier.predict(tensor[None])[0]))]


def test_unknown_config_keys_are_all_reported_at_once():
    with pytest.raises(InvalidArgument) as error:
        ModelConfig.from_dict({"lables": [], "layuot": "NCHW", "preprocessing": {"mean": [0]}})
    assert error.value.field == "config" and "'lables', 'layuot'" in str(error.value)
    with pytest.raises(InvalidArgument) as error:
        ModelConfig.from_dict({"preprocessing": {"mea": [0], "sdt": [1]}})
    assert error.value.field == "config.preprocessing" and "'mea', 'sdt'" in str(error.value)
    with pytest.raises(InvalidArgument) as error:  # one unknown key keeps its precise field
        ModelConfig.from_dict({"lables": []})
    assert error.value.field == "config.lables"


@pytest.mark.parametrize("key, text", [
    ("onnxplain.labels", '["light", "dark"]'),
    ("names", "{0: 'light', 1: 'dark'}"),  # Ultralytics writes a Python dict literal
    ("labels", "light\ndark"),
    ("id2label", '{"0": "light", "1": "dark"}'),
    ("label_list", "['light', 'dark']"),
])
def test_labels_in_metadata_props_are_read(key, text):
    model = exports.with_metadata(exports.brightness(), **{key: text})
    config = read_sources(model, [], configured={"preprocessing": {"scale": 1 / 127.5, "mean": [1.0]}})
    classifier = OnnxClassifier(model, config=config)
    assert classify(classifier, DARK) == "dark" and classify(classifier, BRIGHT) == "light"
    origin = classifier.info.provenance["labels"]
    assert (origin.source, origin.detail) == (METADATA, f"metadata_props[{key!r}]")


def test_our_metadata_key_wins_and_unrelated_metadata_is_not_labels():
    assert parse_labels("a single producer string") is None
    assert parse_labels('{"5": "x"}') is None  # indices must be 0..n-1
    model = exports.with_metadata(exports.brightness(), **{"onnxplain.labels": '["a", "b"]', "names": "{0: 'x', 1: 'y'}"})
    assert read_sources(model, []).labels == ("a", "b")


def test_a_lone_labels_txt_beside_the_model_names_the_classes(tmp_path):
    (tmp_path / "labels.txt").write_text("light\ndark\n")
    config = read_sources(exports.brightness(), [tmp_path])
    assert config.labels == ("light", "dark")
    assert str(config.origins["labels"]) == "metadata (labels.txt)"
    configured = read_sources(exports.brightness(), [tmp_path], configured={"labels": ["L", "D"]})
    assert configured.labels == ("L", "D") and configured.origins["labels"].source == CONFIGURED


def test_hugging_face_preprocessor_config_maps_every_field():
    vit = {"do_resize": True, "size": {"height": 224, "width": 224}, "resample": 2, "do_rescale": True,
           "rescale_factor": 0.00392156862745098, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
           "image_std": [0.5, 0.5, 0.5], "image_processor_type": "ViTImageProcessor"}
    assert hf_preprocessing(vit) == {"resize_mode": "squash", "interpolation": "bilinear", "scale": 1 / 255,
                                     "mean": [0.5] * 3, "std": [0.5] * 3}
    resnet = {"do_resize": True, "size": {"shortest_edge": 256}, "do_center_crop": True, "crop_size": 224,
              "resample": 3, "do_normalize": False, "do_rescale": False}
    assert hf_preprocessing(resnet) == {"center_crop": 224, "resize_mode": "short_side", "resize": 256,
                                        "interpolation": "bicubic", "scale": 1.0, "mean": [0.0], "std": [1.0]}
    convnext = {"size": {"shortest_edge": 224}, "crop_pct": 0.875, "resample": 1}
    assert hf_preprocessing(convnext) == {"resize_mode": "short_side", "crop_pct": 0.875, "interpolation": "lanczos"}
    with pytest.raises(InvalidArgument, match="resample"):
        hf_preprocessing({"resample": 9})


def test_a_preprocessor_config_json_changes_the_answer_and_says_so(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"do_resize": True, "size": {"height": 8, "width": 8}, "do_rescale": True, "rescale_factor": 1 / 255,
         "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 3}))
    (tmp_path / "labels.txt").write_text("light\ndark\n")
    read = OnnxClassifier(exports.brightness(), config=read_sources(exports.brightness(), [tmp_path]))
    assert classify(read, DARK) == "dark" and classify(read, BRIGHT) == "light"
    provenance = read.info.provenance
    assert str(provenance["preprocessing.mean"]) == "metadata (preprocessor_config.json)"
    assert provenance["preprocessing.interpolation"].source == METADATA and read.config.preprocessing.interpolation == "bicubic"
    assert provenance["preprocessing.channel_order"].source == DEFAULTED  # HF says nothing about it
    assert read.info.warnings == ()
    blind = OnnxClassifier(exports.brightness(), config=read_sources(exports.brightness(), []))
    assert classify(blind, DARK) == "class_0"  # raw 0-255 pixels: the wrong answer, and a warning says why
    assert blind.info.warnings and "preprocessing was defaulted" in blind.info.warnings[0]


def test_a_timm_config_json_gives_preprocessing_and_labels(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "architecture": "resnet50", "num_classes": 2, "label_names": ["light", "dark"],
        "pretrained_cfg": {"input_size": [3, 8, 8], "interpolation": "bicubic", "crop_pct": 0.5, "crop_mode": "center",
                           "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}))
    config = read_sources(exports.brightness(), [tmp_path])
    assert config.labels == ("light", "dark")
    assert config.preprocessing == Preprocessing(scale=1 / 255, crop_pct=0.5, resize_mode="short_side",
                                                 interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3)
    assert config.origins["preprocessing.crop_pct"].detail == "config.json (timm)"
    assert timm_preprocessing({"crop_mode": "squash"})["resize_mode"] == "squash"
    classifier = OnnxClassifier(exports.brightness(), config=config)
    assert classify(classifier, np.full((20, 30, 3), 40, np.uint8)) == "dark"


def test_every_setting_has_an_origin():
    config = ModelConfig.from_dict({"labels": ["light", "dark"], "preprocessing": {"mean": [127.5], "std": [127.5]}})
    info = OnnxClassifier(exports.brightness(), config=config).info
    sources = {key: origin.source for key, origin in info.provenance.items()}
    assert sources == {
        "layout": DETECTED, "output": DETECTED, "output_kind": DETECTED, "labels": CONFIGURED, "cam_layer": DETECTED,
        "max_batch": DEFAULTED, "gradient_max_batch": DEFAULTED, "batch_mode": DETECTED,
        **{key: DEFAULTED for key in PREPROCESSING_SETTINGS},
        "preprocessing.mean": CONFIGURED, "preprocessing.std": CONFIGURED,
    }
    assert info.warnings == ()
    # a config built in code records no origins: what differs from the default counts as configured
    coded = OnnxClassifier(exports.brightness(), config=ModelConfig(layout="NCHW", preprocessing=Preprocessing(scale=2.0)))
    assert coded.info.provenance["layout"].source == CONFIGURED
    assert coded.info.provenance["preprocessing.scale"].source == CONFIGURED
    assert coded.info.provenance["preprocessing.mean"].source == DEFAULTED and coded.info.warnings == ()


def test_a_flat_input_is_an_image_when_the_config_says_so():
    """skl2onnx's digits MLP takes [N, 64]: with image_shape it is an 8×8 grayscale image classifier."""
    model, digits, labels = exports.flat_digits()
    with pytest.raises(InvalidModel, match="image_shape") as error:
        OnnxClassifier(model)
    assert error.value.field == "config.image_shape"
    for shape, source in (((8, 8), CONFIGURED), ((1, 8, 8), CONFIGURED), ("square", DETECTED)):
        config = ModelConfig.from_dict({"image_shape": shape, "output": "probabilities",
                                        "preprocessing": {"scale": 1 / 255}})
        classifier = OnnxClassifier(model, config=config)
        assert (classifier.channels, classifier.height, classifier.width) == (1, 8, 8)
        predicted = [int(classify(classifier, np.round(d * 255).astype(np.uint8)).removeprefix("class_")) for d in digits]
        assert predicted == list(labels)
        assert classifier.info.provenance["image_shape"].source == source
    with pytest.raises(InvalidModel, match="holds 48 values"):
        OnnxClassifier(model, config=ModelConfig(image_shape=(6, 8)))


def test_a_rank3_input_gets_its_own_height_and_width():
    weights = np.stack([np.eye(6), -np.eye(6)]).astype(np.float32)[:, None]  # [2, 1, 6, 6]
    model = builders.linear(weights)
    graph = model.graph  # the exporter's [N, 6, 6]: reshape it to [N, 1, 6, 6] itself
    graph.input[0].type.tensor_type.shape.dim.pop(1)
    classifier = OnnxClassifier(model, config=ModelConfig(image_shape="square"))
    assert (classifier.channels, classifier.height, classifier.width) == (1, 6, 6)
    diagonal = np.eye(6, dtype=np.float32)[None, None] * 10
    assert np.argmax(classifier.predict(diagonal)[0]) == 0


def test_fp16_and_grayscale_models_predict_and_explain():
    from onnxplain.explainers import Objective, explain_once

    for model, image in ((exports.float16(exports.brightness()), DARK), (exports.brightness(channels=1), DARK[:, :, 0])):
        config = ModelConfig.from_dict({"labels": ["light", "dark"],
                                        "preprocessing": {"scale": 1 / 127.5, "mean": [1.0], "std": [1.0]}})
        classifier = OnnxClassifier(model, config=config)
        assert classify(classifier, image) == "dark"
        tensor, _ = classifier.preprocess(builders.png(image))
        result = explain_once(classifier, tensor, "occlusion", Objective.for_classes([1], 2), {"window": 4, "stride": 4})
        assert result.heatmaps.shape == (1, 8, 8) and np.all(np.isfinite(result.heatmaps))
        assert result.scores[0] == pytest.approx(1 - 50 / 127.5, abs=2e-3)  # −mean of the normalised pixels


def test_gradients_flow_through_the_image_input_of_a_flat_model():
    """The digits MLP behind its new image input has the golden input gradients of the wrapped fixture."""
    from onnxplain.explainers import Evaluator
    from onnxplain.explainers.autodiff import INPUT_GRAD

    model, _, _ = exports.flat_digits()
    golden = np.load(exports.FIXTURES / "sklearn_mlp.npz")
    classifier = OnnxClassifier(model, config=ModelConfig(image_shape=(8, 8), output="probabilities"))
    x, weights = golden["x"].astype(np.float32), golden["class_weights"].astype(np.float32)
    chunks = list(Evaluator(classifier).gradient_rows(3, lambda a, b: (x[a:b], weights[a:b]),
                                                      cut_final_activation=False))
    grads = np.concatenate([chunk.outputs[INPUT_GRAD] for chunk in chunks])
    np.testing.assert_allclose(grads, golden["input_grad"], rtol=1e-3, atol=1e-5)


def test_defaulted_pixel_values_are_warned_about_even_with_a_configured_resize():
    from onnxplain.explainers.model.provenance import warnings

    config = ModelConfig.from_dict({"preprocessing": {"resize": 256, "center_crop": 224}})
    assert config.origins["preprocessing.resize"].source == "configured"  # the resize is configured …
    (warning,) = warnings(config.origins, size=(224, 224))
    assert "pixel values were defaulted" in warning  # … but 0-255 pixels without mean/std is still a guess
    confirmed = ModelConfig.from_dict({"preprocessing": {"resize": 256, "scale": 1, "mean": [0, 0, 0],
                                                         "std": [1, 1, 1]}})
    assert warnings(confirmed.origins, size=(224, 224)) == ()


def test_an_hf_preprocessor_that_normalises_without_mean_and_std_is_a_clear_error():
    from onnxplain.explainers.errors import InvalidArgument
    from onnxplain.explainers.model.sources import hf_preprocessing

    with pytest.raises(InvalidArgument, match="image_mean"):
        hf_preprocessing({"do_normalize": True, "size": 224})
