"""CEM on linear models, whose pertinent negatives and positives have closed forms, and its parts.

For logits f = W x + b and a target t against the other class j, the margin along a change is
linear: f_t − f_j = m + d·δ with d = w_t − w_j. With c large enough for the hinge to be met, the
elastic-net problem min β‖δ‖₁ + ‖δ‖₂² s.t. σ(m + d·δ) ≤ −κ, lower ≤ δ ≤ upper has the KKT
solution δ_i(λ) = clip(−σ sign(d_i) max(0, λ|d_i| − β) / 2, lower_i, upper_i) (each coordinate's
minimiser of λσ d_i δ_i + β|δ_i| + δ_i², clipped: the problem is separable), with the one λ ≥ 0
at which the constraint is tight. The tests solve for λ by bisection and compare.
"""

from __future__ import annotations

import builders
import numpy as np
import pytest

from onnxplain.explainers import Objective, OnnxClassifier, Planned, explain, explain_once
from onnxplain.explainers.autodiff import GradientError
from onnxplain.explainers.errors import InvalidArgument
from onnxplain.explainers.perturb.fista import Fista, shrink
from onnxplain.explainers.perturb.pertinent import NO_UPPER_BOUND, ConstantSearch, Coordinates, Hinge, margin_scores

BETA, KAPPA = 0.5, 0.1


