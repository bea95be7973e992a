"""Mask families, one module each, owning the graph prefix that draws a mask in the model
(a :class:`~explainers.graph.perturbation.MaskSource`) next to the numpy sampler and aggregator
that use the same tables:

* :mod:`.windows` — occlusion's sliding boxes;
* :mod:`.superpixels` — LIME's superpixels and on/off samples;
* :mod:`.grid` — RISE's shifted, upsampled random grids;
* :mod:`.upsampled` — low-resolution maps resized bilinearly (Score-CAM, extremal perturbation);
* :mod:`.ranked` — pixels removed in a map's rank order (the deletion/insertion metrics);
* :mod:`.dense` — one full-resolution mask per sample (the infidelity metric);
* :mod:`.bilinear` — the bilinear resize matrix they (and the CAMs) share.
"""
