"""Vendored Triton model-config messages (BSD-3-Clause, see LICENSE here): parse ``config.pbtxt`` files."""
