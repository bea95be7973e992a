"""Evaluate and ListMetrics over gRPC: the stream, equality with the library, limits, deadlines,
cancellation, errors; the Python clients and the CLI's evaluate/metrics commands."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time

import builders
import grpc
import numpy as np
import onnx
import pytest
from serving import ServerThread, wait_for
from test_server import details

from onnxplain.client import Client, Progress, Result
from onnxplain.client.aio import AsyncClient
from onnxplain.client.cli import main
from onnxplain.client.evaluation import EvaluationAccepted, EvaluationDone, MetricScore
from onnxplain.explainers import Objective, OnnxClassifier, evaluate_once, list_metrics
from onnxplain.explainers.metrics import NOT_PER_REQUEST
from onnxplain.server.limits import ServerLimits

LIMIT = 5_000
LONG = {"deletion": {"steps": 1000}}  # 1000 forwards of the bundled model: minutes on 2 cores


@pytest.fixture(scope="module")
def models(tmp_path_factory, repository):
    """The small CNN (16x16, 4 classes) and the bundled model."""
    root = tmp_path_factory.mktemp("evaluation-models")
    (root / "cnn").mkdir()
    onnx.save(builders.small_cnn(size=16), root / "cnn" / "model.onnx")
    shutil.copytree(repository / "efficientnet_lite0", root / "efficientnet_lite0")
    return root


@pytest.fixture(scope="module")
def server(models):
    running = ServerThread(models, limits=ServerLimits(max_concurrent=1, max_queue=1, max_evaluations=LIMIT))
    yield running
    running.stop()


@pytest.fixture
def client(server):
    with Client(server.address, timeout=120) as c:
        yield c


def tensor(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 3, 16, 16)).astype(np.float32)


def test_the_stream_streams_progress_and_equals_the_library(server, models):
    """RISE (stochastic: the seed matters) scored by deletion and insertion: every event in order with the
    request_id, progress over the whole evaluation, and the same numbers as the library's evaluate()."""
    metrics = {"deletion": {"steps": 16, "baseline": "mean"}, "insertion": {"steps": 8}}
    with Client(server.address) as c:
        request = c.evaluate_request("cnn", tensor(), "rise", metrics, classes=[0, 2], seed=11,
                                     params={"masks": 64}, request_id="eval-7")
        responses = list(c.explanations.Evaluate(request, timeout=60))
    kinds = [r.WhichOneof("event") for r in responses]
    assert kinds[0] == "accepted" and kinds[-1] == "done" and all(r.request_id == "eval-7" for r in responses)
    assert [k for k in kinds if k not in ("progress",)] == ["accepted", "explanation", "metric", "metric", "done"]
    assert kinds.index("progress") < kinds.index("explanation") < len(kinds) - 1 - kinds[::-1].index("progress")
    accepted = responses[0].accepted
    assert [(m.metric, m.parameters["steps"]) for m in accepted.metrics] == [("deletion", "16"), ("insertion", "8")]
    assert accepted.metrics[0].parameters["baseline"] == "mean" and accepted.accepted.seed == 11
    planned = accepted.accepted.planned_evaluations
    progress = [(r.progress.done, r.progress.total) for r in responses if r.HasField("progress")]
    assert [t for _, t in progress] == [planned] * len(progress)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress) and progress[-1][0] == planned
    done = responses[-1].done
    assert done.forward_evaluations + done.backward_evaluations == planned

    classifier = OnnxClassifier.load(models / "cnn" / "model.onnx")
    objective = Objective.for_classes([0, 2], classifier.num_classes)
    explanation, results = evaluate_once(classifier, tensor()[0], "rise", objective, {"masks": 64}, metrics, seed=11)
    got = {r.metric.metric: r.metric for r in responses if r.HasField("metric")}
    heatmaps = np.frombuffer(responses[kinds.index("explanation")].explanation.heatmaps.raw_contents, np.float32)
    np.testing.assert_allclose(heatmaps.reshape(2, 16, 16), explanation.heatmaps, rtol=1e-6, atol=1e-7)
    for name, expected in results.items():
        np.testing.assert_allclose(got[name].values, expected.values, rtol=1e-6)
        curve = got[name].curves[0]
        y = np.frombuffer(curve.y.raw_contents, np.float32).reshape(list(curve.y.shape))
        np.testing.assert_allclose(y, expected.curves[0].y, rtol=1e-6)
        np.testing.assert_allclose(curve.x, expected.curves[0].x, rtol=1e-6)
        assert got[name].higher_is_better == expected.higher_is_better and curve.x_label == expected.curves[0].x_label
        assert got[name].forward_evaluations == expected.forward > 0
    other = list(Client(server.address).evaluate_stream("cnn", tensor(), "rise", ["deletion"], classes=[0], seed=12,
                                                         params={"masks": 64}))
    assert other[-2].values[0] != pytest.approx(float(got["deletion"].values[0]))  # the seed reaches the method


