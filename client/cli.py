"""The ``onnxplain`` client commands: models, methods, metrics, predict, explain, evaluate, report (``serve`` is the
server's own CLI)."""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys
from pathlib import Path

import grpc
import numpy as np

from onnxplain import __version__
from onnxplain.v1 import model_service_pb2 as model_pb2

from .client import CONTRAST_LOSSES, DEFAULT_ADDRESS, Accepted, Client, Progress, Result
from .evaluation import EvaluationAccepted, MetricScore, collect
from .report import Cell


def _progress_bar(done: int, total: int, width: int = 32) -> None:
    """Redraw a one-line bar on a terminal; elsewhere (logs, CI) print only the last state."""
    if not sys.stderr.isatty() and done < total:
        return
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} evaluations")
    sys.stderr.flush()


def _client(args: argparse.Namespace) -> Client:
    root = Path(args.tls_ca).read_bytes() if args.tls_ca else None
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("--tls-cert and --tls-key go together (a client certificate for mutual TLS)")
    identity = (Path(args.tls_key).read_bytes(), Path(args.tls_cert).read_bytes()) if args.tls_cert else None
    token = args.token or os.environ.get("ONNXPLAIN_TOKEN") or None
    return Client(args.server, token=token, root_certificates=root, client_certificate=identity,
                  timeout=args.timeout)


def _default_model(client: Client) -> str:
    try:
        return client.first_ready_model()
    except ValueError:
        raise SystemExit("the server has no ready model; pass --model") from None


