"""Decoding, preprocessing, and mapping heatmaps back onto the original image."""

from __future__ import annotations

import numpy as np
import pytest
from builders import png

from onnxplain.explainers.errors import InvalidArgument, ResourceExhausted
from onnxplain.explainers.model import Preprocessing, decode_image, preprocess


def test_resize_crop_normalise_matches_a_hand_computation():
    # A 40x60 image whose pixel value encodes its column: resize short side 20 → 20x30, crop 20x20.
    columns = np.tile(np.linspace(0, 255, 60, dtype=np.float32), (40, 1))
    rgb = np.stack([columns, columns, 255 - columns], axis=2).astype(np.uint8)
    pre = Preprocessing(resize=20, mean=(127, 127, 127), std=(128, 128, 128))
    tensor, geometry = preprocess(decode_image(png(rgb)), pre, size=(20, 20), channels=3)
    assert tensor.shape == (3, 20, 20)
    assert geometry.resized == (20, 30) and geometry.crop_origin == (0, 5)
    # centre column of the crop sits at the centre of the original: value ≈ 127.5
    centre = tensor[0, 10, 9:11].mean() * 128 + 127
    assert abs(centre - 127.5) < 6
    np.testing.assert_allclose(tensor[0] + tensor[2], (255 - 2 * 127) / 128, atol=2 / 128)


def test_bgr_and_scale_mean_std():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200
    pre = Preprocessing(channel_order="BGR", scale=1 / 255, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    tensor, _ = preprocess(decode_image(png(rgb)), pre, size=(8, 8), channels=3)
    np.testing.assert_allclose(tensor[2], (200 / 255 - 0.5) / 0.25, rtol=1e-5)  # red is now last
    np.testing.assert_allclose(tensor[0], -2.0, rtol=1e-5)


def test_heatmap_maps_back_onto_the_original_grid():
    rgb = np.zeros((100, 200, 3), np.uint8)
    _, geometry = preprocess(decode_image(png(rgb)), Preprocessing(resize=50), size=(50, 50), channels=3)
    assert geometry.resized == (50, 100) and geometry.crop_origin == (0, 25)
    # a heatmap that is the model-input column index
    heat = np.tile(np.arange(50, dtype=np.float32), (1, 50, 1))
    original = geometry.to_original(heat)[0]
    assert original.shape == (100, 200)
    assert np.isnan(original[:, :49]).all() and np.isnan(original[:, 151:]).all()  # cropped away
    # original column x ↦ input column (x + 0.5) / 2 - 0.5 - 25
    x = np.arange(52, 148)
    np.testing.assert_allclose(original[30, x], (x + 0.5) / 2 - 0.5 - 25, atol=1e-4)


def test_corrupt_and_oversized_images_are_rejected():
    with pytest.raises(InvalidArgument, match="cannot decode"):
        decode_image(b"\x89PNG\r\n\x1a\n corrupted")
    with pytest.raises(InvalidArgument, match="empty image"):
        decode_image(b"")
    with pytest.raises(ResourceExhausted, match="limit is 100"):
        decode_image(png(np.zeros((20, 20, 3), np.uint8)), max_pixels=100)


def test_grayscale_models_get_one_channel():
    rgb = np.full((10, 10, 3), 90, np.uint8)
    tensor, _ = preprocess(decode_image(png(rgb)), Preprocessing(), size=(10, 10), channels=1)
    assert tensor.shape == (1, 10, 10)
    np.testing.assert_allclose(tensor, 90, atol=1)