def test_the_client_collects_an_evaluation_and_reads_string_parameters_by_their_type(client):
    evaluation = client.evaluate("cnn", tensor(), "saliency", {"deletion": {"steps": "4", "order": "lerf"}},
                                 classes=[1], overlay=True)
    assert isinstance(evaluation.accepted, EvaluationAccepted) and isinstance(evaluation.explanation, Result)
    assert evaluation.accepted.metrics == {"deletion": {**evaluation.accepted.metrics["deletion"], "steps": "4",
                                                        "order": "lerf"}}
    score = evaluation.metrics["deletion"]
    assert score.values.shape == (1,) and score.curves[0].y.shape == (1, 5)  # steps + 1 points
    assert evaluation.explanation.targets[0].overlay_png.startswith(b"\x89PNG")
    assert evaluation.done.forward_evaluations == evaluation.explanation.forward_evaluations + score.forward_evaluations


def test_the_async_client_gives_the_same_events(server):
    async def run():
        async with AsyncClient(server.address) as c:
            return [e async for e in c.evaluate_stream("cnn", tensor(), "saliency", ["insertion"], classes=[0])]

    events = asyncio.run(run())
    assert isinstance(events[0], EvaluationAccepted) and isinstance(events[-1], EvaluationDone)
    assert [type(e) for e in events if not isinstance(e, Progress)] == [EvaluationAccepted, Result, MetricScore,
                                                                        EvaluationDone]


def test_list_metrics_describes_every_registered_metric_and_what_is_not_per_request(client):
    listed = {m.name: m for m in client.list_metrics()}
    assert sorted(listed) == sorted(spec.name for spec in list_metrics())
    for spec in list_metrics():
        info = listed[spec.name]
        assert info.higher_is_better == spec.higher_is_better and info.citation == spec.citation and info.summary
        assert [p.name for p in info.parameters] == [p.name for p in spec.params.describe()]
    steps = {p.name: p for p in listed["deletion"].parameters}["steps"]
    assert steps.type == "int" and steps.HasField("minimum") and steps.default_value == "100"
    assert client.not_per_request_metrics() == NOT_PER_REQUEST and "retrain" in NOT_PER_REQUEST["roar"]


@pytest.mark.parametrize("metrics, code, field, message", [
    (["nope"], "NOT_FOUND", None, "unknown metric 'nope'; available: deletion, "),
    (["roar"], "INVALID_ARGUMENT", "metrics", "retrain"),
    ({"deletion": {"steps": 0}}, "INVALID_ARGUMENT", "metrics.deletion.steps", "out of range"),
    ({"deletion": {"order": 3}}, "INVALID_ARGUMENT", "metrics.deletion.order", "expected str"),
    ({"deletion": {"nope": 1}}, "INVALID_ARGUMENT", "metrics.deletion.nope", "unknown parameter; allowed:"),
    ({"deletion": {"baseline": "purple"}}, "INVALID_ARGUMENT", "metrics.deletion.baseline", "choices"),
    ([], "INVALID_ARGUMENT", "metrics", "no metric requested"),
])
def test_bad_metrics_are_refused_naming_the_field(client, metrics, code, field, message):
    with pytest.raises(grpc.RpcError) as info:
        client.evaluate("cnn", tensor(), "saliency", metrics, classes=[0])
    assert info.value.code().name == code and message in info.value.details()
    assert details(info.value)[1] == ([field] if field else [])


