"""The peers' side of bench/peers/run.py: runs in .venv-peers (torch CPU, Captum, pytorch-grad-cam, LIME).

Started by run.py as a subprocess; reads one JSON command per line on stdin and answers one JSON line
on stdout (arrays travel as .npy files in the run's scratch folder):

    {"cmd": "export", "dir": D}   builds the seeded model (:func:`build_model`), writes D/model.onnx
                                  (TorchScript exporter, as tests/fixtures' goldens) → {"torch": version, ...}
    {"cmd": "logits", "x": P}     float32 logits [N, classes] of the [N, C, H, W] batch in P → {"out": path}
    {"cmd": "run", "method": M, "x": P, "target": t, "segments": S?, "out": Q}
                                  one timed call of peer method M on image P [C, H, W] for class t;
                                  writes its heatmap [H, W] to Q → {"seconds": wall time of the call}

Only the peer library's call is timed (the model and the explainer object are built once per method,
outside the timer: their construction is cheap and not what a user repeats). The heatmap reductions
over channels follow onnxplain's (explainers/methods/gradient_maps.py): saliency max_c |g_c|, the other
gradient maps Σ_c; they are not part of the timed call either — onnxplain's timed call includes its own.

Threads: torch.set_num_threads(THREADS) and set_num_interop_threads(1); run.py starts this process with
OMP_NUM_THREADS / MKL_NUM_THREADS / OPENBLAS_NUM_THREADS = THREADS too (LIME's scikit-learn fit).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "torchvision_stub"))  # pytorch-grad-cam imports torchvision (see the stub)
sys.path.insert(0, str(HERE.parents[1] / "tools" / "fixtures"))  # the golden scripts' export helpers
from legacy_export import conv_bn_relu, export, randomise_batch_norms  # noqa: E402

SEED = 20261203
SHAPE = (3, 128, 128)
CLASSES = 10
BATCH = 32  # LIME's and Score-CAM's batch: onnxplain's config max_batch in run.py


class BasicBlock(nn.Module):
    """ResNet's basic block: conv-BN-ReLU, conv-BN, + shortcut (1×1 conv-BN when the shape changes), ReLU.
    Every ReLU is its own module (Captum's DeepLift and guided backprop hook modules)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.branch = nn.Sequential(conv_bn_relu(cin, cout, stride), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                    nn.BatchNorm2d(cout))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.branch(x) + self.shortcut(x))


class SmallResNet(nn.Module):
    """[N, 3, 128, 128] → logits [N, 10]: stem conv/2 (32 ch), blocks 32, 64/2, 128/2, 128 → 16×16,
    global average pool, linear. Strided convolutions instead of a max-pool (Captum 0.9.0's DeepLift
    mishandles adjacent hooked modules such as ReLU → MaxPool, meta-pytorch/captum#1104)."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn_relu(3, 32, 2)
        self.blocks = nn.Sequential(BasicBlock(32, 32, 1), BasicBlock(32, 64, 2), BasicBlock(64, 128, 2),
                                    BasicBlock(128, 128, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))

    @property
    def cam_layer(self) -> nn.Module:
        """The module whose output is the input of the global pooling (onnxplain's default CAM layer)."""
        return self.blocks[-1].relu


def build_model() -> SmallResNet:
    """The seeded model in eval mode: Kaiming-normal convs, non-trivial BatchNorm statistics."""
    torch.manual_seed(SEED)
    model = SmallResNet()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    randomise_batch_norms(model, bias=(-0.1, 0.1))
    return model.eval()


def reduce_channels(method: str, attribution: torch.Tensor) -> np.ndarray:
    """[1, C, H, W] → [H, W] as onnxplain reduces the method's per-channel map."""
    a = attribution.detach()[0]
    return (a.abs().amax(0) if method == "saliency" else a.sum(0)).numpy()


class Peers:
    """One explainer per method, built on first use; ``run`` times one call."""

    def __init__(self, model: SmallResNet):
        from captum.attr import DeepLift, GuidedBackprop, InputXGradient, IntegratedGradients, Saliency
        from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM

        self.model = model
        self.captum = {"saliency": Saliency, "input_x_gradient": InputXGradient, "guided_backprop": GuidedBackprop,
                       "deeplift": DeepLift, "integrated_gradients": IntegratedGradients}
        self.cams = {"grad_cam": GradCAM, "grad_cam_plus_plus": GradCAMPlusPlus, "score_cam": ScoreCAM}
        self.built: dict[str, object] = {}

    def explainer(self, method: str):
        if method not in self.built:
            if method in self.captum:
                self.built[method] = self.captum[method](self.model)
            elif method in self.cams:
                cam = self.cams[method](model=self.model, target_layers=[self.model.cam_layer])
                cam.batch_size = BATCH  # ScoreCAM's masked-input batch (default 16)
                self.built[method] = cam
            elif method == "lime":
                from lime.lime_image import LimeImageExplainer
                self.built[method] = LimeImageExplainer(kernel_width=0.25, random_state=0)  # Ridge α = 1
            else:
                raise ValueError(f"unknown method {method}")
        return self.built[method]

    def run(self, method: str, image: np.ndarray, target: int, segments: np.ndarray | None) -> tuple[float, np.ndarray]:
        """(seconds, heatmap [H, W]) of one call."""
        explainer = self.explainer(method)
        x = torch.from_numpy(image[None])
        if method in self.captum:
            kwargs = {"target": target}
            if method in ("deeplift", "integrated_gradients"):
                kwargs["baselines"] = torch.zeros_like(x)
            if method == "integrated_gradients":
                kwargs.update(n_steps=50, method="gausslegendre")
            start = time.perf_counter()
            attribution = explainer.attribute(x, **kwargs)
            seconds = time.perf_counter() - start
            return seconds, reduce_channels(method, attribution)
        if method in self.cams:
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
            start = time.perf_counter()
            cam = explainer(input_tensor=x, targets=[ClassifierOutputTarget(target)])
            seconds = time.perf_counter() - start
            return seconds, cam[0]
        return self.lime(explainer, image, target, segments)

    def lime(self, explainer, image: np.ndarray, target: int, segments: np.ndarray) -> tuple[float, np.ndarray]:
        """LIME on the HWC image with onnxplain's segmentation, 1000 samples, the logits as scores."""
        def classify(batch: np.ndarray) -> np.ndarray:  # [n, H, W, C] → logits [n, classes]
            with torch.no_grad():
                return self.model(torch.from_numpy(np.ascontiguousarray(
                    batch.transpose(0, 3, 1, 2), dtype=np.float32))).numpy()

        start = time.perf_counter()
        explanation = explainer.explain_instance(
            image.transpose(1, 2, 0).astype(np.float64), classify, labels=(target,), top_labels=None,
            hide_color=None, num_features=int(segments.max()) + 1, num_samples=1000, batch_size=BATCH,
            segmentation_fn=lambda _: segments, random_seed=0)
        seconds = time.perf_counter() - start
        coefficients = np.zeros(int(segments.max()) + 1)
        for segment, weight in explanation.local_exp[target]:
            coefficients[segment] = weight
        return seconds, coefficients[segments]


def main() -> None:
    threads = int(sys.argv[1])
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    model = build_model()
    peers = Peers(model)
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "export":
            from importlib.metadata import version
            path = Path(command["dir"]) / "model.onnx"
            path.write_bytes(export(model, SHAPE).SerializeToString())
            answer = {"model": str(path), "shape": SHAPE, "torch": torch.__version__, "captum": version("captum"),
                      "grad_cam": version("grad-cam"), "lime": version("lime"), "threads": torch.get_num_threads()}
        elif command["cmd"] == "logits":
            with torch.no_grad():
                logits = model(torch.from_numpy(np.load(command["x"]))).numpy()
            out = command["x"] + ".logits.npy"
            np.save(out, logits)
            answer = {"out": out}
        else:
            segments = np.load(command["segments"]) if command.get("segments") else None
            seconds, heatmap = peers.run(command["method"], np.load(command["x"]), command["target"], segments)
            np.save(command["out"], np.asarray(heatmap, dtype=np.float64))
            answer = {"seconds": seconds}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
