"""The HTML report rendered in a real browser: headless Chromium (Debian's ``chromium`` package; `.ci/run`
installs it) loads the page from disk, and the page's own script records on ``<body>`` what rendered."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import builders
import numpy as np
import onnx
import pytest
from builders import png
from PIL import Image
from serving import ServerThread

from onnxplain.client.cli import main
from onnxplain.client.evaluation import Curve
from onnxplain.client.report import sparkline

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium; "
                                                         ".ci/run installs it for CI)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0"]
METHODS = ("saliency", "grad_cam", "occlusion")


def chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run Chromium headless on ``page`` with a fresh profile; console messages go to stderr as ``CONSOLE`` lines."""
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
                          capture_output=True, text=True, timeout=120)


def rendered(page: Path, profile: Path) -> tuple[dict[str, str], str, list[str]]:
    """(the attributes the page's script set on <body>, the #errors text, the console lines) after load."""
    run = chromium(page, profile, "--virtual-time-budget=5000", "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", run.stdout).group(1)
    errors = re.search(r'<pre id="errors">(.*?)</pre>', run.stdout, re.S).group(1)
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    return dict(re.findall(r'(data-[a-z]+)="([^"]*)"', body)), errors, console


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """`onnxplain report` of 2 photos x 3 methods (+ one unknown method) x top-2 classes on a small CNN."""
    root = tmp_path_factory.mktemp("report")
    (root / "models" / "cnn").mkdir(parents=True)
    onnx.save(builders.small_cnn(size=16), root / "models" / "cnn" / "model.onnx")
    rng = np.random.default_rng(0)
    images = []
    for index in range(2):
        images.append(root / f"photo{index}.png")
        images[-1].write_bytes(png(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)))
    server = ServerThread(root / "models")
    try:
        code = main(["report", *map(str, images), "--server", server.address, "--methods", ",".join(METHODS) + ",nope",
                     "--top-k", "2", "-o", str(root / "report.html")])
    finally:
        server.stop()
    assert code == 1  # the unknown method failed in its cells; the others are in the report
    return root / "report.html"


@needs_chromium
def test_the_report_renders_every_overlay_with_no_error_and_no_network(report, tmp_path):
    text = report.read_text()
    assert text.count('<img class="overlay"') == 2 * len(METHODS) * 2 and text.count('class="photo"') == 2 * 2  # a row per target
    assert text.count('class="failed"') == 2 * 2 and "unknown method &#x27;nope&#x27;" in text
    assert not re.search(r"""(src|href)=["'](https?:)?//""", text)
    attributes, errors, console = rendered(report, tmp_path / "profile")
    assert attributes == {"data-ready": "1", "data-overlays": str(2 * len(METHODS) * 2), "data-external": "0",
                          "data-errors": "0"}
    assert errors == "" and console == []
    shot = tmp_path / "report.png"
    chromium(report, tmp_path / "profile2", "--window-size=1200,1600", f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (1600, 1200, 3) and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000  # photos drawn


SORT_PROBE = """<script>window.addEventListener('load', function () {
  var heads = document.querySelectorAll('#scores th'), column = -1;
  heads.forEach(function (th, i) { if (th.textContent.indexOf('deletion') === 0) { column = i; } });
  heads[column].click();
  var values = Array.prototype.map.call(document.querySelectorAll('#scores tbody tr'), function (row) {
    return row.cells[column] ? row.cells[column].getAttribute('data-value') || '' : ''; });
  document.body.setAttribute('data-sorted', values.join(' '));
});</script>"""
"""Clicks the deletion column's header and records the column's values in the order the table then has."""


@needs_chromium
def test_the_checks_see_script_errors_and_network_loads_and_the_table_sorts(report, tmp_path):
    """A copy of the page with a broken script, an image from a server and a click on a column: the errors and
    the blocked load are caught, and the rows are sorted."""
    broken = tmp_path / "broken.html"
    broken.write_text(report.read_text().replace(
        '<pre id="errors">', f'<img src="http://127.0.0.1:9/x.png"><script>missing();</script>{SORT_PROBE}'
                             '<pre id="errors">'))
    attributes, errors, console = rendered(broken, tmp_path / "profile")
    assert attributes["data-ready"] == "1" and attributes["data-external"] == "1" and attributes["data-errors"] == "3"
    assert sorted(errors.splitlines()) == ["blocked: http://127.0.0.1:9/x.png", "error: IMG failed to load",
                                           "error: Uncaught ReferenceError: missing is not defined"]
    assert len(console) >= 2
    values = [float(v) for v in attributes["data-sorted"].split()]
    assert len(values) == 2 * len(METHODS) * 2 and values == sorted(values) and values[0] < values[-1]


def test_a_sparkline_spans_its_box_and_marks_zero_when_the_curve_crosses_it():
    """x from 0 to 1 maps to 2..148 px, the highest y to the top (2 px), the lowest to the bottom (42 px)."""
    curve = Curve("spearman_abs", np.array([0.0, 0.5, 1.0]), np.array([[0.9, 0.3, -0.1]], np.float32), "layers",
                  ("a", "b", "c"))
    svg = sparkline(curve, 0, width=150, height=44)
    assert "points='2.0,2.0 75.0,26.0 148.0,42.0'" in svg and svg.count("<circle") == 3 and "class='zero'" in svg
    assert "y1='38.0'" in svg  # y = 0 sits at 2 + 0.9 / 1.0 * 40
    positive = Curve("score", np.array([0.0, 1.0]), np.array([[0.2, 0.8]], np.float32), "fraction removed")
    assert "class='zero'" not in sparkline(positive, 0) and "<circle" not in sparkline(positive, 0)
