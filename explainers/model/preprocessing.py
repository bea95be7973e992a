"""Encoded image → model input tensor, and heatmaps back onto the original image's pixel grid.

Tensors here are in the canonical layout [C, H, W] float32; :class:`ModelInput` converts them to
the model's own layout and dtype, and checks a client's already-preprocessed tensor
(:func:`canonical_tensor`). :class:`Geometry` records the resize and crop so that a heatmap in
model-input pixels can be mapped back onto the original image (inverting resize and crop).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from ..errors import InvalidArgument, ResourceExhausted
from .config import Preprocessing
from .resize import FILTERS, resized_size, short_side_target

DEFAULT_MAX_PIXELS = 40_000_000
_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, field: str = "image.encoded") -> Image.Image:
    """Decode PNG/JPEG/... bytes; the size is checked from the header before pixels are decoded.

    Raises:
        InvalidArgument: the bytes are not a decodable image.
        ResourceExhausted: the image has more than ``max_pixels`` pixels.
    """
    if not data:
        raise InvalidArgument(field, "empty image; expected PNG, JPEG, BMP, GIF, TIFF or WebP bytes")
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise ResourceExhausted(
                f"{field}: image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
            )
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        reason = _OBJECT_REPR.sub("the bytes", str(exc))[:200]  # PIL names the in-memory file by its address
        raise InvalidArgument(
            field, f"cannot decode image ({reason}); expected PNG, JPEG, BMP, GIF, TIFF or WebP bytes"
        ) from exc
    return image


@dataclass(frozen=True)
class ModelInput:
    """The model's image input: ``layout`` ("NCHW" | "NHWC"), numpy ``dtype`` and the canonical
    size ``channels`` × ``height`` × ``width``."""

    layout: str
    dtype: type
    channels: int
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """The canonical image shape (C, H, W)."""
        return self.channels, self.height, self.width

    @property
    def model_shape(self) -> tuple[int, int, int]:
        """One image in the model's layout: (C, H, W) or (H, W, C)."""
        return self.shape if self.layout == "NCHW" else (self.height, self.width, self.channels)

    def to_model_layout(self, images: NDArray) -> NDArray:
        """Canonical [n, C, H, W] float32 → the model's layout and dtype (uint8: rounded and clipped)."""
        if self.layout == "NHWC":
            images = images.transpose(0, 2, 3, 1)
        if self.dtype == np.uint8:
            images = np.clip(np.rint(images), 0, 255)
        return np.ascontiguousarray(images, dtype=self.dtype)


def canonical_tensor(tensor: NDArray, model_input: ModelInput, *, field: str = "image.tensor") -> NDArray[np.float32]:
    """Check a client's preprocessed tensor ([1,]·model layout) and return it as [C, H, W] float32.

    Raises:
        InvalidArgument: (naming ``field``) the dtype is not the model input's, the shape is neither
            the model's image shape nor it with a leading batch of 1, or a value is NaN or infinite.
    """
    expected = model_input.model_shape
    if tensor.dtype != model_input.dtype:
        allowed = np.dtype(model_input.dtype).name
        raise InvalidArgument(field, f"datatype {tensor.dtype.name} does not match the model input; allowed: {allowed}")
    shape = tensor.shape[1:] if tensor.ndim == 4 and tensor.shape[0] == 1 else tensor.shape
    if tuple(shape) != expected:
        allowed = " or ".join(str(list(s)) for s in (expected, (1, *expected)))
        raise InvalidArgument(field, f"shape {list(tensor.shape)} does not match the model input; allowed: {allowed}")
    image = np.asarray(tensor.reshape(expected), np.float32)
    if model_input.layout == "NHWC":
        image = image.transpose(2, 0, 1)
    if not np.all(np.isfinite(image)):
        raise InvalidArgument(field, "contains NaN or infinite values")
    return np.ascontiguousarray(image)


def to_rgb_array(image: Image.Image) -> NDArray[np.uint8]:
    """The image as uint8 [H, W, 3] RGB (what overlays are drawn on)."""
    return np.asarray(image.convert("RGB"))


@dataclass(frozen=True)
class Geometry:
    """Where the model input came from: ``original`` (H0, W0) was resized to ``resized`` (Hr, Wr)
    and cropped at ``crop_origin`` (top, left) to ``input`` (H, W)."""

    original: tuple[int, int]
    resized: tuple[int, int]
    crop_origin: tuple[int, int]
    input: tuple[int, int]

    def to_original(self, heatmaps: NDArray[np.floating]) -> NDArray[np.float32]:
        """Bilinearly map [T, H, W] heatmaps onto the original grid, [T, H0, W0].

        Pixels whose centre falls outside the crop (never seen by the model) are NaN.
        """
        (h0, w0), (hr, wr) = self.original, self.resized
        top, left = self.crop_origin
        h, w = self.input
        # pixel centres of the original, in crop coordinates (align_corners=False convention)
        ys = (np.arange(h0) + 0.5) * (hr / h0) - 0.5 - top
        xs = (np.arange(w0) + 0.5) * (wr / w0) - 0.5 - left
        y_out = (ys < -0.5) | (ys > h - 0.5)
        x_out = (xs < -0.5) | (xs > w - 0.5)
        ys, xs = np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)
        y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
        y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
        fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
        maps = np.asarray(heatmaps, np.float32)
        top_row = maps[:, y0][:, :, x0] * (1 - fx) + maps[:, y0][:, :, x1] * fx
        bottom_row = maps[:, y1][:, :, x0] * (1 - fx) + maps[:, y1][:, :, x1] * fx
        out = (top_row * (1 - fy) + bottom_row * fy).astype(np.float32)
        out[:, y_out, :] = np.nan
        out[:, :, x_out] = np.nan
        return out


