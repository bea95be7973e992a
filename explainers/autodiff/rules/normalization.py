"""Normalisation layers: BatchNormalization (inference), LayerNormalization, InstanceNormalization."""
