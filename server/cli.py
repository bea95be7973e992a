"""``onnxplain-server`` (and ``onnxplain serve``): run the server on a model repository."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from .app import TlsFiles, serve_forever
from .limits import add_limit_flags, limits_from_args
from .logs import add_log_flags, configure_logging

PROVIDERS = {"auto": None, "cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


def build_parser(prog: str = "onnxplain-server") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Serve ONNX image classifiers and explain them over gRPC.")
    parser.add_argument("--models", default="models", help="model repository: <dir>/<name>/model.onnx (+ config.json)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = all cores)")
    parser.add_argument("--providers", choices=tuple(PROVIDERS), default="auto")
    parser.add_argument("--token", help="require 'authorization: Bearer TOKEN' (health is exempt)")
    parser.add_argument("--tls-cert", help="PEM certificate chain (enables TLS)")
    parser.add_argument("--tls-key", help="PEM private key")
    parser.add_argument("--tls-client-ca", help="PEM CA bundle: require client certificates (mutual TLS)")
    operations = parser.add_argument_group("operations")
    operations.add_argument("--metrics-port", type=int, default=0,
                            help="serve Prometheus metrics over HTTP at /metrics on this port (default 0 = off)")
    operations.add_argument("--metrics-host", default="127.0.0.1", help="address the metrics endpoint binds")
    add_log_flags(operations)
    add_limit_flags(parser.add_argument_group("limits"))
    return parser


def main(argv: list[str] | None = None, *, prog: str = "onnxplain-server") -> int:
    args = build_parser(prog).parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    tls = None
    if args.tls_cert:
        tls = TlsFiles(cert=Path(args.tls_cert), key=Path(args.tls_key),
                       client_ca=Path(args.tls_client_ca) if args.tls_client_ca else None)
    asyncio.run(serve_forever(
        Path(args.models), address=f"{args.host}:{args.port}", limits=limits_from_args(args), threads=args.threads,
        providers=PROVIDERS[args.providers], token=args.token, tls=tls,
        metrics_address=(args.metrics_host, args.metrics_port) if args.metrics_port else None,
    ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