def normalise(pixels: NDArray[np.floating], pre: Preprocessing) -> NDArray[np.float32]:
    """``(pixel · scale − mean) / std`` for ``pixels`` [..., C] in 0..255 (a mean/std shorter than C
    repeats its first value)."""
    channels = pixels.shape[-1]
    mean = np.asarray(pre.mean[:channels] if len(pre.mean) >= channels else pre.mean[:1] * channels, np.float32)
    std = np.asarray(pre.std[:channels] if len(pre.std) >= channels else pre.std[:1] * channels, np.float32)
    return (np.asarray(pixels, np.float32) * np.float32(pre.scale) - mean) / std


def black_image(pre: Preprocessing, shape: tuple[int, int, int]) -> NDArray[np.float32]:
    """An all-black image (every pixel 0) as the model sees it: canonical [C, H, W] = ``shape``."""
    return uniform_image(pre, shape, 0.0)


def white_image(pre: Preprocessing, shape: tuple[int, int, int]) -> NDArray[np.float32]:
    """An all-white image (every pixel 255) as the model sees it: canonical [C, H, W] = ``shape``.
    With :func:`black_image`, the range a photo's pixels can take in the model's input space."""
    return uniform_image(pre, shape, 255.0)


def uniform_image(pre: Preprocessing, shape: tuple[int, int, int], pixel: float) -> NDArray[np.float32]:
    """Every pixel ``pixel`` (0..255, all channels) as the model sees it: canonical [C, H, W] = ``shape``."""
    channels, height, width = shape
    value = normalise(np.full((1, 1, channels), pixel, np.float32), pre)[0, 0]  # [C]
    return np.ascontiguousarray(np.broadcast_to(value[:, None, None], shape), dtype=np.float32)


def preprocess(
    image: Image.Image, pre: Preprocessing, *, size: tuple[int, int], channels: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[NDArray[np.float32], Geometry]:
    """Apply ``pre`` to a decoded image for a model whose input is ``size`` (H, W) × ``channels``
    (the resize modes are in :mod:`~explainers.model.resize`).

    Returns the canonical tensor [channels, H, W] float32 and the :class:`Geometry` to invert it.
    Memory stays within what ``max_pixels`` allows: the resized image may not exceed it (a 4000×1
    strip resized to a short side of 256 would be 256×1,024,000), and only the crop becomes float.

    Raises:
        InvalidArgument: the crop does not fit the model, or the image's aspect ratio is too extreme.
    """
    height, width = size
    if pre.center_crop is not None and pre.center_crop != min(height, width):
        raise InvalidArgument(
            "preprocessing.center_crop", f"{pre.center_crop} does not match the model input {height}x{width}"
        )
    converted = image.convert("L" if channels == 1 else "RGB")
    w0, h0 = converted.size
    resized_hw = resized_size(pre, (h0, w0), (height, width))
    if resized_hw[0] * resized_hw[1] > max_pixels:
        raise InvalidArgument("image", f"{w0}x{h0} is too elongated: resizing its short side to "
                                       f"{short_side_target(pre, size)} makes it {resized_hw[1]}x{resized_hw[0]}, over "
                                       f"the limit of {max_pixels} pixels; crop it nearer to the model's aspect ratio "
                                       "first")
    resized = converted if resized_hw == (h0, w0) else converted.resize((resized_hw[1], resized_hw[0]),
                                                                        FILTERS[pre.interpolation])
    # torchvision's CenterCrop offsets: int(round((size − crop) / 2)); negative ones pad with black (PIL)
    top, left = int(round((resized_hw[0] - height) / 2)), int(round((resized_hw[1] - width) / 2))
    pixels = np.asarray(resized.crop((left, top, left + width, top + height)), np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if channels == 3 and pre.channel_order == "BGR":
        pixels = pixels[:, :, ::-1]
    if pixels.shape[2] != channels:
        raise InvalidArgument("image", f"the model expects {channels} channels; only 1 or 3 are supported")
    tensor = normalise(pixels, pre)
    geometry = Geometry((h0, w0), resized_hw, (top, left), (height, width))
    return np.ascontiguousarray(tensor.transpose(2, 0, 1), dtype=np.float32), geometry
