"""Train and export the digits fixtures (dev-time only; the tests never import torch).

Writes a small model repository under ``tests/fixtures/digits/`` (see its README.md)::

    digits_cnn/          classifier   input [batch, 1, 8, 8] in [0, 1]  → logits [batch, 10]
    digits_decoder/      generator    z     [batch, 10]                 → image  [batch, 1, 8, 8] in (0, 1)
    digits_encoder/      encoder      input [batch, 1, 8, 8]            → z      [batch, 10] (the posterior mean)
    digits_autoencoder/  autoencoder  input [batch, 1, 8, 8]            → image  [batch, 1, 8, 8] = decoder(encoder(x))

Data: scikit-learn's 8×8 digits (pixel values 0..16) divided by 16, so an image is [1, 8, 8] in [0, 1]
(no mean/std); an 80/20 split stratified by class with ``random_state=0``.

* Classifier: Conv3×3(1→16)/ReLU, Conv3×3(16→32)/ReLU, Conv3×3(32→32)/ReLU (padding 1: the feature maps
  stay 8×8, so CAM methods see an 8×8 layer), global average pooling, Linear(32→10); Adam, cross-entropy.
* Generator: a variational autoencoder (Kingma & Welling 2014) with a 10-dimensional latent space and
  N(0, I) prior; MLP encoder 64→96→48→(μ, log σ²), MLP decoder 10→48→96→64 with a sigmoid output;
  loss = binary cross-entropy of the reconstruction + KL. The exported encoder returns μ (deterministic).

Seeded and single-threaded, so a rerun with the same torch version rewrites the same weights.
Run (about a minute on a CPU)::

    python3.11 -m venv .venv-torch
    .venv-torch/bin/pip install torch==2.13.0 onnx scikit-learn onnxruntime
    .venv-torch/bin/python tools/train_digits.py
"""

from __future__ import annotations

import argparse
import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F

SEED = 0
LATENT = 10
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "digits"


def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train/test images [n, 1, 8, 8] in [0, 1] and labels [n]."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    x_train, x_test, y_train, y_test = train_test_split(images, digits.target, test_size=0.2,
                                                        random_state=0, stratify=digits.target)
    return (torch.from_numpy(x_train), torch.from_numpy(y_train).long(),
            torch.from_numpy(x_test), torch.from_numpy(y_test).long())


class DigitsCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(32, 32, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 48), nn.ReLU())
        self.mean = nn.Linear(48, LATENT)
        self.log_var = nn.Linear(48, LATENT)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.body(x)
        return self.mean(hidden), self.log_var(hidden)


class MeanEncoder(nn.Module):
    """The exported encoder: x → μ(x)."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[0]


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(LATENT, 48), nn.ReLU(), nn.Linear(48, 96), nn.ReLU(),
                                  nn.Linear(96, 64), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z).reshape(-1, 1, 8, 8)


class AutoEncoder(nn.Module):
    def __init__(self, encoder: Encoder, decoder: Decoder) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x)[0])


def batches(n: int, size: int, generator: torch.Generator):
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, size):
        yield order[start:start + size]


def train_classifier(x: torch.Tensor, y: torch.Tensor, epochs: int) -> DigitsCnn:
    model = DigitsCnn()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        for index in batches(len(x), 64, generator):
            optimiser.zero_grad()
            F.cross_entropy(model(x[index]), y[index]).backward()
            optimiser.step()
    return model.eval()


def train_vae(x: torch.Tensor, epochs: int) -> tuple[Encoder, Decoder]:
    encoder, decoder = Encoder(), Decoder()
    optimiser = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=2e-3)
    generator = torch.Generator().manual_seed(SEED + 1)
    for _ in range(epochs):
        for index in batches(len(x), 64, generator):
            batch = x[index]
            mean, log_var = encoder(batch)
            noise = torch.randn(mean.shape, generator=generator)
            decoded = decoder(mean + torch.exp(0.5 * log_var) * noise)
            reconstruction = F.binary_cross_entropy(decoded, batch, reduction="sum")
            kl = -0.5 * torch.sum(1 + log_var - mean.pow(2) - log_var.exp())
            optimiser.zero_grad()
            ((reconstruction + kl) / len(batch)).backward()
            optimiser.step()
    return encoder.eval(), decoder.eval()


def export(model: nn.Module, example: torch.Tensor, input_name: str, output_name: str) -> onnx.ModelProto:
    """TorchScript exporter, opset 17, symbolic batch, doc strings stripped (byte-stable reruns)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=17,
                          input_names=[input_name], output_names=[output_name],
                          dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                          do_constant_folding=True)
    exported = onnx.load_from_string(buffer.getvalue())
    exported.doc_string = ""
    for node in exported.graph.node:
        node.doc_string = ""
    onnx.checker.check_model(exported, full_check=True)
    return exported


