"""Dataset throughput: ``onnxplain batch`` on an embedded Ray against the same work through the plain CLI.

The folder: scikit-image's sample photos, each also cropped, flipped, resized and rotated, so at least
``--images`` files (default 54) of assorted sizes. The model: the bundled EfficientNet-Lite0; the
explanation: the best class of every image, with ``grad_cam`` (default parameters) and ``rise``
(``--rise-masks`` masks, grid 7, seed 0; fewer than the paper's 4000 so a run takes minutes).

* ``cli`` — ``onnxplain explain DIR --no-overlay --no-original -q`` against an ``onnxplain serve`` started
  here (onnxruntime on all cores): one process, one image after another. ``wall_s`` from the command's
  start to its exit.
* ``ray`` — ``explain_dataset(DIR, OUT, method, models=...)`` on an embedded Ray already started
  (``ray_start_s`` is its start-up, paid once per session), ``--actors`` actors × one onnxruntime thread,
  each holding its own loaded model; ``wall_s`` is the job (model loads in the actors included).

``images_per_s = images / wall_s``; ``speedup = ray images_per_s / cli images_per_s``.
Usage: ``python bench/batch.py --out bench [--images 54] [--rise-masks 250] [--actors 2]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "cat", "hubble_deep_field")
VARIANTS = {
    "full": lambda p: p,
    "flip": lambda p: p[:, ::-1],
    "crop": lambda p: p[p.shape[0] // 8 : -p.shape[0] // 8, p.shape[1] // 8 : -p.shape[1] // 8],
    "left": lambda p: p[:, : p.shape[1] * 2 // 3],
    "right": lambda p: p[:, p.shape[1] // 3 :],
    "top": lambda p: p[: p.shape[0] * 2 // 3],
    "small": lambda p: np.asarray(Image.fromarray(p).resize((p.shape[1] // 2, p.shape[0] // 2))),
    "rot90": lambda p: np.rot90(p).copy(),
    "flipud": lambda p: p[::-1],
}


def make_folder(folder: Path, count: int) -> list[Path]:
    """Write ``count`` JPEGs made from the sample photos (each variant of each photo, then repeats resized)."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = [np.ascontiguousarray(getattr(data, name)()[..., :3]) for name in PHOTOS]
    written = []
    for i in range(count):
        photo = photos[i % len(photos)]
        name, variant = list(VARIANTS.items())[(i // len(photos)) % len(VARIANTS)]
        pixels = np.ascontiguousarray(variant(photo))
        if i >= len(photos) * len(VARIANTS):  # beyond every variant: a distinct size
            pixels = np.asarray(Image.fromarray(pixels).resize((200 + i, 160 + i)))
        path = folder / f"{PHOTOS[i % len(PHOTOS)]}_{name}_{i:03d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        written.append(path)
    return written


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(folder: Path, out: Path, method: str, params: dict, address: str) -> float:
    command = [sys.executable, "-m", "onnxplain", "explain", str(folder), "--server", address, "--model",
               "efficientnet_lite0", "--method", method, "--seed", "0", "--no-overlay", "--no-original", "-q",
               "-o", str(out), *[a for k, v in params.items() for a in ("--param", f"{k}={v}")]]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the CLI failed: {done.stderr[-2000:]}")
    return wall


def start_server(warm_image: Path) -> tuple[subprocess.Popen, str]:
    """``onnxplain serve`` on a free port, its model loaded (one predict) before any timing."""
    from onnxplain.client import Client

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "onnxplain", "serve", "--models", str(MODELS), "--host",
                                "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    with Client(address, timeout=300) as client:
        client.wait_ready(120)
        client.predict("efficientnet_lite0", warm_image)
    return process, address


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="folder for batch.*")
    parser.add_argument("--images", type=int, default=54)
    parser.add_argument("--rise-masks", type=int, default=250)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--methods", default="grad_cam,rise")
    args = parser.parse_args()

    import ray

    from onnxplain.batch import explain_dataset

    work = Path(tempfile.mkdtemp(prefix="onnxplain-bench-batch-"))
    images = make_folder(work / "images", args.images)
    cases = {"grad_cam": {}, "rise": {"masks": args.rise_masks, "grid": 7}}
    rows = []
    process, address = start_server(images[0])
    try:
        for method in args.methods.split(","):
            wall = run_cli(work / "images", work / f"cli-{method}", method, cases[method], address)
            rows.append({"mode": "cli", "method": method, "images": len(images), "wall_s": round(wall, 2)})
            print(rows[-1], file=sys.stderr)
    finally:
        process.terminate()
        process.wait(30)
    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - started
    try:
        for method in args.methods.split(","):
            summary = explain_dataset(str(work / "images"), work / f"ray-{method}", method, models=MODELS,
                                      params=cases[method], actors=args.actors, batch_size=2, progress=False)
            assert summary.failed == 0 and summary.images == len(images), summary
            rows.append({"mode": "ray", "method": method, "images": summary.images,
                         "wall_s": round(summary.seconds, 2)})
            print(rows[-1], file=sys.stderr)
    finally:
        ray.shutdown()
    for row in rows:
        row["images_per_s"] = round(row["images"] / row["wall_s"], 3)
    speedups = {m: round(next(r["images_per_s"] for r in rows if r["mode"] == "ray" and r["method"] == m)
                         / next(r["images_per_s"] for r in rows if r["mode"] == "cli" and r["method"] == m), 2)
                for m in args.methods.split(",")}
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "ray": ray.__version__},
        "setup": {"images": len(images), "actors": args.actors, "rise": cases["rise"], "ray_start_s": round(ray_start, 2)},
        "rows": rows, "speedup": speedups,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batch.json").write_text(json.dumps(result, indent=2) + "\n")
    table = ["| mode | method | images | wall s | images/s |", "|---|---|---:|---:|---:|"]
    table += [f"| {r['mode']} | {r['method']} | {r['images']} | {r['wall_s']} | {r['images_per_s']} |" for r in rows]
    table += ["", f"Ray over the sequential CLI: {', '.join(f'{m} ×{s}' for m, s in speedups.items())}; "
              f"Ray start-up {ray_start:.1f} s (once per session, not in the rows); {args.actors} actors; "
              f"RISE {cases['rise']}; {result['date']}, {os.cpu_count()} CPUs."]
    (args.out / "batch.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
