"""A visual report of every method side by side, as one self-contained HTML file (like Figure 1 of the survey).

For each image and each method one Evaluate call explains the image (the server draws the overlays) and
scores the explanation (by default deletion and insertion AUC, Petsiuk et al. 2018, and the cascading
sanity check, Adebayo et al. 2018, where the server has them). The page shows the photo, each method's
overlay per target with its cost (model passes, seconds) and its scores, each metric's curve as a small
inline SVG, and one sortable table of every number.

Self-contained: images are ``data:`` URIs, styles and the small script are inline, no fonts or scripts
from a network. The page's Content-Security-Policy forbids any other load, so opening it can never reach
a server. After it runs, the script records on ``<body>`` what a test (or a curious reader) may check:
``data-ready``, ``data-overlays`` (overlay images decoded), ``data-external`` (resources that were not
``data:`` URIs), ``data-errors``; script errors, failed and blocked loads are listed in ``#errors``.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from .client import Client, ImageLike
from .evaluation import Curve, Evaluation

DEFAULT_METRICS = ("deletion", "insertion", "sanity_cascading")
"""What a report scores by default, of what the server has."""
PLOTTED_CURVE = {"sanity_cascading": "spearman_abs", "sanity_independent": "spearman_abs"}
"""Which curve of a metric the report draws (otherwise its first)."""
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
IMAGE_TYPES = ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"GIF8", "image/gif"), (b"BM", "image/bmp"))


@dataclass(frozen=True)
class Cell:
    """One (image, method): its evaluation, or the error that stopped it."""

    image: str
    method: str
    evaluation: Evaluation | None
    error: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    """What :func:`write_report` computed: every cell, the metrics used, and the wall time."""

    model: str
    metrics: list[Any]
    photos: dict[str, str | None] = field(default_factory=dict)
    cells: list[Cell] = field(default_factory=list)
    seconds: float = 0.0


def write_report(client: Client, images: Sequence[ImageLike], methods: Sequence[str], path: str | Path, *,
                 model: str | None = None, metrics: Sequence[str] | None = None,
                 params: Mapping[str, Mapping[str, Any]] | None = None,
                 on_cell: Callable[[Cell], None] | None = None, **options: Any) -> Report:
    """Evaluate every method on every image and write the HTML report to ``path``.

    ``metrics``: names (default: those of :data:`DEFAULT_METRICS` the server lists); ``params``:
    {method: its parameters}; ``options``: as :meth:`Client.explain_stream` (``top_k``, ``classes``,
    ``seed``, ...). A method that fails on an image (e.g. a white-box method on a remote model) is
    reported in its cell; the others still run. ``on_cell`` is called after each cell.
    """
    started = time.perf_counter()
    listed = {m.name: m for m in client.list_metrics()}
    names = list(metrics) if metrics is not None else [m for m in DEFAULT_METRICS if m in listed]
    model = model or client.first_ready_model()
    report = Report(model, [listed[m] for m in names if m in listed])
    for index, image in enumerate(images):
        name = str(image) if isinstance(image, (str, Path)) else f"image {index + 1}"
        report.photos[name] = _photo_uri(image)
        for method in methods:
            cell_started = time.perf_counter()
            try:
                evaluation = client.evaluate(model, image, method, names, overlay=True,
                                             params=(params or {}).get(method), **options)
                cell = Cell(name, method, evaluation, seconds=time.perf_counter() - cell_started)
            except grpc.RpcError as exc:
                cell = Cell(name, method, None, f"{exc.code().name}: {exc.details()}",
                            time.perf_counter() - cell_started)
            report.cells.append(cell)
            if on_cell is not None:
                on_cell(cell)
    report.seconds = time.perf_counter() - started
    Path(path).write_text(render(report), encoding="utf-8")
    return report


def _photo_uri(image: ImageLike) -> str | None:
    """The encoded image as a data: URI when a browser can show it (PNG, JPEG, GIF, BMP, WebP), else None."""
    if isinstance(image, (str, Path)):
        image = Path(image).read_bytes()
    if not isinstance(image, (bytes, bytearray)):
        return None  # a preprocessed tensor: the overlays show it
    data = bytes(image)
    kind = next((mime for magic, mime in IMAGE_TYPES if data.startswith(magic)), None)
    if kind is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = "image/webp"
    return _data_uri(data, kind) if kind else None


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


# ----------------------------------------------------------------- rendering
def render(report: Report) -> str:
    """The whole page."""
    e = html.escape
    legend = "".join(
        f"<li><b>{e(m.name)}</b> ({'higher' if m.higher_is_better else 'lower'} is better): {e(m.summary)} "
        f"<i>{e(m.citation)}</i></li>" for m in report.metrics)
    sections = "".join(_section(name, photo, [c for c in report.cells if c.image == name], report)
                       for name, photo in report.photos.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>onnxplain report: {e(report.model)}</title>
<style>{STYLE}</style>
<script>{HEAD_SCRIPT}</script></head>
<body data-ready="0">
<h1>Explanations of <code>{e(report.model)}</code>, side by side</h1>
<p>{len(report.photos)} image(s) &times; {len({c.method for c in report.cells})} method(s) in
{report.seconds:.1f} s. Metrics:</p><ul class="legend">{legend or "<li>none</li>"}</ul>
{sections}
<h2>Every number</h2>
<p>Click a column to sort.</p>
{_table(report)}
<pre id="errors"></pre>
<script>{SCRIPT}</script>
</body></html>
"""


