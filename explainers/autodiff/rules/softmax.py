"""Softmax and LogSoftmax along an axis."""
