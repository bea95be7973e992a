"""Server limits and switches, with production defaults."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class ServerLimits:
    """Every bound the server enforces. Defaults suit one CPU host; raise them for a GPU box."""

    max_message_bytes: int = 64 * MIB
    """gRPC send/receive limit on both sides (the 4 MiB default is too small for images/heatmaps)."""
    max_image_pixels: int = 40_000_000
    """Largest decoded image accepted (width × height)."""
    max_evaluations: int = 200_000
    """Largest number of model evaluations one request may plan."""
    max_concurrent: int = 2
    """Explanations computed at once (worker threads)."""
    max_queue: int = 16
    """Explanations admitted to wait for a worker; beyond it requests get RESOURCE_EXHAUSTED."""
    max_concurrent_rpcs: int = 256
    """gRPC's own cap on in-flight RPCs of all kinds."""
    max_targets: int = 16
    """Most targets (heatmaps) per request."""
    allow_uploads: bool = False
    """Whether LoadModel accepts serialized models from clients."""
    grace_seconds: float = 30.0
    """On SIGTERM, how long running explanations may take to finish."""
