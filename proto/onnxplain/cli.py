"""The ``onnxplain`` command: ``serve`` runs the server, ``batch`` a dataset on Ray, every other command is the
thin client.

This dispatcher is the one place that knows both sides, so :mod:`onnxplain.client` and
:mod:`onnxplain.server` never import each other. A thin install (no extras) that asks for ``serve``
is told which extra to install instead of getting a traceback; so is one without Ray that asks for ``batch``.
"""

from __future__ import annotations

import sys

from onnxplain import __version__

SERVER_EXTRAS_HINT = (
    "`onnxplain serve` needs the server, which this install lacks ({missing}). "
    "Install it with: pip install 'onnxplain[cpu]'  (or 'onnxplain[gpu]' on a CUDA host)"
)

BATCH_EXTRAS_HINT = (
    "`onnxplain batch` needs Ray Data, which this install lacks ({missing}). "
    "Install it with: pip install 'onnxplain[ray]'  (and 'onnxplain[cpu]' to explain with --models)"
)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--version"]:
        print(f"onnxplain {__version__}")
        return 0
    if argv[:1] == ["serve"]:
        try:
            from onnxplain.server.cli import main as serve
        except ModuleNotFoundError as exc:
            print(SERVER_EXTRAS_HINT.format(missing=f"no module named {exc.name!r}"), file=sys.stderr)
            return 2
        return serve(argv[1:], prog="onnxplain serve")
    if argv[:1] == ["batch"]:
        try:
            import pyarrow  # noqa: F401 — the extra's packages, checked before any work
            import ray.data  # noqa: F401

            from onnxplain.batch.cli import main as batch
        except ModuleNotFoundError as exc:
            print(BATCH_EXTRAS_HINT.format(missing=f"no module named {exc.name!r}"), file=sys.stderr)
            return 2
        return batch(argv[1:], prog="onnxplain batch")
    from onnxplain.client.cli import main as client

    return client(argv)


if __name__ == "__main__":
    sys.exit(main())
