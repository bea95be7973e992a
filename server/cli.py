"""``onnxplain-server`` (and ``onnxplain serve``): run the server on a model repository."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from onnxplain.explainers.errors import OnnxplainError
from onnxplain.explainers.model.graph_cache import FOLDER_ENV

from .app import TlsFiles, serve_forever
from .limits import add_limit_flags, limits_from_args
from .logs import add_log_flags, configure_logging
from .security import read_secret

PROVIDERS = {"auto": None, "cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


def build_parser(prog: str = "onnxplain-server") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Serve ONNX image classifiers and explain them over gRPC.")
    parser.add_argument("--models", default="models", help="model repository: <dir>/<name>/model.onnx (+ config.json)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = all cores)")
    parser.add_argument("--providers", choices=tuple(PROVIDERS), default="auto")
    parser.add_argument("--token", help="require 'authorization: Bearer TOKEN' on every RPC but health (visible in "
                                        "`ps`: prefer --token-file or ONNXPLAIN_TOKEN)")
    parser.add_argument("--token-file", help="read the token from this file's first line")
    parser.add_argument("--admin-token", help="a separate token for LoadModel/UnloadModel (or --admin-token-file, "
                                              "ONNXPLAIN_ADMIN_TOKEN); the explain token is then refused for them")
    parser.add_argument("--admin-token-file", help="read the admin token from this file's first line")
    parser.add_argument("--tls-cert", help="PEM certificate chain (enables TLS)")
    parser.add_argument("--tls-key", help="PEM private key")
    parser.add_argument("--tls-client-ca", help="PEM CA bundle: require client certificates (mutual TLS)")
    operations = parser.add_argument_group("operations")
    operations.add_argument("--metrics-port", type=int, default=0,
                            help="serve Prometheus metrics over HTTP at /metrics on this port (default 0 = off)")
    operations.add_argument("--graph-cache", metavar="DIR", help="folder keeping built gradient graphs across restarts, "
                            f"'off' for none (sets {FOLDER_ENV}; default $XDG_CACHE_HOME/onnxplain/graphs)")
    operations.add_argument("--metrics-host", default="127.0.0.1", help="address the metrics endpoint binds")
    operations.add_argument("--warm-up", metavar="METHODS", default="",
                            help="comma-separated methods every model explains a probe image with when it loads, "
                                 "before it is ready, so no request pays for building their graphs (e.g. "
                                 "saliency,grad_cam)")
    add_log_flags(operations)
    add_limit_flags(parser.add_argument_group("limits"))
    return parser


def main(argv: list[str] | None = None, *, prog: str = "onnxplain-server") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    if args.graph_cache is not None:  # read by every classifier the repository loads
        os.environ[FOLDER_ENV] = args.graph_cache
    try:
        token = read_secret(args.token, args.token_file, "ONNXPLAIN_TOKEN")
        admin_token = read_secret(args.admin_token, args.admin_token_file, "ONNXPLAIN_ADMIN_TOKEN")
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read a token: {exc}")
    if admin_token and not token:
        parser.error("--admin-token needs --token as well (the explain token)")
    tls = None
    if args.tls_cert:
        tls = TlsFiles(cert=Path(args.tls_cert), key=Path(args.tls_key),
                       client_ca=Path(args.tls_client_ca) if args.tls_client_ca else None)
    try:
        asyncio.run(serve_forever(
            Path(args.models), address=f"{args.host}:{args.port}", limits=limits_from_args(args), threads=args.threads,
            providers=PROVIDERS[args.providers], token=token, admin_token=admin_token, tls=tls,
            metrics_address=(args.metrics_host, args.metrics_port) if args.metrics_port else None,
            warm_up=tuple(args.warm_up.split(",")),
        ))
    except (OSError, OnnxplainError) as exc:  # a busy port, a missing provider, an unreadable repository
        print(f"onnxplain serve: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
