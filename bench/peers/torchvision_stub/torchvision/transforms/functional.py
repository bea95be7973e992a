"""Stub of torchvision.transforms.functional (see the package docstring)."""

from .._missing import missing

resize = missing("transforms.functional.resize")
