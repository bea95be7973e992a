"""Stub of torchvision.transforms (see the package docstring)."""

from .._missing import missing
from . import functional  # noqa: F401

Compose = missing("transforms.Compose")
Normalize = missing("transforms.Normalize")
ToTensor = missing("transforms.ToTensor")
