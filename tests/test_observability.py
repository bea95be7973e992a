"""What operators see: Prometheus metrics on the opt-in HTTP port, one structured completion line per
request (control characters cannot forge lines), the log flags and their environment variables, and
the connection-age option reaching gRPC."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from serving import ServerThread, wait_for

from onnxplain.client import Accepted, Client
from onnxplain.server import app as server_app
from onnxplain.server.cli import build_parser
from onnxplain.server.limits import ServerLimits, grpc_options, limits_from_args
from onnxplain.server.logs import JsonFormatter, TextFormatter, configure_logging

EXPLAIN = "onnxplain.v1.ExplanationService/Explain"
PREDICT = "onnxplain.v1.ModelService/Predict"
FORGED = 'abc\n{"forged": true}\r\u2028INFO onnxplain.server.requests: forged'
X = np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32)  # the linear model's input


@pytest.fixture(scope="module")
def linear_only(repository, tmp_path_factory):
    """A repository with just the small linear model: servers on it start in well under a second."""
    root = tmp_path_factory.mktemp("linear_only")
    shutil.copytree(repository / "linear", root / "linear")
    return root


@pytest.fixture
def served(linear_only):
    running = ServerThread(linear_only, metrics_address=("127.0.0.1", 0))
    yield running
    running.stop()


class Lines:
    """Log records of the ``onnxplain`` loggers, formatted as the server would write them, until
    ``completions`` requests have logged their end (a client may see its final status a moment
    before the server writes the line)."""

    def __init__(self, formatter: logging.Formatter, completions: int):
        self.completions = completions
        self.buffer = io.StringIO()
        self.handler = logging.StreamHandler(self.buffer)
        self.handler.setFormatter(formatter)
        self.logger = logging.getLogger("onnxplain")
        self.level = self.logger.level

    def __enter__(self) -> Lines:
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc) -> None:
        try:
            wait_for(lambda: sum(map(is_completion, self.lines())) >= self.completions, timeout=30)
        finally:
            self.logger.removeHandler(self.handler)
            self.logger.setLevel(self.level)

    def lines(self) -> list[str]:
        return self.buffer.getvalue().split("\n")[:-1]  # split on "\n" only: that is what a log reader does


def is_completion(line: str) -> bool:
    """Whether a JSON or text line was written by the completion logger (not merely mentions it)."""
    if line.startswith("{"):
        return json.loads(line)["logger"] == "onnxplain.server.requests"
    return line.split(": ", 1)[0].endswith(" onnxplain.server.requests")


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_metrics_count_codes_latency_and_the_evaluations_results_report(served):
    with Client(served.address, timeout=60) as client:
        assert client.predict("linear", X, top_k=1)[0].label in {"a", "b", "c", "d"}
        result = client.explain("linear", X, "occlusion", classes=[2], params={"window": 8, "stride": 8})
        topk = client.explain("linear", X, "occlusion", top_k=1, params={"window": 16, "stride": 16})
        with pytest.raises(grpc.RpcError) as missing:
            client.predict("no_such_model", X)
        with pytest.raises(grpc.RpcError) as bad_method:
            client.explain("linear", X, "no_such_method")
    assert missing.value.code() == bad_method.value.code() == grpc.StatusCode.NOT_FOUND
    port = served.app.metrics_port
    assert wait_for(lambda: sample(scrape(port), "onnxplain_request_seconds_count", rpc=EXPLAIN) == 3, timeout=30)
    samples = scrape(port)

    assert sample(samples, "onnxplain_requests_total", rpc=PREDICT, code="OK") == 1
    assert sample(samples, "onnxplain_requests_total", rpc=PREDICT, code="NOT_FOUND") == 1
    assert sample(samples, "onnxplain_requests_total", rpc=EXPLAIN, code="OK") == 2
    assert sample(samples, "onnxplain_requests_total", rpc=EXPLAIN, code="NOT_FOUND") == 1
    assert sample(samples, "onnxplain_request_seconds_count", rpc=EXPLAIN) == 3
    assert sample(samples, "onnxplain_request_seconds_bucket", rpc=PREDICT, le="600.0") == 2
    # 17 = 4·4 windows + the unoccluded image; 5 = the forward finding the top-1 class + 2·2 + 1
    assert result.forward_evaluations == 17 and topk.forward_evaluations == 6
    assert sample(samples, "onnxplain_model_evaluations_total", model="linear", method="occlusion",
                  kind="forward") == result.forward_evaluations + topk.forward_evaluations
    assert sample(samples, "onnxplain_model_evaluations_total", model="linear", method="Predict", kind="forward") == 1
    assert sample(samples, "onnxplain_model_evaluations_total", model="linear", method="occlusion",
                  kind="backward") is None  # occlusion never runs a backward pass
    assert sample(samples, "onnxplain_queue_depth") == 0 and sample(samples, "onnxplain_running") == 0
    cache = served.app.repository.get("linear").cache_bytes
    assert cache > 0 and sample(samples, "onnxplain_session_cache_bytes", model="linear") == cache  # the occlusion prefix


def test_cancelled_stream_is_counted_as_cancelled_and_frees_its_worker(repository, coffee_png):
    running = ServerThread(repository, metrics_address=("127.0.0.1", 0), limits=ServerLimits(max_concurrent=1))
    try:
        with Client(running.address, timeout=120) as client:
            stream = client.explain_stream("efficientnet_lite0", coffee_png, "occlusion", params={"window": 4, "stride": 2})
            assert isinstance(next(stream), Accepted)
            assert running.app.pool.running == 1
            stream.close()  # cancels the RPC
        port = running.app.metrics_port
        assert wait_for(lambda: sample(scrape(port), "onnxplain_requests_total", rpc=EXPLAIN, code="CANCELLED") == 1, timeout=30)
        assert wait_for(lambda: running.app.pool.admitted == 0, timeout=30)
        assert sample(scrape(port), "onnxplain_requests_total", rpc=EXPLAIN, code="OK") is None
    finally:
        running.stop()


def test_refused_token_is_counted_and_health_is_counted_but_not_logged(linear_only):
    running = ServerThread(linear_only, metrics_address=("127.0.0.1", 0), token="s3cret")
    try:
        with Lines(JsonFormatter(), completions=1) as log:
            with Client(running.address) as client, pytest.raises(grpc.RpcError):
                client.predict("linear", X)
            with grpc.insecure_channel(running.address) as channel:
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        samples = scrape(running.app.metrics_port)
        assert sample(samples, "onnxplain_requests_total", rpc=PREDICT, code="UNAUTHENTICATED") == 1
        assert sample(samples, "onnxplain_requests_total", rpc="grpc.health.v1.Health/Check", code="OK") == 1
        assert [json.loads(line)["status"] for line in log.lines()] == ["UNAUTHENTICATED"]
    finally:
        running.stop()


def test_metrics_endpoint_is_off_unless_asked_for(linear_only):
    running = ServerThread(linear_only)
    try:
        assert running.app.metrics_port is None
    finally:
        running.stop()


def completion_lines(parsed: list[dict]) -> list[dict]:
    return [line for line in parsed if line["logger"] == "onnxplain.server.requests"]


def test_json_logs_one_valid_completion_line_per_request_and_no_forged_lines(served):
    with Lines(JsonFormatter(), completions=4) as log, Client(served.address, timeout=60) as client:
        with pytest.raises(grpc.RpcError) as forged:  # the server refuses ids that are not printable …
            client.explain("linear", X, "occlusion", classes=[1], request_id=FORGED)
        result = client.explain("linear", X, "occlusion", classes=[1], params={"window": 16, "stride": 16},
                                request_id="r-1")
        client.predict("linear", X)
        with pytest.raises(grpc.RpcError):
            client.explain("nope", X, "occlusion", request_id="r-2")
    assert forged.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    parsed = [json.loads(line) for line in log.lines()]  # every line is one JSON object
    assert all({"ts", "level", "logger", "msg"} <= line.keys() for line in parsed)
    assert not any("forged" in line for line in parsed)
    refused, explained, predicted, failed = completion_lines(parsed)
    assert refused["request_id"] == FORGED and refused["status"] == "INVALID_ARGUMENT"  # … and logs it on one line
    assert (explained["rpc"], explained["model"], explained["method"], explained["status"]) == (
        "Explain", "linear", "occlusion", "OK")
    assert explained["forward_evaluations"] == result.forward_evaluations == 5
    assert explained["backward_evaluations"] == 0 and explained["latency_ms"] > 0
    assert (predicted["rpc"], predicted["model"], predicted["status"], predicted["forward_evaluations"]) == (
        "Predict", "linear", "OK", 1)
    assert (failed["request_id"], failed["status"], failed["forward_evaluations"]) == ("r-2", "NOT_FOUND", 0)


def test_text_logs_escape_control_characters_from_clients(served):
    with Lines(TextFormatter(), completions=1) as log, Client(served.address, timeout=60) as client:
        with pytest.raises(grpc.RpcError):  # refused (not printable), and logged on one line
            client.explain("linear", X, "occlusion", classes=[1], request_id=FORGED)
    lines = log.lines()
    completions = [line for line in lines if is_completion(line)]
    assert len(completions) == 1 and not any("forged" in line.split(": ", 1)[0] for line in lines)
    assert r'request_id="abc\n{\"forged\": true}\r\u2028INFO onnxplain.server.requests: forged"' in completions[0]
    assert " status=INVALID_ARGUMENT " in completions[0]


def test_a_record_never_spans_lines_in_either_format():
    record = logging.LogRecord("onnxplain.server", logging.INFO, __file__, 1, "got %s", (FORGED,), None)
    record.fields = {"request_id": FORGED, "empty": "", "n": 3}
    for formatter in (JsonFormatter(), TextFormatter()):
        assert len(formatter.format(record).splitlines()) == 1  # splitlines: \n, \r, \u2028, \x1c, \x85, …
    text = TextFormatter().format(record)
    assert text.endswith(' empty="" n=3') and "got abc\\n" in text
    assert json.loads(JsonFormatter().format(record))["msg"] == f"got {FORGED}"


def test_long_client_values_are_cut_in_the_log(served):
    with Lines(JsonFormatter(), completions=2) as log, Client(served.address) as client:
        client.predict("linear", X)
        with pytest.raises(grpc.RpcError):
            client.explain("linear", X, "nope", request_id="x" * 10_000)
    completion = completion_lines([json.loads(line) for line in log.lines()])[-1]
    assert completion["request_id"] == "x" * 200 + "…"


@pytest.mark.parametrize(("environ", "argv", "expected"), [
    ({}, [], ("INFO", "text")),
    ({"ONNXPLAIN_LOG_LEVEL": "debug", "ONNXPLAIN_LOG_FORMAT": "JSON"}, [], ("DEBUG", "json")),
    ({"ONNXPLAIN_LOG_LEVEL": "debug", "ONNXPLAIN_LOG_FORMAT": "json"}, ["--log-level", "warning", "--log-format", "text"],
     ("WARNING", "text")),
    ({"ONNXPLAIN_LOG_FORMAT": "json"}, ["--log-level", "ERROR"], ("ERROR", "json")),
])
def test_log_flags_win_over_environment(monkeypatch, environ, argv, expected):
    for name in ("ONNXPLAIN_LOG_LEVEL", "ONNXPLAIN_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    args = build_parser().parse_args(argv)
    assert (args.log_level, args.log_format) == expected


@pytest.mark.parametrize(("environ", "argv", "named"), [
    ({"ONNXPLAIN_LOG_LEVEL": "LOUD"}, [], "$ONNXPLAIN_LOG_LEVEL"),
    ({}, ["--log-format", "xml"], "$ONNXPLAIN_LOG_FORMAT"),
])
def test_bad_log_settings_are_usage_errors_naming_flag_and_variable(monkeypatch, capsys, environ, argv, named):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    assert named in capsys.readouterr().err


def test_configure_logging_writes_json_at_the_level_given():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        configure_logging("WARNING", "json", stream=stream)
        configure_logging("WARNING", "json", stream=stream)  # twice: still one handler, one line per record
        logging.getLogger("onnxplain.test").info("hidden")
        logging.getLogger("onnxplain.test").warning("shown", extra={"fields": {"model": "m"}})
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line) | {"ts": None} == {"ts": None, "level": "WARNING", "logger": "onnxplain.test",
                                                "msg": "shown", "model": "m"}


def test_connection_age_flags_become_grpc_options():
    options = dict(grpc_options(limits_from_args(build_parser().parse_args(
        ["--max-connection-age", "90", "--max-connection-age-grace", "2.5"]))))
    assert options["grpc.max_connection_age_ms"] == 90_000 and options["grpc.max_connection_age_grace_ms"] == 2_500
    defaults = dict(grpc_options(ServerLimits()))
    assert (defaults["grpc.max_connection_age_ms"], defaults["grpc.max_connection_age_grace_ms"]) == (1_800_000, 60_000)
    assert "grpc.max_connection_age_ms" not in dict(grpc_options(ServerLimits(max_connection_age=0)))


def test_connection_age_reaches_the_server(monkeypatch, linear_only):
    seen = []
    real = grpc.aio.server

    def spy(*args, **kwargs):
        seen.append(dict(kwargs["options"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(server_app.grpc.aio, "server", spy)
    running = ServerThread(linear_only, limits=ServerLimits(max_connection_age=42, max_connection_age_grace=3))
    running.stop()
    assert seen[0]["grpc.max_connection_age_ms"] == 42_000 and seen[0]["grpc.max_connection_age_grace_ms"] == 3_000


def test_serve_command_exposes_metrics_and_logs_json_from_the_environment(linear_only):
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    port, metrics_port = ports
    process = subprocess.Popen(
        [sys.executable, "-m", "onnxplain.server.cli", "--models", str(linear_only), "--host", "127.0.0.1",
         "--port", str(port), "--metrics-port", str(metrics_port), "--grace", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "ONNXPLAIN_LOG_FORMAT": "json"})
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)

            def serving() -> bool:
                try:
                    return health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1  # SERVING
                except grpc.RpcError:
                    return process.poll() is not None  # stop waiting for a server that died

            assert wait_for(serving, timeout=60) and process.poll() is None
        with Client(f"127.0.0.1:{port}") as client:
            client.predict("linear", X)
        assert wait_for(lambda: sample(scrape(metrics_port), "onnxplain_requests_total", rpc=PREDICT, code="OK") == 1,
                        timeout=30)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0  # drained and stopped cleanly, metrics endpoint included
    logged = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert [line["rpc"] for line in completion_lines(logged)] == ["Predict"]
    assert any(line["msg"].startswith("metrics at http://127.0.0.1:") for line in logged)
