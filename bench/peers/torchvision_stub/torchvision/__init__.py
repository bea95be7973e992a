"""Import-only stand-in for torchvision inside .venv-peers (bench/peers/worker.py puts it on sys.path).

pytorch-grad-cam 1.5.7 imports torchvision at module level only for helpers this benchmark never calls
(``preprocess_image``, detection targets' ``box_iou``, SESS's ``resize``); GradCAM, GradCAM++ and
ScoreCAM compute with torch, numpy and OpenCV. torchvision's wheels for torch 2.13 need the CUDA torch
build (its C ops fail to register on the CPU build), and the pair that works (torch 2.14.1 + torchvision
0.29.1) is 5.5 GB. Anything used from here raises, so a call that did need torchvision cannot pass silently.
"""

from . import ops, transforms  # noqa: F401

__version__ = "stub"
