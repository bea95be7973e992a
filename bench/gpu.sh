#!/usr/bin/env bash
# The one-command GPU check (bench/README.md, "GPU"): onnxplain on onnxruntime's CUDA provider vs its CPU
# provider — heatmap agreement (saliency, Grad-CAM, Integrated Gradients), IO binding, fp16, latency
# ratios — on the bundled model. Under 5 minutes on a machine with an NVIDIA GPU and network access.
#
#   bench/gpu.sh [OUT_DIR]            # default OUT_DIR: gpu-check; writes gpu.json and gpu.md there
#   GPU_PYTHON=/path/python bench/gpu.sh OUT   # use an interpreter that already has onnxruntime-gpu and
#                                               # onnxplain's server dependencies (no venv, no downloads)
#
# Exit codes: 0 checks passed; 1 a CUDA heatmap differs from CPU beyond the tolerance; 2 no working CUDA
# provider (message on stderr); anything else: the venv could not be made.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-check}"
python="${GPU_PYTHON:-}"
if [[ -z "$python" ]]; then
    venv=.venv-gpu  # never the main .venv: onnxruntime and onnxruntime-gpu must not share an environment
    if [[ ! -x "$venv/bin/python" ]]; then
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q "onnxruntime-gpu>=1.20" onnxconverter-common "setuptools>=77" \
        onnx scikit-image scikit-learn scipy pillow threadpoolctl grpcio grpcio-health-checking \
        grpcio-reflection grpcio-status protobuf prometheus-client
    "$venv/bin/pip" install -q --no-deps --no-build-isolation -e .
    python="$venv/bin/python"
fi
fp16=--fp16
"$python" -c "import onnxconverter_common" 2>/dev/null || fp16=""
exec timeout 290 "$python" bench/gpu.py --out "$out" $fp16