def cmd_models(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for m in client.list_models():
            state = model_pb2.ModelState.Name(m.state).removeprefix("MODEL_STATE_").lower()
            line = f"{m.name:24s} {state}"
            if m.input.name:
                line += f"  input {m.input.datatype}{list(m.input.shape)}  {m.num_classes} classes  {', '.join(m.providers)}"
            if m.error:
                line += f"  error: {m.error}"
            print(line)
            if m.provenance:
                print(f"{'':24s} settings: {_provenance_summary(m.provenance)}")
            for warning in m.warnings:
                print(f"{'':24s} warning: {warning}")
    return 0


def _source(origin: model_pb2.SettingOrigin) -> str:
    return model_pb2.SettingSource.Name(origin.source).removeprefix("SETTING_SOURCE_").lower()


def _provenance_summary(provenance) -> str:
    """``configured: a, b; metadata: c; detected: d; defaulted: e``: which settings came from where."""
    groups: dict[str, list[str]] = {}
    for origin in provenance:
        groups.setdefault(_source(origin), []).append(origin.setting)
    order = ("configured", "metadata", "detected", "defaulted")
    return "; ".join(f"{source}: {', '.join(groups[source])}" for source in order if source in groups)


def _print_warnings(warnings) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def cmd_methods(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for method in client.list_methods():
            kind = "black-box" if method.black_box else "white-box"
            print(f"{method.name:22s} {kind:9s} {method.summary}")
            for p in method.parameters:
                bounds = f" [{p.minimum:g}, {p.maximum:g}]" if p.HasField("minimum") and p.HasField("maximum") else ""
                choices = f" {{{', '.join(p.choices)}}}" if p.choices else ""
                print(f"    {p.name}={p.default_value} ({p.type}{bounds}{choices}) {p.description}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    with _client(args) as client:
        model = args.model or _default_model(client)
        predictions = client.predictions(model, Path(args.image), top_k=args.top_k)
        for p in predictions.classes:
            print(f"{p.index:5d}  {p.probability:7.4f}  {p.label}")
        info = next((m for m in client.list_models() if m.name == model), None)
        if info is not None and not args.quiet:  # is my preprocessing right? what the answer rests on
            print("settings (value, and where it came from):")
            for origin in info.provenance:
                where = f"{_source(origin)}" + (f" ({origin.detail})" if origin.detail else "")
                print(f"  {origin.setting:28s} {origin.value:32s} {where}")
        _print_warnings(predictions.warnings)
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when the server reports SERVING for ``--service`` (a container or script probe)."""
    try:
        from grpc_health.v1 import health_pb2, health_pb2_grpc  # grpcio-health-checking
    except ImportError:
        raise SystemExit("`onnxplain health` needs grpcio-health-checking: pip install grpcio-health-checking") from None
    with _client(args) as client:
        stub = health_pb2_grpc.HealthStub(client.channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout,
                              metadata=client.metadata)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(f"{args.service or 'server'}: {status}")
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1


def _parse_params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--param expects NAME=VALUE, got {pair!r}")
        params[key] = value
    return params


IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (by suffix, any case), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _image_paths(names: list[str]) -> list[Path]:
    """Image arguments → files: a directory stands for its image files."""
    return [path for name in map(Path, names) for path in (image_files(name) if name.is_dir() else [name])]


def cmd_explain(args: argparse.Namespace) -> int:
    """Explain each image in turn; a failed image is reported and the rest still run (exit 1 if any failed)."""
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    with _client(args) as client:
        model = args.model or _default_model(client)
        reports = [_explain_image(client, model, image, out, args) for image in _image_paths(args.image)]
    if args.json:
        counts = {status: sum(r["status"] == status for r in reports) for status in ("explained", "skipped", "failed")}
        print(json.dumps({"model": model, "method": args.method, "output": str(out), **counts, "images": reports}))
    return 1 if any(r["status"] == "failed" for r in reports) else 0


def _explain_image(client: Client, model: str, image: Path, out: Path, args: argparse.Namespace) -> dict:
    """Explain one image into ``out`` (``<stem>_<method>_<class>.npy``, ``_original.npy``, ``.png``) → its report."""
    report: dict = {"image": str(image), "status": "explained", "targets": []}
    if args.skip_existing and any(out.glob(f"{glob.escape(image.stem)}_{glob.escape(args.method)}_*.npy")):
        return {**report, "status": "skipped"}
    try:
        result = _explain_stream(client, model, image, args)
    except (grpc.RpcError, OSError) as exc:  # e.g. an undecodable image, an unreadable file: the others still run
        error = _error_line(exc) if isinstance(exc, grpc.RpcError) else f"error: {image}: {exc}"
        print(error, file=sys.stderr)
        return {**report, "status": "failed", "error": error}
    lines = sys.stderr if args.json else sys.stdout  # with --json, stdout holds only the summary
    for index, target in enumerate(result.targets):
        stem = out / f"{image.stem}_{args.method}_{target.class_index}"
        np.save(f"{stem}.npy", result.heatmaps[index])
        if result.original_heatmaps is not None:
            np.save(f"{stem}_original.npy", result.original_heatmaps[index])
        if target.overlay_png:
            Path(f"{stem}.png").write_bytes(target.overlay_png)
        for name, values in result.tensors.items():  # method-specific arrays, one file per target and name
            np.save(f"{stem}_{name}.npy", values[index])
        written = f"{stem}.png" if target.overlay_png else f"{stem}.npy"
        print(f"{written}  class {target.class_index} ({target.label})  score {target.score:.4f}", file=lines)
        contrast = ({"contrast_class": target.contrast_class, "contrast_loss": target.contrast_loss}
                    if target.contrast_class is not None else {})
        report["targets"].append({"class_index": target.class_index, "label": target.label, "score": target.score,
                                  "heatmap": f"{stem}.npy", "overlay": f"{stem}.png" if target.overlay_png else None,
                                  **contrast})
    print(f"{result.forward_evaluations} forward + {result.backward_evaluations} backward evaluations in "
          f"{result.elapsed_seconds:.2f} s", file=sys.stderr)
    return {**report, "forward": result.forward_evaluations, "backward": result.backward_evaluations,
            "seconds": result.elapsed_seconds}


def _explain_stream(client: Client, model: str, image: Path, args: argparse.Namespace) -> Result:
    """One Explain call, drawing its progress bar; returns the Result."""
    events = client.explain_stream(
        model, image, args.method, classes=args.target, top_k=args.top_k, contrast=args.contrast,
        contrast_loss=args.contrast_loss, params=_parse_params(args.param), seed=args.seed,
        overlay=not args.no_overlay,
        original_grid=not args.no_original,
    )
    result = None
    for event in events:
        if isinstance(event, Accepted):
            targets = ", ".join(f"{i} ({label})" for i, label in event.targets)
            print(f"{event.method} on {event.model}: {targets}; {event.planned_evaluations} evaluations planned",
                  file=sys.stderr)
            _print_warnings(event.warnings)
        elif isinstance(event, Progress) and not args.quiet:
            _progress_bar(event.done, event.total)
        elif isinstance(event, Result):
            result = event
    if not args.quiet:
        sys.stderr.write("\n")
    assert result is not None
    return result


def cmd_metrics(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for metric in client.list_metrics():
            direction = "higher" if metric.higher_is_better else "lower"
            print(f"{metric.name:22s} {direction} is better  {metric.summary}")
            print(f"    {metric.citation}")
            for p in metric.parameters:
                bounds = f" [{p.minimum:g}, {p.maximum:g}]" if p.HasField("minimum") and p.HasField("maximum") else ""
                choices = f" {{{', '.join(p.choices)}}}" if p.choices else ""
                print(f"    {p.name}={p.default_value} ({p.type}{bounds}{choices}) {p.description}")
        for name, reason in client.not_per_request_metrics().items():
            print(f"{name:22s} not per request: {reason}")
    return 0


def _metric_params(metrics: list[str], pairs: list[str]) -> dict[str, dict[str, str]]:
    """``--metric`` names and ``--metric-param METRIC.NAME=VALUE`` pairs → {metric: {parameter: text}}."""
    if len(set(metrics)) < len(metrics):
        raise SystemExit(f"--metric names each metric once (got {', '.join(metrics)})")
    chosen: dict[str, dict[str, str]] = {name: {} for name in metrics}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        metric, dot, name = key.partition(".")
        if not (sep and dot and metric and name):
            raise SystemExit(f"--metric-param expects METRIC.NAME=VALUE, got {pair!r}")
        if metric not in chosen:
            raise SystemExit(f"--metric-param {pair!r}: {metric!r} is not one of the --metric names "
                             f"({', '.join(chosen) or 'none'})")
        chosen[metric][name] = value
    return chosen


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Explain one image and score the explanation; with --json, one JSON object keyed by metric name."""
    metrics = _metric_params(args.metric or ["deletion"], args.metric_param)
    lines = sys.stderr if args.json else sys.stdout
    with _client(args) as client:
        model = args.model or _default_model(client)
        events = client.evaluate_stream(
            model, Path(args.image), args.method, metrics, classes=args.target, top_k=args.top_k,
            contrast=args.contrast, contrast_loss=args.contrast_loss, params=_parse_params(args.param), seed=args.seed)

        def shown(stream):
            for event in stream:
                if isinstance(event, EvaluationAccepted):
                    targets = ", ".join(f"{i} ({label})" for i, label in event.accepted.targets)
                    print(f"evaluating {event.accepted.method} on {event.accepted.model} by {', '.join(event.metrics)}: "
                          f"{targets}; {event.accepted.planned_evaluations} evaluations planned", file=sys.stderr)
                    _print_warnings(event.accepted.warnings)
                elif isinstance(event, Progress) and not args.quiet:
                    _progress_bar(event.done, event.total)
                elif isinstance(event, MetricScore) and not args.quiet:
                    sys.stderr.write("\n")
                yield event

        evaluation = collect(shown(events))
    labels = [label for _, label in evaluation.accepted.accepted.targets]
    summary = {}
    for name, score in evaluation.metrics.items():
        summary[name] = {
            "values": [float(v) for v in score.values], "targets": labels, "higher_is_better": score.higher_is_better,
            "extras": score.extras, "forward": score.forward_evaluations, "backward": score.backward_evaluations,
            "seconds": score.elapsed_seconds,
            "curves": {c.name: {"x": c.x.tolist(), "y": c.y.tolist(), "x_label": c.x_label,
                                "x_ticks": list(c.x_ticks), "y_label": c.y_label} for c in score.curves},
        }
        direction = "higher" if score.higher_is_better else "lower"
        values = ", ".join(f"{label} {v:.4f}" for label, v in zip(labels, score.values))
        print(f"{name} ({direction} is better): {values}  [{score.forward_evaluations + score.backward_evaluations} "
              f"evaluations, {score.elapsed_seconds:.2f} s]", file=lines)
    done = evaluation.done
    print(f"{done.forward_evaluations} forward + {done.backward_evaluations} backward evaluations in "
          f"{done.elapsed_seconds:.2f} s", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Evaluate each method on each image and write one self-contained HTML report."""
    methods = [m for m in args.methods.split(",") if m]
    metrics = [m for m in args.metrics.split(",") if m] if args.metrics else None

    def said(cell: Cell) -> None:
        outcome = cell.error or f"{cell.seconds:.2f} s"
        print(f"{cell.image} {cell.method}: {outcome}", file=sys.stderr)

    with _client(args) as client:
        model = args.model or _default_model(client)
        report = client.report(_image_paths(args.image), methods, args.output, model=model, metrics=metrics,
                               top_k=args.top_k, seed=args.seed, on_cell=said)
    failed = sum(cell.error != "" for cell in report.cells)
    print(f"{args.output}: {len(report.photos)} image(s) x {len(methods)} method(s) in {report.seconds:.1f} s"
          + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


def _error_line(error: grpc.RpcError) -> str:
    """``error: CODE: details (request_id …)``: what the CLI prints for a failed call."""
    request_id = _request_id(error)
    return f"error: {error.code().name}: {error.details()}" + (f" (request_id {request_id})" if request_id else "")


def _request_id(error: grpc.RpcError) -> str:
    """The request_id the server echoed in the error's google.rpc.ErrorInfo, or ''."""
    try:
        from google.rpc import error_details_pb2, status_pb2  # googleapis-common-protos: not in a thin install
    except ImportError:
        return ""

    for key, value in (error.trailing_metadata() or ()) if hasattr(error, "trailing_metadata") else ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info.metadata.get("request_id", "")
    return ""


def _explanation_arguments(command: argparse.ArgumentParser) -> None:
    """What explain and evaluate both take: the model, the method and its parameters, the target, the seed."""
    command.add_argument("--model", help="model name (default: the server's first ready model)")
    command.add_argument("--method", default="occlusion")
    command.add_argument("--target", type=int, action="append", help="class index to explain (repeatable)")
    command.add_argument("--top-k", type=int, help="explain the k best classes (default 1)")
    command.add_argument("--contrast", type=int, help="explain 'target rather than this class'")
    command.add_argument("--contrast-loss", choices=CONTRAST_LOSSES,
                         help="how the contrast is scored: difference (s_P - s_Q, default) or cross_entropy "
                              "(the softmax cross-entropy towards the contrast class, Prabhushankar et al. 2020)")
    command.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="method parameter")
    command.add_argument("--seed", type=int)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onnxplain", description="Explain ONNX image classifiers over gRPC.")
    parser.add_argument("--version", action="version", version=f"onnxplain {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    # Listed for --help only: the `onnxplain` dispatcher (onnxplain.cli) hands `serve` to the server's own CLI.
    sub.add_parser("serve", help="run the server on a model repository (`onnxplain serve --help` lists its flags)")
    sub.add_parser("batch", help="explain a whole dataset on Ray (`onnxplain batch --help`; needs onnxplain[ray])")

    def client_command(name: str, help_text: str, func) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text)
        command.add_argument("--server", default=DEFAULT_ADDRESS, help="HOST:PORT of the server")
        command.add_argument("--token", help="bearer token (default: $ONNXPLAIN_TOKEN)")
        command.add_argument("--tls-ca", help="PEM root certificates: connect with TLS")
        command.add_argument("--tls-cert", help="PEM client certificate chain, for servers that require mutual TLS")
        command.add_argument("--tls-key", help="PEM private key of --tls-cert")
        command.add_argument("--timeout", type=float, default=600.0, help="deadline in seconds")
        command.set_defaults(func=func)
        return command

    client_command("models", "list the server's models", cmd_models)
    client_command("methods", "list the explanation methods and their parameters", cmd_methods)
    health = client_command("health", "exit 0 when the server is SERVING (readiness; --service liveness)", cmd_health)
    health.add_argument("--service", default="", help="'' readiness, 'liveness', or 'model/NAME'")
    predict = client_command("predict", "classify an image", cmd_predict)
    predict.add_argument("image")
    predict.add_argument("--model")
    predict.add_argument("--top-k", type=int, default=5)
    predict.add_argument("-q", "--quiet", action="store_true", help="only the classes (and warnings), not the settings")
    explain = client_command("explain", "explain images; writes .npy heatmaps and PNG overlays", cmd_explain)
    explain.add_argument("image", nargs="+", help="image files, or directories of them")
    _explanation_arguments(explain)
    explain.add_argument("-o", "--output", default="out", help="directory for .npy heatmaps and PNG overlays")
    explain.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    explain.add_argument("--skip-existing", action="store_true",
                         help="skip an image whose <stem>_<method>_*.npy is already in the output directory")
    explain.add_argument("--no-overlay", action="store_true", help="write no PNG overlays")
    explain.add_argument("--no-original", action="store_true", help="write no heatmaps on the original image grid")
    explain.add_argument("--json", action="store_true", help="print a JSON summary of every image on stdout")
    client_command("metrics", "list the evaluation metrics (and those that are not per request)", cmd_metrics)
    evaluate = client_command("evaluate", "explain an image and score the explanation with metrics", cmd_evaluate)
    evaluate.add_argument("image")
    _explanation_arguments(evaluate)
    evaluate.add_argument("--metric", action="append", help="metric name (repeatable; default deletion)")
    evaluate.add_argument("--metric-param", action="append", default=[], metavar="METRIC.NAME=VALUE",
                          help="metric parameter, e.g. deletion.steps=20")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object keyed by metric name on stdout")
    report = client_command("report", "write one self-contained HTML report of methods side by side", cmd_report)
    report.add_argument("image", nargs="+", help="image files, or directories of them")
    report.add_argument("--methods", required=True, help="comma-separated method names")
    report.add_argument("--metrics", help="comma-separated metric names (default: deletion, insertion and "
                                          "sanity_cascading, of those the server has)")
    report.add_argument("--model", help="model name (default: the server's first ready model)")
    report.add_argument("--top-k", type=int, help="explain the k best classes (default 1)")
    report.add_argument("--seed", type=int, default=0)
    report.add_argument("-o", "--output", default="report.html", help="the HTML file to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except grpc.RpcError as exc:
        print(_error_line(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
