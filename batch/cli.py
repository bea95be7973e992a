"""``onnxplain batch INPUT --method M -o OUT (--models DIR | --server HOST:PORT)``: a dataset on Ray."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .records import HEATMAP_FORMATS
from .runner import explain_dataset


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs → typed values: VALUE is read as JSON (``32``, ``0.5``, ``true``, ``[0.1, 0.2]``)
    and kept as a string otherwise (``baseline=blur``), so the library and the server get the same values."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--param expects NAME=VALUE, got {pair!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:  # "0.05,0.1" is a list, as for `onnxplain explain`; else a string
            parts = value.split(",")
            params[key] = [float(p) for p in parts] if len(parts) > 1 and all(_is_number(p) for p in parts) else value
    return params


def build_parser(prog: str = "onnxplain batch") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Explain a folder, a glob, a CSV/Parquet of image paths or a Parquet of images "
        "(columns path, image) on Ray; rows go to Parquet files in OUT, and a rerun skips rows already there.")
    parser.add_argument("input", help="folder, glob, .csv/.parquet with a 'path' column, or .parquet with 'image'")
    parser.add_argument("-o", "--output", required=True, help="folder of Parquet result files (appended to)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--models", help="explain in-process: a model repository or one model's folder")
    where.add_argument("--server", help="HOST:PORT of an onnxplain server to explain through")
    parser.add_argument("--model", help="model name (default: the first in --models, or the server's first ready)")
    parser.add_argument("--method", default="occlusion")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="method parameter")
    parser.add_argument("--seed", type=int, default=0, help="the method's seed, the same for every image")
    parser.add_argument("--target", type=int, action="append", help="class index to explain (repeatable)")
    parser.add_argument("--top-k", type=int, default=1, help="explain the k best classes (default 1)")
    parser.add_argument("--heatmaps", choices=HEATMAP_FORMATS, default="fp16",
                        help="heatmap column: float16 values or 16-bit PNGs scaled to [heatmap_min, heatmap_max]")
    parser.add_argument("--actors", type=int, help="actor pool size (default: the cluster's CPUs / --cpus-per-actor)")
    parser.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs (and onnxruntime threads) per actor")
    parser.add_argument("--batch-size", type=int, default=4, help="images handed to an actor at a time")
    parser.add_argument("--address", help="Ray cluster address (default: an embedded Ray on this machine)")
    parser.add_argument("--token", help="bearer token for --server (default: $ONNXPLAIN_TOKEN)")
    parser.add_argument("--tls-ca", help="PEM root certificates: connect to --server with TLS")
    parser.add_argument("--timeout", type=float, default=600.0, help="deadline per image with --server, seconds")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print the run's summary as JSON on stdout")
    return parser


def main(argv: list[str] | None = None, prog: str = "onnxplain batch") -> int:
    args = build_parser(prog).parse_args(argv)
    client_options: dict[str, Any] = {"timeout": args.timeout}
    token = args.token or os.environ.get("ONNXPLAIN_TOKEN")
    if token:
        client_options["token"] = token
    if args.tls_ca:
        client_options["root_certificates"] = Path(args.tls_ca).read_bytes()
    try:
        summary = explain_dataset(
            args.input, args.output, args.method, models=args.models, server=args.server, model=args.model,
            params=parse_params(args.param), seed=args.seed, classes=args.target, top_k=args.top_k,
            heatmap_format=args.heatmaps, actors=args.actors, cpus_per_actor=args.cpus_per_actor,
            batch_size=args.batch_size, address=args.address, client_options=client_options,
            progress=not args.quiet)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**asdict(summary), "images_per_second": summary.images_per_second}))
    print(f"{summary.model}: {summary.images} images explained ({summary.failed} failed, {summary.skipped} already in "
          f"{args.output}) in {summary.seconds:.1f} s: {summary.images_per_second:.2f} images/s; "
          f"{summary.rows} rows written", file=sys.stderr)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
