"""The gRPC adapter over the ``explainers`` library: validate, resolve, run, stream."""
