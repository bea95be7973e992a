"""Attribution methods, one module each; importing this package registers them all."""

from . import occlusion  # noqa: F401  (registers)
from .registry import Family, MethodSpec, get_method, list_methods, register

__all__ = ["Family", "MethodSpec", "get_method", "list_methods", "register"]
