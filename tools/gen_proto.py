#!/usr/bin/env python3
"""Regenerate the committed Python stubs from proto/ (``make proto``): the contract ``onnxplain/v1``
(messages and gRPC services) and the vendored Triton ``triton/model_config.proto`` (messages only).

``--check DIR`` writes a fresh generation into DIR instead, for the drift test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGES = ("onnxplain/v1", "onnxplain/oip")  # folders of .proto files, each a Python package of stubs


def generate(out: Path) -> None:
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for package in PACKAGES
                     for p in (PROTO_ROOT / package).glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}",
            f"--grpc_python_out={out}", *sources]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    triton = ["protoc", f"-I{PROTO_ROOT}", f"--python_out={out}", f"--pyi_out={out}", "triton/model_config.proto"]
    if protoc.main(triton) != 0:
        sys.exit("protoc failed on the Triton proto")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=PROTO_ROOT)
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