def _section(name: str, photo: str | None, cells: list[Cell], report: Report) -> str:
    """One image: a row per target, the photo then each method's overlay for that target, side by side."""
    e = html.escape
    photo_figure = (f'<figure class="photo"><img alt="{e(name)}" src="{photo}"><figcaption>{e(name)}</figcaption>'
                    "</figure>" if photo else "")
    targets = max((len(c.evaluation.explanation.targets) for c in cells if c.evaluation is not None), default=1)
    rows = []
    for index in range(targets):
        figures = [photo_figure, *(_figure(cell, index, name, report) for cell in cells)]
        rows.append(f'<div class="row">{"".join(figures)}</div>')
    return f'<section><h2 title="{e(name)}">{e(Path(name).name)}</h2>{"".join(rows)}</section>'


def _figure(cell: Cell, index: int, name: str, report: Report) -> str:
    """One method's overlay for target ``index`` with its cost and scores (or the error that stopped it)."""
    e = html.escape
    if cell.evaluation is None:
        return f'<figure class="failed"><figcaption><b>{e(cell.method)}</b><br>{e(cell.error)}</figcaption></figure>'
    result = cell.evaluation.explanation
    if index >= len(result.targets):
        return ""
    target = result.targets[index]
    uri = _data_uri(target.overlay_png, "image/png") if target.overlay_png else ""
    scores = "".join(_score(m, cell.evaluation, index) for m in report.metrics)
    return (f'<figure class="method"><img class="overlay" alt="{e(cell.method)} on {e(name)}" src="{uri}">'
            f"<figcaption><b>{e(cell.method)}</b> &middot; {e(target.label)} ({target.class_index})<br>"
            f"{result.forward_evaluations + result.backward_evaluations} passes, {result.elapsed_seconds:.2f} s"
            f"<ul>{scores}</ul></figcaption></figure>")


def _score(info: Any, evaluation: Evaluation, target: int) -> str:
    score = evaluation.metrics.get(info.name)
    if score is None:
        return ""
    plotted = next((c for c in score.curves if c.name == PLOTTED_CURVE.get(info.name)), None) or (
        score.curves[0] if score.curves else None)
    plot = sparkline(plotted, target) if plotted is not None else ""
    arrow = "&uarr;" if score.higher_is_better else "&darr;"
    return f"<li>{html.escape(info.name)} {arrow} <b>{score.values[target]:.3f}</b>{plot}</li>"


def sparkline(curve: Curve, target: int, width: int = 150, height: int = 44) -> str:
    """One target's row of ``curve`` as a small SVG line with its y range and x label (layer names as tooltips)."""
    x, y = np.asarray(curve.x, np.float64), np.asarray(curve.y[target], np.float64)
    low, high = float(min(y.min(), 0.0)), float(max(y.max(), 1e-12))
    span_x = float(x.max() - x.min()) or 1.0
    points = " ".join(f"{2 + (xi - x.min()) / span_x * (width - 4):.1f},{2 + (high - yi) / (high - low) * (height - 4):.1f}"
                      for xi, yi in zip(x, y))
    ticks = "".join(f"<circle cx='{2 + (xi - x.min()) / span_x * (width - 4):.1f}' "
                    f"cy='{2 + (high - yi) / (high - low) * (height - 4):.1f}' r='1.5'><title>{html.escape(t)}: "
                    f"{yi:.3f}</title></circle>" for xi, yi, t in zip(x, y, curve.x_ticks))
    title = html.escape(f"{curve.name}: {curve.y_label or 'value'} vs {curve.x_label}; y from {low:.2g} to {high:.2g}")
    level = 2 + high / (high - low) * (height - 4)  # where y = 0 is, dashed when the curve goes below it
    zero = f"<line x1='2' x2='{width - 2}' y1='{level:.1f}' y2='{level:.1f}' class='zero'/>" if low < 0 else ""
    return (f'<svg class="curve" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
            f"<title>{title}</title><rect x='0.5' y='0.5' width='{width - 1}' height='{height - 1}' class='frame'/>"
            f"{zero}<polyline points='{points}' fill='none' stroke='{COLOURS[target % len(COLOURS)]}' "
            "stroke-width='1.5'/>"
            f"{ticks}</svg><span class='axis'>{html.escape(curve.name)} vs {html.escape(curve.x_label)}</span>")


