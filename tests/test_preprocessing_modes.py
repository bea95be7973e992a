"""Resize modes, filters and crop_pct (issue 11, item 3): PIL's semantics, and heatmaps that map back
onto the original photo for every mode."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from onnxplain.explainers import Preprocessing
from onnxplain.explainers.errors import InvalidArgument
from onnxplain.explainers.model import preprocess
from onnxplain.explainers.model.resize import FILTERS, resized_size

SIZE = (24, 24)


def smooth_photo(height: int, width: int) -> Image.Image:
    """A smooth grey ramp (no detail finer than the model's pixels), so resampling errors stay small."""
    ys, xs = np.mgrid[0:height, 0:width]
    values = 30 + 190 * (0.6 * ys / height + 0.4 * xs / width) + 10 * np.sin(xs / width * 3)
    return Image.fromarray(np.round(values).astype(np.uint8)).convert("RGB")


@pytest.mark.parametrize("pre, original, expected", [
    (Preprocessing(resize=32), (60, 90), (32, 48)),  # short side, aspect kept
    (Preprocessing(crop_pct=0.75), (60, 90), (32, 48)),  # timm: floor(24 / 0.75) = 32
    (Preprocessing(), (60, 90), (24, 24)),  # squash straight to the input
    (Preprocessing(resize=32, resize_mode="squash"), (60, 90), (32, 32)),  # squash to 32x32, then crop 24
    (Preprocessing(resize_mode="none"), (60, 90), (60, 90)),
    (Preprocessing(resize_mode="long_side_pad"), (60, 90), (16, 24)),  # letterbox
    (Preprocessing(resize_mode="long_side_pad"), (90, 30), (24, 8)),
])
def test_resized_size_of_each_mode(pre, original, expected):
    assert resized_size(pre, original, SIZE) == expected


MODES = [
    Preprocessing(resize=32),
    Preprocessing(crop_pct=0.875, interpolation="bicubic"),
    Preprocessing(),
    Preprocessing(resize=28, resize_mode="squash", interpolation="lanczos"),
    Preprocessing(resize_mode="none"),
    Preprocessing(resize_mode="long_side_pad", interpolation="antialias"),
]


@pytest.mark.parametrize("pre", MODES, ids=lambda p: f"{p.mode}-{p.interpolation}")
@pytest.mark.parametrize("shape", [(40, 60), (50, 30), (20, 20)])
def test_heatmaps_map_back_onto_the_original_photo_for_every_mode(pre, shape):
    """The model input itself, used as a heatmap and mapped back, is the photo again (where it was seen)."""
    photo = smooth_photo(*shape)
    tensor, geometry = preprocess(photo, pre, size=SIZE, channels=3)
    back = geometry.to_original(tensor[:1])[0]  # [H0, W0], NaN where the model never looked
    original = np.asarray(photo, np.float32)[:, :, 0]
    seen = ~np.isnan(back)
    assert back.shape == shape and seen.mean() > 0.2
    if pre.mode == "long_side_pad" or (pre.mode == "squash" and pre.resize is None):
        assert seen.all()  # every pixel of the photo reaches the model
    # pixels fully inside the crop (one model pixel from its edge) match the photo to within resampling error
    inner = seen & np.roll(seen, 2, 0) & np.roll(seen, -2, 0) & np.roll(seen, 2, 1) & np.roll(seen, -2, 1)
    assert np.abs(back - original)[inner].mean() < 4.0
    if pre.mode == "long_side_pad" and shape[0] != shape[1]:  # the bars are black (0) in the model input
        assert tensor.min() == 0.0


def test_each_filter_is_pils_own_resize():
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8))
    for name, flag in FILTERS.items():
        tensor, _ = preprocess(photo, Preprocessing(interpolation=name), size=SIZE, channels=3)
        expected = np.asarray(photo.resize((24, 24), flag), np.float32).transpose(2, 0, 1)
        np.testing.assert_array_equal(tensor, expected, err_msg=name)
    nearest, _ = preprocess(photo, Preprocessing(interpolation="nearest"), size=SIZE, channels=3)
    lanczos, _ = preprocess(photo, Preprocessing(interpolation="lanczos"), size=SIZE, channels=3)
    assert not np.array_equal(nearest, lanczos)


def test_mean_and_std_are_in_the_models_channel_order():
    photo = Image.fromarray(np.full((4, 4, 3), (10, 20, 30), np.uint8))
    pre = Preprocessing(channel_order="BGR", mean=(1, 2, 3), std=(1, 1, 2))
    tensor, _ = preprocess(photo, pre, size=(4, 4), channels=3)
    np.testing.assert_allclose(tensor[:, 0, 0], [(30 - 1) / 1, (20 - 2) / 1, (10 - 3) / 2])  # B, G, R


@pytest.mark.parametrize("key, value", [("resize_mode", "fit"), ("interpolation", "cubic"), ("crop_pct", 1.5),
                                        ("crop_pct", 0)])
def test_bad_values_name_the_field_and_what_is_allowed(key, value):
    with pytest.raises(InvalidArgument) as error:
        Preprocessing(**{key: value})
    assert error.value.field == f"preprocessing.{key}" and "allowed" in str(error.value)
