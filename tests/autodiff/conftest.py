"""Fixes to onnx.reference, the float64 oracle of the rule tables, applied to every autodiff test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx.reference.ops import op_conv_transpose, op_erf, op_global_max_pool, op_max_pool


@pytest.fixture(autouse=True)
def float64_erf(monkeypatch):
    """onnx.reference's Erf rounds through float32 (``np.vectorize(erf, otypes=["f"])``), which
    wrecks float64 finite differences of Erf and Gelu; evaluate it in the input's dtype instead."""
    monkeypatch.setattr(op_erf.Erf, "_run", lambda self, x: (np.vectorize(math.erf, otypes=[x.dtype])(x),))


@pytest.fixture(autouse=True)
def reference_fixes(monkeypatch):
    """Correct onnx.reference's grouped ConvTranspose and MaxPool Indices (see the module doc)."""
    conv_transpose = op_conv_transpose.ConvTranspose._run

    def grouped_conv_transpose(self, X, W, B=None, **attributes):
        group = attributes.pop("group", None) or 1
        if group == 1:
            return conv_transpose(self, X, W, B, group=1, **attributes)
        biases = np.split(B, group) if B is not None else [None] * group
        parts = [conv_transpose(self, x, w, b, group=1, **attributes)[0]
                 for x, w, b in zip(np.split(X, group, axis=1), np.split(W, group, axis=0), biases)]
        return (np.concatenate(parts, axis=1),)

    def max_pool(self, x, auto_pad=None, ceil_mode=None, dilations=None, kernel_shape=None, pads=None,
                 storage_order=None, strides=None):
        spatial = len(kernel_shape)
        return self._max_pool(x, auto_pad, ceil_mode, dilations or [1] * spatial, kernel_shape,
                              pads or [0] * (2 * spatial), storage_order or 0, strides or [1] * spatial)

    def global_max_pool(self, x):
        return (x.max(axis=tuple(range(2, x.ndim)), keepdims=True),)

    monkeypatch.setattr(op_conv_transpose.ConvTranspose, "_run", grouped_conv_transpose)
    monkeypatch.setattr(op_global_max_pool.GlobalMaxPool, "_run", global_max_pool)
    monkeypatch.setattr(op_max_pool.MaxPool, "_run", max_pool)
