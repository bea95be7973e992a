"""The plain gradient maps: one gradient pass per target under a ReLU rule set, then a reduction of
the per-channel attribution over channels. Each is one :func:`~.attribution.register_gradient` call.

======================  ===============  ===========================================================
map                     rules            heatmap of target t (g = ∂s_t/∂x [C, H, W] under the rules)
======================  ===============  ===========================================================
``saliency``            vanilla          max_c |g_c|                        (unsigned)
``input_x_gradient``    vanilla          Σ_c x_c · g_c                      (signed)
``guided_backprop``     guided_backprop  Σ_c g_c                            (signed)
``deconvnet``           deconvnet        Σ_c g_c                            (signed)
======================  ===============  ===========================================================

The per-channel attributions are Captum's (``Saliency(abs=True)``, ``InputXGradient``,
``GuidedBackprop``, ``Deconvolution``). Guided backprop and DeconvNet reconstruct an *image*
(Springenberg et al. show it in RGB); a heatmap needs one value per pixel, so their channels are
summed, signed — linear in the per-channel map, so it commutes with averaging (SmoothGrad). Guided
Grad-CAM multiplies the *per-channel* guided map by its CAM and then reduces it as
:data:`guided_backprop` does.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .attribution import max_channels, register_gradient


def magnitude(x: NDArray, baseline: NDArray, gradient: NDArray) -> NDArray:
    """|G| per channel."""
    return np.abs(gradient)


def times_input(x: NDArray, baseline: NDArray, gradient: NDArray) -> NDArray:
    """x ⊙ G per channel."""
    return x[:, None] * gradient


def as_is(x: NDArray, baseline: NDArray, gradient: NDArray) -> NDArray:
    """G per channel (the rule set makes the method)."""
    return gradient


saliency = register_gradient(
    "saliency", finish=magnitude, reduce=max_channels,
    citation="Simonyan, Vedaldi & Zisserman, Deep Inside Convolutional Networks: Visualising Image "
    "Classification Models and Saliency Maps, ICLR Workshop 2014",
    doc="""Magnitude of the score's gradient, maximised over channels: max_c |∂s/∂x_c| (Sec. 3.1).

    Unsigned. Passes: 1 F + 1 B per target. On a linear model it is max_c |w_c| at every pixel.""",
)

input_x_gradient = register_gradient(
    "input_x_gradient", finish=times_input,
    citation="Shrikumar, Greenside, Shcherbina & Kundaje, Not Just a Black Box: Learning Important Features "
    "Through Propagating Activation Differences, arXiv:1605.01713, 2016",
    doc="""Input times the score's gradient, summed over channels: Σ_c x_c · ∂s/∂x_c (signed).

    Passes: 1 F + 1 B per target. On a linear model (no bias) the heatmap sums to the score:
    it is Σ_c w_c ⊙ x_c exactly.""",
)

guided_backprop = register_gradient(
    "guided_backprop", finish=as_is, rules="guided_backprop",
    citation="Springenberg, Dosovitskiy, Brox & Riedmiller, Striving for Simplicity: The All Convolutional "
    "Net, ICLR Workshop 2015",
    doc="""Gradient whose ReLUs pass only positive gradient where their input was positive, channel sum.

    Every ReLU (and ReLU6-like Clip) backward keeps g where x > 0 and g > 0 (Fig. 1); the input
    gradient is summed over channels (signed; guided Grad-CAM uses the per-channel map instead).
    Passes: 1 F + 1 B per target.""",
)

deconvnet = register_gradient(
    "deconvnet", finish=as_is, rules="deconvnet",
    citation="Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014",
    doc="""Gradient whose ReLUs rectify the gradient itself, ignoring their input; channel sum.

    Every ReLU (and ReLU6-like Clip) backward is max(g, 0) (Sec. 2.1, "rectification"); the input
    gradient is summed over channels (signed). Max-pooling "switches" are the ordinary MaxPool
    gradient. Passes: 1 F + 1 B per target.

    Only those switches read the input: a net without max-pooling (the bundled EfficientNet-Lite0)
    gets the same map for every image — a known property of DeconvNet (Nie, Zhang & Patel, A
    Theoretical Explanation for Perplexing Behaviors of Backpropagation-based Visualizations,
    ICML 2018), not a bug.""",
)
