"""Registration: a gradient method is one ``register_gradient`` call that SmoothGrad can then wrap by
name, a CAM variant is its channel weights plus ``register_cam``, parameter kinds come from the
resolved annotations, and every float parameter must be finite."""

from __future__ import annotations

import dataclasses
import math

import builders
import numpy as np
import pytest

from onnxplain.explainers import Objective, OnnxClassifier, explain, explain_once
from onnxplain.explainers.errors import InvalidArgument
from onnxplain.explainers.methods import get_method, gradient_attributions, list_methods, registry
from onnxplain.explainers.methods.attribution import register_gradient
from onnxplain.explainers.methods.cam_base import register_cam
from onnxplain.explainers.methods.grad_cam import grad_cam_weights
from onnxplain.explainers.params import MethodParams, kind_of, param

RNG = np.random.default_rng(3)

Floats = tuple[float, ...]  # an alias: the annotation's text is "Floats", its resolved type is tuple[float, ...]


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in a test vanish after it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_smoothgrad_wraps_exactly_the_registered_gradient_attributions():
    wrappable = {spec.name for spec in list_methods() if spec.attribution is not None}
    assert wrappable == {"saliency", "input_x_gradient", "guided_backprop", "deconvnet", "integrated_gradients",
                         "deeplift"}
    inner = next(p for p in get_method("smoothgrad").params.describe() if p.name == "inner")
    assert set(inner.choices) == wrappable == set(gradient_attributions())


def test_one_register_gradient_call_makes_a_method_that_smoothgrad_wraps(scratch_registry):
    register_gradient("negated_gradient", finish=lambda x, baseline, g: -g, citation="a test",
                      doc="Minus the gradient, summed over channels.\n\nPasses: 1 F + 1 B per target.")
    w = RNG.standard_normal((3, 3, 6, 5)).astype(np.float32)
    x = RNG.standard_normal((3, 6, 5)).astype(np.float32)
    classifier, objective = OnnxClassifier(builders.linear(w)), Objective.for_classes([0, 2], 3)
    spec = get_method("negated_gradient")
    assert (spec.summary, spec.citation) == ("Minus the gradient, summed over channels.", "a test")
    planned, alone = explain(classifier, x, "negated_gradient", objective)
    np.testing.assert_allclose(alone.heatmaps, -w[[0, 2]].sum(axis=1), rtol=1e-6, atol=1e-6)
    assert (planned.forward, planned.backward, alone.forward, alone.backward) == (2, 2, 2, 2)
    assert "negated_gradient" in next(p for p in get_method("smoothgrad").params.describe() if p.name == "inner").choices
    wrapped = explain_once(classifier, x, "smoothgrad", objective, {"samples": 3, "noise_level": 0.5,
                                                                    "inner": "negated_gradient"})
    np.testing.assert_allclose(wrapped.heatmaps, alone.heatmaps, rtol=1e-5, atol=1e-6)  # linear: noise-free
    with pytest.raises(ValueError, match="already registered"):
        register_gradient("negated_gradient", finish=lambda x, baseline, g: g, citation="", doc="")


def test_a_cam_variant_is_its_channel_weights(scratch_registry):
    def doubled(activation, gradient):
        """Twice Grad-CAM's map."""
        return 2 * grad_cam_weights(activation, gradient)

    register_cam("doubled_grad_cam", weights=doubled, citation="a test")
    classifier, objective = OnnxClassifier(builders.small_cnn()), Objective.for_classes([0, 1], 3)
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    ours = explain_once(classifier, x, "doubled_grad_cam", objective)
    grad_cam = explain_once(classifier, x, "grad_cam", objective)
    assert np.abs(grad_cam.heatmaps).max() > 0
    np.testing.assert_allclose(ours.heatmaps, 2 * grad_cam.heatmaps, rtol=1e-6)
    spec = get_method("doubled_grad_cam")
    assert spec.params is get_method("grad_cam").params and spec.summary == "Twice Grad-CAM's map."


def test_parameter_kinds_come_from_the_resolved_annotations_or_kind():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Example(MethodParams):
        areas: Floats = param((0.5,), low=0.0, high=1.0, doc="an alias of tuple[float, ...]")
        count: int = param(3, doc="an int")
        label: object = param("a", kind="str", doc="declared by kind=")

    assert [(p.name, p.kind) for p in Example.describe()] == [("areas", "floats"), ("count", "int"), ("label", "str")]
    with pytest.raises(InvalidArgument, match=r"params\.areas\[1\]"):
        Example(areas=(0.5, 2.0))
    with pytest.raises(TypeError, match="kind="):
        kind_of(dict[str, int])


def test_infinity_is_allowed_only_where_a_parameter_says_so():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Example(MethodParams):
        threshold: float = param(1.0, finite=False, doc="may be ±inf")
        scale: float = param(1.0, doc="finite")

    assert Example(threshold=math.inf).threshold == math.inf
    with pytest.raises(InvalidArgument, match="not NaN") as info:
        Example(threshold=math.nan)
    assert info.value.field == "params.threshold"
    with pytest.raises(InvalidArgument, match="finite number"):
        Example(scale=-math.inf)


FLOAT_PARAMETERS = [(spec.name, p.name, p.kind) for spec in list_methods() for p in spec.params.describe()
                    if p.kind in ("float", "floats")]


def test_the_hardening_report_s_float_parameters_are_covered():
    covered = {(method, name) for method, name, _ in FLOAT_PARAMETERS}
    assert {("rise", "keep_probability"), ("lime", "kernel_width"), ("lime", "ridge_alpha"),
            ("extremal_perturbation", "learning_rate"), ("extremal_perturbation", "areas"),
            ("smoothgrad", "noise_level")} <= covered


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("method, name, kind", FLOAT_PARAMETERS, ids=[f"{m}.{n}" for m, n, _ in FLOAT_PARAMETERS])
def test_every_float_parameter_must_be_finite(method, name, kind, value):
    with pytest.raises(InvalidArgument, match="must be a finite number") as info:
        get_method(method).params.from_mapping({name: (0.1, value) if kind == "floats" else value})
    assert info.value.field == (f"params.{name}[1]" if kind == "floats" else f"params.{name}")
