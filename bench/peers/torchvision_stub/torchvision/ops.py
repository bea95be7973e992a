"""Stub of torchvision.ops (see the package docstring)."""

from ._missing import missing

box_iou = missing("ops.box_iou")
