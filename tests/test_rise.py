"""RISE on analytic models: the exact aggregation, the closed-form expectation of a linear model,
the one-quadrant model, sampling, early stopping and parameters."""

from __future__ import annotations

import builders
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from onnxplain.explainers import ModelConfig, Objective, OnnxClassifier, Planned, Progress, explain, explain_once
from onnxplain.explainers.errors import InvalidArgument
from onnxplain.explainers.graph.perturbation import MASK, prefixed_model
from onnxplain.explainers.perturb.baselines import make_baseline
from onnxplain.explainers.perturb.masks.bilinear import bilinear_matrix
from onnxplain.explainers.perturb.masks.grid import GridMaskSum, GridSampler, GridTables, grid_masks

RNG = np.random.default_rng(5)


def classifier(model, max_batch: int = 64) -> OnnxClassifier:
    return OnnxClassifier(model, config=ModelConfig(max_batch=max_batch))


@pytest.mark.parametrize("height, width, grid", [(12, 10, 4), (16, 16, 7), (9, 13, 2)])
def test_numpy_masks_equal_the_masks_built_in_the_graph(height, width, grid):
    tables = GridTables.build(height, width, grid)
    grids = RNG.integers(0, 2, (6, grid, grid)).astype(np.float32)
    shifts = np.stack([RNG.integers(0, tables.cells[0], 6), RNG.integers(0, tables.cells[1], 6)], axis=1)
    identity = builders.linear(np.eye(height * width, dtype=np.float32).reshape(-1, 1, height, width))
    model = prefixed_model(identity, "x", layout="NCHW", input_type=TensorProto.FLOAT,
                           source=grid_masks(height, width, grid))
    model.graph.output.append(helper.make_tensor_value_info(MASK, TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    image = np.ones((1, 1, height, width), np.float32)
    _, graph_masks = session.run(None, {"grids": grids, "shifts": shifts, "source_image": image,
                                        "source_baseline": np.zeros_like(image)})
    np.testing.assert_allclose(tables.masks(grids, shifts), graph_masks[:, 0], atol=1e-6)


def test_aggregator_equals_the_brute_force_weighted_sum_of_masks():
    tables = GridTables.build(20, 14, 3)
    grids = RNG.integers(0, 2, (50, 3, 3)).astype(np.float32)
    shifts = np.stack([RNG.integers(0, tables.cells[0], 50), RNG.integers(0, tables.cells[1], 50)], axis=1)
    values = RNG.standard_normal((50, 2))
    aggregate = GridMaskSum(tables, targets=2, keep=0.3)
    for start in range(0, 50, 7):
        aggregate.add(grids[start : start + 7], shifts[start : start + 7], values[start : start + 7])
    expected = np.einsum("nt,nhw->thw", values, tables.masks(grids, shifts)) / (50 * 0.3)
    np.testing.assert_allclose(aggregate.render(), expected, rtol=1e-10, atol=1e-12)


def shift_averaged_overlap(size: int, grid: int) -> np.ndarray:
    """K[a, b] = E_dy[Σ_j R[dy + a, j] R[dy + b, j]] over the uniform shift dy ∈ [0, cell): the
    covariance of two mask rows, up to p(1 − p), from the bilinear weights alone."""
    cell = -(-size // grid)
    r = bilinear_matrix(grid, (grid + 1) * cell)
    return np.mean([r[d : d + size] @ r[d : d + size].T for d in range(cell)], axis=0)


@pytest.mark.parametrize("sampling", ["random", "quasi_random"])
@pytest.mark.parametrize("baseline", ["zero", "mean"])
def test_a_linear_model_matches_its_closed_form_expectation(sampling, baseline):
    """For f = c + Σ_v a(v) M(v) (a = Σ_channels w ⊙ (x − b), c = f(b)) and independent Bernoulli(p)
    cells: E[M(u)] = p and E[M(u) M(v)] = p² + p(1 − p)·K_y(u, v)·K_x(u, v), hence
    E[S] = E[f M(u)] / p = c + p Σa + (1 − p) · K_y A K_xᵀ. The Monte-Carlo error of N masks is at
    most sd(f M(u) / p) / √N ≤ √E[f²] / (p √N) per pixel (M ≤ 1), with E[f²] in closed form too."""
    size, grid, p, masks = 12, 3, 0.4, 16000
    w = RNG.standard_normal((1, 3, size, size)).astype(np.float32)
    x = RNG.standard_normal((3, size, size)).astype(np.float32)
    params = {"masks": masks, "grid": grid, "keep_probability": p, "sampling": sampling, "baseline": baseline}
    result = explain_once(classifier(builders.linear(w, bias=np.array([0.3], np.float32))), x, "rise",
                          Objective.for_classes([0], 1), params, seed=1)

    b = make_baseline(x, baseline).astype(np.float64)
    a = (w[0] * (x - b)).sum(0)
    c = float((w[0] * b).sum()) + 0.3
    ky = kx = shift_averaged_overlap(size, grid)
    expected = c + p * a.sum() + (1 - p) * ky @ a @ kx.T
    second_moment = p * p + p * (1 - p) * np.einsum("ab,cd->acbd", ky, kx).reshape(a.size, a.size)
    mean_square_f = c * c + 2 * c * p * a.sum() + a.ravel() @ second_moment @ a.ravel()
    tolerance = 4.5 * np.sqrt(mean_square_f) / (p * np.sqrt(masks))
    np.testing.assert_allclose(result.heatmaps[0], expected, atol=tolerance)
    # the test can tell: without the shift average, or with E[M] = p² instead of p, it would fail
    fixed_shift = bilinear_matrix(grid, (grid + 1) * 4)[:size] @ bilinear_matrix(grid, (grid + 1) * 4)[:size].T
    assert np.abs(c + p * a.sum() + (1 - p) * fixed_shift @ a @ fixed_shift.T - expected).max() > 2 * tolerance
    assert np.abs(expected / p - expected).max() > 2 * tolerance
    np.testing.assert_allclose(result.scores, [(w[0] * x).sum() + 0.3], rtol=1e-5)


@pytest.mark.parametrize("sampling", ["random", "quasi_random"])
def test_the_heat_lies_in_the_quadrant_the_model_looks_at(sampling):
    x = np.random.default_rng(3).standard_normal((3, 16, 16)).astype(np.float32) + 2.0
    result = explain_once(classifier(builders.quadrant(size=16), max_batch=256), x, "rise",
                          Objective.for_classes([0, 1], 2), {"masks": 4000, "grid": 8, "sampling": sampling})
    heat = result.heatmaps[1].astype(np.float64)
    # RISE maps carry an offset E[f] (a pixel that does not matter scores the mean masked score):
    # heat is what rises above the median pixel, which lies outside the quadrant (a quarter of the image)
    positive = np.clip(heat - np.median(heat), 0, None)
    assert positive[:8, :8].sum() > 0.75 * positive.sum()
    assert max(np.unravel_index(heat.argmax(), heat.shape)) < 8
    assert heat[:8, :8].mean() > max(heat[8:, :8].mean(), heat[:8, 8:].mean(), heat[8:, 8:].mean()) + 0.2
    np.testing.assert_allclose(result.heatmaps[1], 2 * result.heatmaps[0], rtol=1e-6)  # logit 1 = 2 · logit 0


def test_quasi_random_masks_converge_faster_than_random_ones():
    model = classifier(builders.quadrant(size=16), max_batch=256)
    x = np.random.default_rng(3).standard_normal((3, 16, 16)).astype(np.float32) + 2.0
    objective = Objective.for_classes([1], 2)
    reference = explain_once(model, x, "rise", objective, {"masks": 100000, "grid": 8}, seed=99).heatmaps[0]

    def errors(sampling):
        maps = [explain_once(model, x, "rise", objective, {"masks": 256, "grid": 8, "sampling": sampling},
                             seed=seed).heatmaps[0] for seed in range(3)]
        return [np.sqrt(np.mean((m - reference) ** 2)) for m in maps]

    assert max(errors("quasi_random")) < 0.5 * min(errors("random"))  # ≈ 10× lower in practice


@pytest.mark.parametrize("sampling", ["random", "quasi_random"])
def test_sampler_statistics(sampling):
    cells = (5, 3)
    sampler = GridSampler(1024, 4, 0.3, cells, sampling, np.random.default_rng(0))
    grids, shifts = sampler.take(0, 1024)
    assert grids.dtype == np.float32 and set(np.unique(grids)) <= {0.0, 1.0}
    assert shifts.dtype == np.int64 and shifts.min() == 0 and tuple(shifts.max(axis=0)) == (4, 2)
    kept = grids.mean(axis=0)
    if sampling == "random":
        assert np.abs(kept - 0.3).max() < 4.5 * np.sqrt(0.3 * 0.7 / 1024)
    else:  # 1024 = 2¹⁰ Sobol points: every cell kept in a fraction p of the masks, to 1/1024
        assert np.abs(kept - 0.3).max() <= 1 / 1024 + 1e-9
        assert np.ptp(np.bincount(shifts[:, 0])) <= 1 and np.ptp(np.bincount(shifts[:, 1])) <= 1
    again, _ = GridSampler(1024, 4, 0.3, cells, sampling, np.random.default_rng(0)).take(300, 700)
    np.testing.assert_array_equal(again, grids[300:700])


@pytest.mark.parametrize("sampling", ["random", "quasi_random"])
def test_same_seed_same_map_whatever_the_batch_size(sampling):
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    params = {"masks": 300, "grid": 5, "sampling": sampling}
    objective = Objective.for_classes([0, 2], 3)
    maps = [explain_once(classifier(builders.small_cnn(), batch), x, "rise", objective, params, seed=4).heatmaps
            for batch in (1, 7, 64)]
    np.testing.assert_allclose(maps[1], maps[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps[2], maps[0], rtol=1e-5, atol=1e-6)
    other = explain_once(classifier(builders.small_cnn()), x, "rise", objective, params, seed=5).heatmaps
    assert np.abs(other - maps[0]).max() > 1e-3


def test_the_first_masks_do_not_depend_on_the_total_and_last_10pct_change_is_exact():
    model = classifier(builders.small_cnn(), max_batch=16)
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    objective = Objective.for_classes([1], 3)
    events = list(explain(model, x, "rise", objective, {"masks": 500, "grid": 4}, seed=2))
    final = events[-1]
    at_90 = explain_once(model, x, "rise", objective, {"masks": 450, "grid": 4}, seed=2).heatmaps
    change = np.linalg.norm(final.heatmaps - at_90) / np.linalg.norm(final.heatmaps)
    assert final.extras["last_10pct_change"] == pytest.approx(change, rel=1e-4)
    assert final.extras["masks_used"] == 500 and final.forward == 501 == events[0].forward
    first = next(e for e in events if isinstance(e, Progress))  # the partial map after one chunk of 16
    assert first.done == 17  # the unmasked image, then 16 masks
    np.testing.assert_allclose(first.heatmaps, explain_once(model, x, "rise", objective, {"masks": 16, "grid": 4},
                                                            seed=2).heatmaps, rtol=1e-6)


def test_a_convergence_tolerance_stops_early_at_the_same_mask_whatever_the_batch_size():
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    objective = Objective.for_classes([0], 3)
    params = {"masks": 5000, "grid": 4, "convergence_tolerance": 0.005}
    runs = []
    for batch in (8, 13):
        events = list(explain(classifier(builders.small_cnn(), batch), x, "rise", objective, params, seed=0))
        runs.append(events)
        planned, final = events[0], events[-1]
        assert isinstance(planned, Planned) and planned.forward == 5001
        used = int(final.extras["masks_used"])
        assert 500 < used < 5000 and final.extras["last_10pct_change"] < 0.005
        assert used + 1 <= final.forward < used + 1 + batch  # the rest of the last chunk was evaluated
        np.testing.assert_array_equal(events[-2].heatmaps, final.heatmaps)
    assert runs[0][-1].extras["masks_used"] == runs[1][-1].extras["masks_used"]
    np.testing.assert_allclose(runs[0][-1].heatmaps, runs[1][-1].heatmaps, rtol=1e-6, atol=1e-7)
    # the stop compared the map of the first `used` masks with that of the first 90% of them
    model = classifier(builders.small_cnn())
    at_used, at_90 = (explain_once(model, x, "rise", objective, {"masks": n, "grid": 4}, seed=0).heatmaps
                      for n in (used, 9 * used // 10))
    np.testing.assert_allclose(final.heatmaps, at_used, rtol=1e-5, atol=1e-6)
    change = np.linalg.norm(at_used - at_90) / np.linalg.norm(at_used)
    assert final.extras["last_10pct_change"] == pytest.approx(change, rel=1e-3)


def test_only_the_grid_and_shift_travel_per_sample():
    result = explain_once(classifier(builders.small_cnn()), RNG.standard_normal((3, 16, 16)).astype(np.float32),
                          "rise", Objective.for_classes([0], 3), {"masks": 40, "grid": 6})
    assert result.extras["bytes_per_sample"] == 6 * 6 * 4 + 2 * 8


@pytest.mark.parametrize(
    "params, field",
    [
        ({"masks": 0}, "params.masks"),
        ({"masks": 100001}, "params.masks"),
        ({"grid": 1}, "params.grid"),
        ({"grid": 65}, "params.grid"),
        ({"keep_probability": 1.0}, "params.keep_probability"),
        ({"keep_probability": "half"}, "params.keep_probability"),
        ({"sampling": "sobol"}, "params.sampling"),
        ({"convergence_tolerance": -0.1}, "params.convergence_tolerance"),
        ({"baseline": "noise"}, "params.baseline"),
        ({"mask": 10}, "params.mask"),
    ],
)
def test_bad_parameters_name_the_parameter(params, field):
    model = classifier(builders.linear(np.ones((1, 3, 12, 12), np.float32)))
    with pytest.raises(InvalidArgument) as info:
        explain_once(model, np.zeros((3, 12, 12), np.float32), "rise", Objective.for_classes([0], 1), params)
    assert info.value.field == field and field.split(".")[1] in str(info.value)
