"""Server limits and switches, with production defaults — and the command-line flags made from them.

Every bound is declared once, here: :func:`add_limit_flags` turns each field into a ``--flag`` (named
after the field, or its ``flag`` metadata) so the CLI, the docs and the defaults cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024


def _limit(default: Any, help: str, *, flag: str | None = None) -> Any:
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass(frozen=True, kw_only=True)
class ServerLimits:
    """Every bound the server enforces. Defaults suit one CPU host; raise them for a GPU box."""

    max_message_bytes: int = _limit(
        64 * MIB, "gRPC send/receive limit in bytes, both sides (the 4 MiB gRPC default is too small for images)")
    max_image_pixels: int = _limit(40_000_000, "largest decoded image accepted (width × height)")
    max_evaluations: int = _limit(200_000, "most model evaluations one request may plan")
    max_concurrent: int = _limit(2, "explanations computed at once (worker threads)")
    max_queue: int = _limit(16, "explanations admitted to wait for a worker; beyond it RESOURCE_EXHAUSTED")
    max_concurrent_rpcs: int = _limit(256, "gRPC's own cap on in-flight RPCs of all kinds")
    max_targets: int = _limit(16, "most targets (heatmaps) per request")
    max_tensor_bytes: int = _limit(
        256 * MIB, "largest intermediate tensor a model may declare at batch 1 (static shapes; weights excluded): "
                   "refuses a model that would exhaust memory when loaded or probed")
    allow_uploads: bool = _limit(False, "let LoadModel accept serialized models from clients")
    load_timeout_seconds: float = _limit(300.0, "longest a LoadModel may take; a slower load is abandoned")
    max_pending_loads: int = _limit(2, "model loads running or waiting at once; beyond it RESOURCE_EXHAUSTED")
    drain_seconds: float = _limit(
        5.0, "on SIGTERM, seconds health reports NOT_SERVING (and new work is refused) before the server stops, "
             "so load balancers see it")
    grace_seconds: float = _limit(30.0, "on SIGTERM, seconds running explanations may take to finish", flag="--grace")
    max_connection_age: float = _limit(
        30 * 60.0, "seconds before the server asks a client to reconnect, so load spreads after scaling; 0 = never")
    max_connection_age_grace: float = _limit(
        60.0, "seconds a connection past its age keeps for the RPCs in flight before it is closed")


def grpc_options(limits: ServerLimits) -> list[tuple[str, int]]:
    """The channel arguments of ``grpc.aio.server`` that these limits set (ages in milliseconds)."""
    options = [
        ("grpc.so_reuseport", 0),  # a second server on a busy port must fail, not share it silently
        ("grpc.max_send_message_length", limits.max_message_bytes),
        ("grpc.max_receive_message_length", limits.max_message_bytes),
    ]
    if limits.max_connection_age > 0:  # gRPC's own default: connections live for ever
        options += [
            ("grpc.max_connection_age_ms", round(limits.max_connection_age * 1000)),
            ("grpc.max_connection_age_grace_ms", round(limits.max_connection_age_grace * 1000)),
        ]
    return options


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`ServerLimits` field, with its default and help."""
    for f in dataclasses.fields(ServerLimits):
        if f.type in (bool, "bool"):
            parser.add_argument(_flag(f), dest=f.name, action="store_true", help=f.metadata["help"])
        else:
            kind = {"int": int, "float": float}[f.type if isinstance(f.type, str) else f.type.__name__]
            parser.add_argument(_flag(f), dest=f.name, type=kind, default=f.default,
                                help=f"{f.metadata['help']} (default {f.default})")


def limits_from_args(args: argparse.Namespace) -> ServerLimits:
    """The :class:`ServerLimits` that :func:`add_limit_flags`' flags describe."""
    return ServerLimits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ServerLimits)})
