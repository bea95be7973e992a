#!/usr/bin/env bash
# One command: set up .venv-peers if needed, then time onnxplain against its peers (bench/peers/run.py).
# Extra arguments go to run.py (e.g. --runs 3 --only saliency,lime). Writes bench/peers/results.json and
# the "## Peers" section of bench/results.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash bench/peers/setup.sh
exec .venv/bin/python bench/peers/run.py "$@"