def linear_problem(seed: int, size: int = 6, *, margin: float | None = None, bias: float = 0.0, block: int = 1):
    """A 2-class linear model on one channel, with a third of the weight differences tiny (those
    coordinates must stay 0: sparsity), x mid-range in [0, 255] (constant on ``block``² squares)
    and class 0 ahead at x: by ``margin`` (the bias set to make it so), or by d·x + ``bias`` > 0."""
    rng = np.random.default_rng(seed)
    w = np.zeros((2, 1, size, size), np.float32)
    w[0] = rng.standard_normal((1, size, size)) * 0.1
    w[0].ravel()[rng.permutation(size * size)[: size * size // 3]] *= 1e-3
    x = rng.uniform(60, 200, (1, size // block, size // block)).astype(np.float32)
    x = np.kron(x, np.ones((block, block), np.float32))
    w[0] *= np.sign(w[0].ravel() @ x.ravel())
    if margin is not None:
        bias = margin - float(w[0].ravel() @ x.ravel())
    return OnnxClassifier(builders.linear(w, bias=np.array([bias, 0.0], np.float32))), w, x


def kkt_solution(d, goal, sigma, lower, upper, beta=BETA):
    """δ(λ) of the module doc, λ bisected so that σ d·δ(λ) = goal (< 0)."""
    def delta(lam):
        return np.clip(-sigma * np.sign(d) * np.maximum(0.0, lam * np.abs(d) - beta) / 2, lower, upper)

    low, high = 0.0, 1.0
    while sigma * d @ delta(high) > goal:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if sigma * d @ delta(mid) > goal else (low, mid)
    return delta(high), high


@pytest.mark.parametrize("direction", ["any", "add"])
def test_the_pertinent_negative_of_a_linear_model_is_the_kkt_point(direction):
    m = 20.0
    classifier, w, x = linear_problem(1, margin=m)
    d = (w[0] - w[1]).ravel().astype(np.float64)
    result = explain_once(classifier, x, "cem", Objective.for_classes([0], 2),
                          {"mode": "pn", "pn_direction": direction, "beta": BETA, "kappa": KAPPA, "iterations": 150})
    delta = (result.tensors["pertinent_negative"][0] - x).ravel()
    lower = np.zeros_like(delta) if direction == "add" else -x.ravel()
    expected, lam = kkt_solution(d, -(m + KAPPA), 1.0, lower, 255.0 - x.ravel())
    assert result.extras["pn_found[0]"] == 1 and result.extras["pn_class[0]"] == 1
    assert -KAPPA - 0.02 < result.extras["pn_margin[0]"] <= -KAPPA
    np.testing.assert_allclose(delta, expected, atol=0.01 * np.abs(expected).max())
    assert np.all(delta[np.abs(d) * lam <= 0.9 * BETA] == 0)  # elastic-net sparsity: exactly zero, not small
    if direction == "add":
        assert np.all(delta >= 0) and np.all(delta[d > 0] == 0)  # only what lowers the margin is added
    np.testing.assert_allclose(result.heatmaps[0], delta.reshape(x.shape[1:]), atol=1e-4)  # x + δ − x in float32
    np.testing.assert_allclose(result.extras["pn_l1[0]"], np.abs(delta).sum(), rtol=1e-4)
    np.testing.assert_allclose(result.extras["pn_l2[0]"], np.linalg.norm(delta), rtol=1e-4)


def test_the_pertinent_positive_of_a_linear_model_keeps_only_evidence_for_the_class():
    classifier, w, x = linear_problem(2, bias=-5.0)  # on black, class 1 wins by 5
    d = (w[0] - w[1]).ravel().astype(np.float64)
    assert d @ x.ravel() - 5.0 > 5  # class 0 wins at x
    result = explain_once(classifier, x, "cem", Objective.for_classes([0], 2),
                          {"mode": "pp", "beta": BETA, "kappa": KAPPA, "iterations": 150})
    kept = result.tensors["pertinent_positive"][0].ravel()  # the black image is 0 here: b + p = p
    expected, _ = kkt_solution(d, -(-1.0 * -5.0 + KAPPA), -1.0, 0.0, x.ravel())  # goal −(σ m + κ)
    assert result.extras["pp_found[0]"] == 1 and result.extras["pp_class[0]"] == 0
    assert KAPPA <= result.extras["pp_margin[0]"] < KAPPA + 0.02
    np.testing.assert_allclose(kept, expected, atol=0.01 * expected.max())
    assert np.all(kept[d <= 0] == 0) and np.all(kept <= x.ravel())  # a part of x, of evidence for class 0 only
    np.testing.assert_allclose(result.tensors["pertinent_positive_map"][0], kept.reshape(x.shape[1:]), rtol=1e-6)


def test_a_contrast_target_makes_its_class_beat_the_explained_one():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((3, 1, 5, 5)).astype(np.float32) * 0.1
    x = rng.uniform(60, 200, (1, 5, 5)).astype(np.float32)
    classifier = OnnxClassifier(builders.linear(w))
    order = np.argsort(-(w.reshape(3, -1) @ x.ravel()))
    top, last = int(order[0]), int(order[2])
    objective = Objective.for_classes([top], 3, contrast=last)
    result = explain_once(classifier, x, "cem", objective, {"mode": "pn", "pn_direction": "any", "iterations": 200})
    pn = result.tensors["pertinent_negative"][0].ravel()
    logits = w.reshape(3, -1) @ pn
    assert logits[top] - logits[last] <= -KAPPA + 1e-3 and result.extras["pn_found[0]"] == 1
    np.testing.assert_allclose(result.extras["pn_margin[0]"], logits[top] - logits[last], atol=1e-3)
    # the contrast, not the runner-up, is the other class: the change is along w_top − w_last
    delta = pn - x.ravel()
    along = (w[top] - w[last]).ravel()
    assert delta @ along / (np.linalg.norm(delta) * np.linalg.norm(along)) < -0.9


def test_finite_differences_over_superpixels_flip_the_class_with_whole_superpixels():
    classifier, w, x = linear_problem(5, size=8, margin=20.0, block=2)  # 2×2 blocks: SLIC has edges to follow
    objective = Objective.for_classes([0], 2)
    params = {"gradient": "finite_differences", "segments": 8, "iterations": 60, "search_steps": 4, "beta": BETA}
    events = list(explain(classifier, x, "cem", objective, params))
    planned, result = events[0], events[-1]
    assert isinstance(planned, Planned) and planned.backward == 0 and result.backward == 0
    segments = result.extras["segments"]
    assert planned.forward == result.forward == 2 + 4 * 60 * 2 * (segments + 1)
    assert result.extras["exact_gradient"] == 0
    assert result.extras["pn_found[0]"] == 1 and result.extras["pn_class[0]"] == 1
    assert result.extras["pp_found[0]"] == 1 and result.extras["pp_class[0]"] == 0
    pn, pp = result.tensors["pertinent_negative"][0], result.tensors["pertinent_positive"][0]
    logits = classifier.predict(np.stack([pn, pp]))
    assert logits[0, 0] - logits[0, 1] <= -KAPPA and logits[1, 0] - logits[1, 1] >= KAPPA
    from onnxplain.explainers.perturb.masks.superpixels import slic_segments

    labels = slic_segments(x, 8, 10.0)
    fraction = (pn - x) / (255.0 - x)  # each superpixel moves a common fraction of the way to white
    for s in range(labels.max() + 1):
        values = fraction[0][labels == s]
        np.testing.assert_allclose(values, values[0], atol=1e-5)
    again = explain_once(classifier, x, "cem", objective, params)
    np.testing.assert_array_equal(again.tensors["pertinent_negative"], pn[None])


def test_objectives_and_parameters_cem_cannot_serve_are_refused_by_name():
    classifier, _, x = linear_problem(1, margin=20.0)
    weights = np.array([[1.0, 0.5]], np.float32)
    with pytest.raises(InvalidArgument) as info:
        explain_once(classifier, x, "cem", Objective(weights, (0,)))
    assert info.value.field == "target.class_weights"
    with pytest.raises(InvalidArgument) as info:
        explain_once(classifier, x, "cem", Objective.for_classes([0], 2, space="probability"))
    assert info.value.field == "target.score_space"
    with pytest.raises(InvalidArgument) as info:  # a loss cem does not optimise is refused, not silently replaced
        explain_once(classifier, x, "cem", Objective.for_classes([0], 2, contrast=1, loss="cross_entropy"))
    assert info.value.field == "target.contrast_loss"
    with pytest.raises(InvalidArgument) as info:
        explain_once(classifier, x, "cem", Objective.for_classes([0], 2),
                     {"gradient": "finite_differences", "pn_direction": "any"})
    assert info.value.field == "params.pn_direction"
    with pytest.raises(InvalidArgument) as info:
        explain_once(classifier, x, "cem", Objective.for_classes([0], 2), {"mode": "pertinent"})
    assert info.value.field == "params.mode"


def test_exact_gradients_on_a_model_without_them_is_an_error_and_auto_falls_back():
    classifier = OnnxClassifier(builders.quadrant(size=8))
    x = np.random.default_rng(0).uniform(0, 255, (3, 8, 8)).astype(np.float32)
    objective = Objective.for_classes([1], 2)
    classifier.compiled = _refusing(classifier.compiled)  # as a remote model refuses its gradient graph
    with pytest.raises(GradientError):
        explain_once(classifier, x, "cem", objective, {"gradient": "exact", "iterations": 2, "search_steps": 1})
    result = explain_once(classifier, x, "cem", objective, {"iterations": 2, "search_steps": 1, "segments": 4})
    assert result.extras["exact_gradient"] == 0 and result.backward == 0


def _refusing(compiled):
    """``compiled`` that raises GradientError for gradient variants."""
    def refuse(variant):
        if "gradient" in variant.kind:
            raise GradientError("no gradient rule for this test")
        return compiled(variant)
    return refuse


def test_fista_solves_a_box_constrained_elastic_net():
    """min ½‖u − a‖² + β‖u‖₁ over [−1, 2]: the answer is clip(shrink(a, β), −1, 2)."""
    a = np.array([[3.0, 0.2, -0.3, -5.0, 1.0]])
    fista = Fista(np.full_like(a, -1.0), np.full_like(a, 2.0), beta=0.5, learning_rate=0.5, iterations=400)
    for _ in range(400):
        fista.step(fista.point - a)
    np.testing.assert_allclose(fista.solution, np.clip(shrink(a, 0.5), -1, 2), atol=1e-3)
    assert fista.solution[0, 1] == 0 and fista.solution[0, 2] == 0


def test_hinge_margins_follow_the_runner_up_or_the_contrast_and_log_probabilities_keep_them():
    logits = np.array([[3.0, 1.0, 2.5], [0.0, 4.0, 1.0]])
    hinge = Hinge(np.array([0, 0]), np.array([-1, 1]), np.array([1.0, -1.0]), 0.1)
    np.testing.assert_array_equal(hinge.runner_up(logits), [2, 1])
    np.testing.assert_allclose(hinge.margin(logits), [0.5, -4.0])
    np.testing.assert_allclose(hinge.loss(logits), [0.6, 4.1])
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(hinge.margin(margin_scores(probabilities, "Softmax")), [0.5, -4.0], atol=1e-12)
    np.testing.assert_array_equal(hinge.seeds(np.array([2, 1]), 3), [[1, 0, -1], [-1, 1, 0]])


def test_superpixel_coordinates_compute_the_elastic_net_of_the_pixels_they_move():
    rng = np.random.default_rng(0)
    segments = np.repeat(np.arange(4), 4).reshape(4, 4)
    direction = rng.uniform(-1, 1, (1, 2, 4, 4)).astype(np.float32)
    direction[..., 0, :] = 0  # superpixel 0 cannot move: pinned
    space = Coordinates.superpixels(np.zeros((1, 2, 4, 4), np.float32), direction, segments)
    u = np.array([[0.0, 0.3, 0.7, 1.0]])
    delta = space.deltas(u, np.array([0]))
    cost, l1, l2 = space.elastic_net(u, 0.2)
    np.testing.assert_allclose([l1[0], l2[0]], [np.abs(delta).sum(), np.linalg.norm(delta)], rtol=1e-5)
    np.testing.assert_allclose(cost[0], 0.2 * np.abs(delta).sum() + np.square(delta).sum(), rtol=1e-5)
    assert space.upper[0, 0] == 0 and np.all(space.upper[0, 1:] == 1)


@pytest.fixture(scope="module")
def client(repository):
    from serving import ServerThread

    from onnxplain.client import Client

    server = ServerThread(repository)
    with Client(server.address, timeout=120) as connected:
        yield connected
    server.stop()


def test_tensors_travel_over_the_wire(client):
    weights = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)  # as in conftest
    x = np.random.default_rng(2).uniform(0, 255, (1, 3, 32, 32)).astype(np.float32)
    params = {"iterations": 5, "search_steps": 1}
    result = client.explain("linear", x, "cem", classes=[1], params=params)
    local = explain_once(OnnxClassifier(builders.linear(weights)), x[0], "cem", Objective.for_classes([1], 4), params)
    assert set(result.tensors) == set(local.tensors) == {
        "pertinent_negative", "pertinent_negative_map", "pertinent_positive", "pertinent_positive_map"}
    for name, values in local.tensors.items():
        np.testing.assert_allclose(result.tensors[name], values, rtol=1e-6)
    assert result.extras == pytest.approx(local.extras)


# ---------------------------------------------------------------- the digits fixtures (tests/fixtures/digits)
DIGITS_FAST = {"iterations": 50, "search_steps": 3}


def digits_case(index: int):
    import digits

    classifier = digits.classifier()
    x = digits.held_out()[0][index]
    return classifier, x, int(classifier.predict(x[None])[0].argmax())


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_on_digits_the_pertinent_negative_flips_the_class_and_the_positive_keeps_it(index):
    classifier, x, t = digits_case(index)
    result = explain_once(classifier, x, "cem", Objective.for_classes([t], 10), DIGITS_FAST)
    pn, pp = result.tensors["pertinent_negative"][0], result.tensors["pertinent_positive"][0]
    logits = classifier.predict(np.stack([pn, pp]))
    others = np.delete(logits, t, axis=1).max(axis=1)
    assert logits[0].argmax() == result.extras["pn_class[0]"] != t and logits[0, t] - others[0] <= -KAPPA + 1e-4
    assert logits[1].argmax() == result.extras["pp_class[0]"] == t and logits[1, t] - others[1] >= KAPPA - 1e-4
    delta = pn - x
    assert np.all(delta >= 0) and np.all(pn <= 1.0 + 1e-6)  # added, within the photo range [0, 1]
    assert np.count_nonzero(delta) < delta.size / 2  # sparse: the elastic net leaves most pixels alone
    assert np.all(pp >= 0) and np.all(pp <= x + 1e-6) and pp.sum() < x.sum()  # a strict part of the digit


def test_on_digits_finite_differences_reach_the_class_the_gradients_reach():
    """The first four held-out digits (7, 6, 3, 7): the pertinent negatives' classes agree on three (on
    the 6, the gradient finds a 1 and the superpixels an 8)."""
    agree = 0
    for index in range(4):
        classifier, x, t = digits_case(index)
        classes = [explain_once(classifier, x, "cem", Objective.for_classes([t], 10),
                                {**DIGITS_FAST, "mode": "pn", "gradient": gradient, "segments": 16}
                                ).extras["pn_class[0]"] for gradient in ("exact", "finite_differences")]
        assert t not in classes
        agree += classes[0] == classes[1]
    assert agree >= 3


@pytest.mark.parametrize("gradient", ["exact", "finite_differences"])
def test_the_autoencoder_term_makes_pertinent_positives_look_like_digits(gradient):
    import digits

    classifier, x, t = digits_case(0)
    params = {**DIGITS_FAST, "mode": "pp", "gradient": gradient, "segments": 16}
    plain = explain_once(classifier, x, "cem", Objective.for_classes([t], 10), params)
    events = list(explain(classifier, x, "cem", Objective.for_classes([t], 10),
                          {**params, "autoencoder": "digits_autoencoder", "gamma": 100.0},
                          companions=digits.companions()))
    planned, guided = events[0], events[-1]
    assert planned.total == guided.forward + guided.backward  # the autoencoder's passes are planned and counted
    autoencoder = digits.companion("digits_autoencoder").plain_session
    reconstructed = [autoencoder.run(None, {autoencoder.get_inputs()[0].name: r.tensors["pertinent_positive"]})[0]
                     for r in (plain, guided)]
    errors = [float(np.square(r.tensors["pertinent_positive"] - ae).sum()) for r, ae in zip((plain, guided), reconstructed)]
    np.testing.assert_allclose(guided.extras["pp_reconstruction[0]"], errors[1], rtol=1e-4)
    assert guided.extras["pp_class[0]"] == t and errors[1] < errors[0] / 2


def test_autoencoder_parameters_name_what_is_wrong():
    import digits

    from onnxplain.explainers.errors import NotFound

    classifier, x, t = digits_case(0)
    objective = Objective.for_classes([t], 10)
    for params, field in (({"gamma": 1.0}, "params.gamma"), ({"autoencoder": "digits_autoencoder"}, "params.autoencoder"),
                          ({"autoencoder": "digits_decoder", "gamma": 1.0}, "params.autoencoder")):
        with pytest.raises(InvalidArgument) as info:
            explain_once(classifier, x, "cem", objective, params, companions=digits.companions())
        assert info.value.field == field
    with pytest.raises(NotFound, match="digits_autoencoder"):
        explain_once(classifier, x, "cem", objective, {"autoencoder": "nothing", "gamma": 1.0},
                     companions=digits.companions())


def test_cancellation_stops_the_run_at_the_next_batch():
    from onnxplain.explainers.context import RunContext
    from onnxplain.explainers.errors import Cancelled

    classifier, _, x = linear_problem(1, margin=20.0)
    context = RunContext()
    events = explain(classifier, x, "cem", Objective.for_classes([0], 2), {"iterations": 50}, context=context)
    planned = next(events)
    next(events)  # the first step's progress
    used = context.forward + context.backward
    context.cancel()
    with pytest.raises(Cancelled):
        next(events)
    assert context.forward + context.backward == used < planned.total


def test_the_c_search_is_the_authors_bisection_and_tries_several_values_at_once():
    one = ConstantSearch(1, 1, 10.0)
    tried = []
    for met in (False, False, True, False, True):  # 10 fails, 100 fails, 1000 meets, 550 fails, 775 meets
        tried.append(float(one.values[0, 0]))
        one.update(one.values, np.array([[met]]))
    assert tried == [10.0, 100.0, 1000.0, 550.0, 775.0] and (one.low[0], one.high[0]) == (550.0, 775.0)
    three = ConstantSearch(2, 3, 10.0)
    np.testing.assert_array_equal(three.values, [[10, 100, 1000]] * 2)
    three.update(three.values, np.array([[False, True, True], [False, False, False]]))
    np.testing.assert_array_equal(three.values, [[32.5, 55, 77.5], [1e4, 1e5, 1e6]])  # split (10, 100); grow on
    assert three.high[1] == NO_UPPER_BOUND


def test_several_values_of_c_at_once_reach_the_same_kkt_point_in_fewer_steps():
    m = 20.0
    classifier, w, x = linear_problem(1, margin=m)
    d = (w[0] - w[1]).ravel().astype(np.float64)
    events = list(explain(classifier, x, "cem", Objective.for_classes([0], 2),
                          {"mode": "pn", "pn_direction": "any", "beta": BETA, "iterations": 150, "search_steps": 2,
                           "c_batch": 4}))
    planned, result = events[0], events[-1]
    assert planned.forward == result.forward == 2 + 2 * 150 * 4 and result.backward == 2 * 150 * 4
    delta = (result.tensors["pertinent_negative"][0] - x).ravel()
    expected, _ = kkt_solution(d, -(m + KAPPA), 1.0, -x.ravel(), 255.0 - x.ravel())
    np.testing.assert_allclose(delta, expected, atol=0.01 * np.abs(expected).max())


@pytest.mark.parametrize("gradient", ["exact", "finite_differences"])
def test_behind_a_softmax_the_margins_are_the_logits(gradient):
    """The gradient graph differentiates the logits behind the Softmax and the scores come back as
    probabilities: log-probabilities give the same margins, so the PN crosses the logit margin κ."""
    rng = np.random.default_rng(6)
    w = rng.standard_normal((3, 1, 4, 4)).astype(np.float32) * 0.05
    x = np.kron(rng.uniform(60, 200, (1, 2, 2)), np.ones((2, 2))).astype(np.float32)
    logits_model = OnnxClassifier(builders.linear(w))
    softmax_model = OnnxClassifier(builders.linear(w, softmax=True))
    t = int(logits_model.predict(x[None])[0].argmax())
    params = {"mode": "pn", "gradient": gradient, "segments": 4, "iterations": 60, "search_steps": 5}
    ours = explain_once(softmax_model, x, "cem", Objective.for_classes([t], 3), params)
    logits = logits_model.predict(ours.tensors["pertinent_negative"])[0]
    margin = logits[t] - np.delete(logits, t).max()
    assert ours.extras["pn_found[0]"] == 1 and margin <= -KAPPA + 1e-4
    np.testing.assert_allclose(ours.extras["pn_margin[0]"], margin, atol=1e-4)
    same = explain_once(logits_model, x, "cem", Objective.for_classes([t], 3), params)
    np.testing.assert_allclose(same.tensors["pertinent_negative"], ours.tensors["pertinent_negative"], atol=1e-3)