def _table(report: Report) -> str:
    e = html.escape
    heads = ["image", "method", "target", "passes", "seconds", *(f"{m.name} {'↑' if m.higher_is_better else '↓'}"
                                                                   for m in report.metrics), "metric passes"]
    rows = []
    for cell in report.cells:
        if cell.evaluation is None:
            rows.append(f"<tr><td>{e(cell.image)}</td><td>{e(cell.method)}</td>"
                        f'<td colspan="{len(heads) - 2}">{e(cell.error)}</td></tr>')
            continue
        result, done = cell.evaluation.explanation, cell.evaluation.done
        passes = result.forward_evaluations + result.backward_evaluations
        metric_passes = done.forward_evaluations + done.backward_evaluations - passes
        for index, target in enumerate(result.targets):
            values = [cell.evaluation.metrics[m.name].values[index] if m.name in cell.evaluation.metrics else None
                      for m in report.metrics]
            numbers = "".join(f'<td data-value="{v:.6g}">{v:.3f}</td>' if v is not None else "<td></td>"
                              for v in values)
            rows.append(f"<tr><td>{e(cell.image)}</td><td>{e(cell.method)}</td><td>{e(target.label)}</td>"
                        f'<td data-value="{passes}">{passes}</td>'
                        f'<td data-value="{result.elapsed_seconds:.6g}">{result.elapsed_seconds:.2f}</td>'
                        f'{numbers}<td data-value="{metric_passes}">{metric_passes}</td></tr>')
    header = "".join(f"<th>{e(h)}</th>" for h in heads)
    return f'<table id="scores"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
.row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; margin-bottom: 14px; }
figure { margin: 0; width: 200px; font-size: 12px; }
figure img { width: 200px; height: auto; display: block; border: 1px solid #ccc; }
figure ul { padding-left: 1.1em; margin: 4px 0; }
figure.failed { color: #a00; border: 1px dashed #a00; padding: 6px; box-sizing: border-box; }
svg.curve { display: block; } svg .frame { fill: #fafafa; stroke: #ccc; }
svg .zero { stroke: #999; stroke-dasharray: 3 2; }
.axis { color: #777; font-size: 10px; }
table { border-collapse: collapse; font-size: 13px; margin-top: .5em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { cursor: pointer; background: #f2f2f2; user-select: none; }
td:nth-child(-n+3) { text-align: left; }
#errors:empty { display: none; } #errors { color: #a00; }
"""

HEAD_SCRIPT = """
window.reportErrors = [];
window.addEventListener('error', function (e) {
  window.reportErrors.push('error: ' + (e.message || (e.target && e.target.tagName + ' failed to load')));
}, true);
document.addEventListener('securitypolicyviolation', function (e) { window.reportErrors.push('blocked: ' + e.blockedURI); });
"""
"""Runs first: collects script errors, failed loads and blocked loads from the start."""

SCRIPT = """
(function () {
  var table = document.getElementById('scores');
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
    th.addEventListener('click', function () {
      var ascending = th.getAttribute('data-order') !== 'asc';
      th.setAttribute('data-order', ascending ? 'asc' : 'desc');
      var rows = Array.prototype.slice.call(table.tBodies[0].rows);
      function key(row) {
        var cell = row.cells[column];
        if (!cell) { return ''; }
        var value = cell.getAttribute('data-value');
        return value === null ? cell.textContent : parseFloat(value);
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b), order = x < y ? -1 : (x > y ? 1 : 0);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { table.tBodies[0].appendChild(row); });
    });
  });
  window.addEventListener('load', function () {
    var overlays = document.querySelectorAll('img.overlay');
    var drawn = Array.prototype.filter.call(overlays, function (img) { return img.complete && img.naturalWidth > 0; });
    var external = performance.getEntriesByType('resource').filter(function (r) { return r.name.indexOf('data:') !== 0; });
    document.body.setAttribute('data-overlays', String(drawn.length));
    document.body.setAttribute('data-external', String(external.length));
    document.getElementById('errors').textContent = window.reportErrors.join('\\n');
    document.body.setAttribute('data-errors', String(window.reportErrors.length));
    document.body.setAttribute('data-ready', '1');
  });
})();
"""
