"""bench/gpu.sh's check fails clearly where onnxruntime has no CUDA provider (as on this CPU-only CI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="a CUDA build: no failure to see")
def test_the_gpu_check_exits_2_with_a_message_without_a_cuda_provider(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "GPU_PYTHON": sys.executable})
    assert done.returncode == 2, done.stderr
    assert "no CUDA execution provider" in done.stderr and "onnxruntime-gpu" in done.stderr
    assert not (tmp_path / "out").exists()  # nothing written that could pass for a result