def test_a_metric_twice_or_a_second_request_id_is_invalid(client):
    request = client.evaluate_request("cnn", tensor(), "saliency", ["deletion"], classes=[0])
    request.metrics.add(metric="deletion")
    with pytest.raises(grpc.RpcError) as info:
        list(client.explanations.Evaluate(request, timeout=30))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and details(info.value)[1] == ["metrics[1].metric"]
    request = client.evaluate_request("cnn", tensor(), "saliency", ["deletion"], classes=[0], request_id="a")
    request.explanation.request_id = "b"
    with pytest.raises(grpc.RpcError) as info:
        list(client.explanations.Evaluate(request, timeout=30))
    assert details(info.value)[1] == ["explanation.request_id"]


def test_the_limit_counts_the_whole_evaluation(server, client):
    """The explanation alone fits the per-request limit; with the metrics' passes it does not: refused up
    front (the plan), naming the limit and what planned it."""
    params = {"masks": 4500}
    assert client.explain("cnn", tensor(), "rise", classes=[0], params=params).forward_evaluations <= LIMIT
    with pytest.raises(grpc.RpcError) as info:
        client.evaluate("cnn", tensor(), "rise", {"deletion": {"steps": 256}, "insertion": {"steps": 256}},
                        classes=[0], params=params)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"at most {LIMIT}" in info.value.details() and "--max-evaluations" in info.value.details()
    assert "deletion, insertion" in info.value.details()
    assert wait_for(lambda: server.app.pool.admitted == 0, timeout=10)


def test_cancelling_during_a_metric_stops_the_work_and_frees_the_slot(server, client, coffee_png):
    stream = client.evaluate_stream("efficientnet_lite0", coffee_png, "saliency", LONG)
    assert isinstance(next(stream), EvaluationAccepted)
    assert isinstance(next(e for e in stream if isinstance(e, Result)), Result)
    assert isinstance(next(stream), Progress)  # the metric is under way
    assert server.app.pool.admitted == 1
    started = time.monotonic()
    stream.close()  # cancels the RPC
    assert wait_for(lambda: server.app.pool.admitted == 0, timeout=10)
    assert time.monotonic() - started < 10
    assert client.evaluate("cnn", tensor(), "saliency", ["deletion"], classes=[0]).done.forward_evaluations > 0


def test_the_deadline_stops_an_evaluation(server, coffee_png):
    with Client(server.address, timeout=2.0) as c:
        with pytest.raises(grpc.RpcError) as info:
            c.evaluate("efficientnet_lite0", coffee_png, "saliency", LONG)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert wait_for(lambda: server.app.pool.admitted == 0, timeout=10)


def test_cli_evaluate_json_is_one_object_keyed_by_metric(server, tmp_path, capsys, coffee_png):
    image = tmp_path / "coffee.png"
    image.write_bytes(coffee_png)
    code = main(["evaluate", str(image), "--server", server.address, "--model", "efficientnet_lite0",
                 "--method", "saliency", "--metric", "deletion", "--metric", "insertion",
                 "--metric-param", "deletion.steps=4", "--metric-param", "insertion.steps=4", "--json", "-q"])
    out = capsys.readouterr()
    assert code == 0
    summary = json.loads(out.out)
    assert list(summary) == ["deletion", "insertion"]
    assert summary["deletion"]["targets"] == ["espresso"] and len(summary["deletion"]["curves"]["score"]["x"]) == 5
    assert not summary["deletion"]["higher_is_better"] and summary["insertion"]["higher_is_better"]
    assert "evaluations planned" in out.err