def check_matches(exported: onnx.ModelProto, model: nn.Module, example: torch.Tensor) -> None:
    """onnxruntime reproduces torch on ``example`` (batch n) and on its first row alone (batch 1)."""
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    with torch.no_grad():
        expected = model(example).numpy()
    got = session.run(None, {name: example.numpy()})[0]
    single = session.run(None, {name: example[:1].numpy()})[0]
    assert np.allclose(got, expected, atol=1e-5), float(np.abs(got - expected).max())
    assert np.allclose(single, expected[:1], atol=1e-5)


def write(name: str, exported: onnx.ModelProto, config: dict, labels: list[str] | None = None) -> None:
    folder = OUT / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(exported.SerializeToString())
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if labels is not None:
        (folder / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    print(f"wrote {folder / 'model.onnx'} ({(folder / 'model.onnx').stat().st_size} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier-epochs", type=int, default=60)
    parser.add_argument("--vae-epochs", type=int, default=300)
    args = parser.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x_train, y_train, x_test, y_test = load_data()

    classifier = train_classifier(x_train, y_train, args.classifier_epochs)
    with torch.no_grad():
        train_accuracy = float((classifier(x_train).argmax(1) == y_train).float().mean())
        test_accuracy = float((classifier(x_test).argmax(1) == y_test).float().mean())
    print(f"classifier: train accuracy {train_accuracy:.4f}, test accuracy {test_accuracy:.4f}")
    assert test_accuracy >= 0.95, "the digits CNN should reach 95% held-out accuracy"

    encoder, decoder = train_vae(x_train, args.vae_epochs)
    autoencoder = AutoEncoder(encoder, decoder).eval()
    with torch.no_grad():
        reconstructed = autoencoder(x_test)
        error = float((reconstructed - x_test).abs().mean())
        kept = float((classifier(reconstructed).argmax(1) == y_test).float().mean())
    print(f"autoencoder: test mean |x - x̂| {error:.4f}; classifier accuracy on reconstructions {kept:.4f}")

    probe = x_test[:4]
    cnn = export(classifier, probe, "input", "logits")
    check_matches(cnn, classifier, probe)
    write("digits_cnn", cnn, {
        "description": f"8×8 digits CNN (tools/train_digits.py), held-out accuracy {test_accuracy:.4f}; "
                       "input = sklearn digit / 16, in [0, 1]",
        "labels": "labels.txt", "layout": "NCHW", "output_kind": "logits", "output": "logits",
        "preprocessing": {"resize_mode": "squash", "scale": 1.0 / 255.0, "mean": [0.0], "std": [1.0]},
        "cam_layer": "/features/features.5/Relu_output_0",
    }, labels=[str(d) for d in range(10)])

    z = encoder(probe)[0].detach()
    for name, model, example, names in (
        ("digits_decoder", decoder, z, ("z", "image")),
        ("digits_encoder", MeanEncoder(encoder).eval(), probe, ("input", "z")),
        ("digits_autoencoder", autoencoder, probe, ("input", "image")),
    ):
        exported = export(model, example, *names)
        check_matches(exported, model, example)
        write(name, exported, {"kind": "companion",
                               "description": f"{name.split('_')[1]} of the digits VAE (tools/train_digits.py), "
                                              f"latent dimension {LATENT}; images in [0, 1]"})
    stats = {"classifier_train_accuracy": round(train_accuracy, 4), "classifier_test_accuracy": round(test_accuracy, 4),
             "autoencoder_test_mean_abs_error": round(error, 4),
             "classifier_accuracy_on_reconstructions": round(kept, 4)}
    (OUT / "training.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