def test_cli_metrics_lists_them_and_why_roar_is_not_per_request(server, capsys):
    assert main(["metrics", "--server", server.address]) == 0
    out = capsys.readouterr().out
    assert "deletion" in out and "lower is better" in out and "steps=100 (int" in out
    assert "roar" in out and "not per request" in out and "retrain" in out


def test_list_and_tensor_parameters_travel_typed(client):
    """The energy pointing game on the left half, given as a box (a list) and as a mask (a tensor), and as the
    whole image: the same region gives the same value, the whole image all the energy."""
    left = np.zeros((16, 16), np.float32)
    left[:, :8] = 1
    by_box, by_mask, whole = (
        client.evaluate("cnn", tensor(), "saliency", {"energy_pointing_game": params}, classes=[0, 1]).metrics[
            "energy_pointing_game"].values
        for params in ({"box": "0,0,8,16"}, {"mask": left}, {"mask": np.ones((16, 16), np.float32)}))
    np.testing.assert_allclose(by_box, by_mask, rtol=1e-6)
    assert 0 < by_box.min() and by_box.max() < 1
    np.testing.assert_allclose(whole, 1.0, rtol=1e-6)


def test_an_evaluation_is_counted_and_logged_under_its_model_and_method(models, caplog):
    """Prometheus counts the RPC and every pass of the evaluation (the metrics' too) under the explanation's
    model and method; the completion log line names them and the request_id."""
    from test_observability import sample, scrape

    running = ServerThread(models, metrics_address=("127.0.0.1", 0))
    try:
        with caplog.at_level(logging.INFO, logger="onnxplain.server.requests"):
            with Client(running.address, timeout=60) as c:
                evaluation = c.evaluate("cnn", tensor(), "saliency", ["deletion"], classes=[0], request_id="counted")
            rpc = "onnxplain.v1.ExplanationService/Evaluate"
            assert wait_for(lambda: sample(scrape(running.app.metrics_port), "onnxplain_requests_total", rpc=rpc,
                                           code="OK") == 1, timeout=30)
            samples = scrape(running.app.metrics_port)
    finally:
        running.stop()
    assert sample(samples, "onnxplain_model_evaluations_total", model="cnn", method="saliency",
                  kind="forward") == evaluation.done.forward_evaluations > evaluation.explanation.forward_evaluations
    line = next(r for r in caplog.records if r.name == "onnxplain.server.requests" and r.fields["rpc"] == "Evaluate")
    assert (line.fields["request_id"], line.fields["model"], line.fields["method"], line.fields["status"]) == (
        "counted", "cnn", "saliency", "OK")


def test_a_sanity_check_s_curves_travel_with_their_layer_names(client):
    """Cascading randomisation on the small CNN: one curve per similarity measure, x ticks naming the layers
    (registered here when the metrics package does not import it yet)."""
    import onnxplain.explainers.metrics.randomisation  # noqa: F401

    evaluation = client.evaluate("cnn", tensor(), "saliency", {"sanity_cascading": {"steps": "2"}}, classes=[0, 1])
    score = evaluation.metrics["sanity_cascading"]
    assert {c.name for c in score.curves} == {"spearman", "spearman_abs", "ssim", "hog"} and not score.higher_is_better
    curve = next(c for c in score.curves if c.name == "spearman_abs")
    assert curve.y.shape == (2, 2) and len(curve.x_ticks) == 2 and all(curve.x_ticks) and curve.y_label
    np.testing.assert_allclose(score.values, curve.y[:, -1], rtol=1e-6)  # the value: ρ once the model is random
    assert score.forward_evaluations == 2 * evaluation.explanation.forward_evaluations  # two re-explanations


def test_a_response_without_a_known_event_is_an_error_not_the_end_of_the_stream():
    from onnxplain.client.evaluation import parse_evaluate_event
    from onnxplain.v1 import explanation_service_pb2 as ex_pb2

    with pytest.raises(ValueError, match="unknown Evaluate event None"):
        parse_evaluate_event(ex_pb2.EvaluateResponse(request_id="r"), None)
