#!/usr/bin/env bash
# Creates .venv-peers (torch 2.13.0 CPU, Captum, pytorch-grad-cam, LIME) for bench/peers/run.py. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-peers
STAMP=$VENV/.installed
if [[ -f $STAMP && $STAMP -nt bench/peers/requirements.txt ]]; then exit 0; fi
test -x $VENV/bin/python || python3.11 -m venv $VENV
$VENV/bin/pip install -q -r bench/peers/requirements.txt
$VENV/bin/pip install -q --no-deps -r bench/peers/requirements-nodeps.txt
touch $STAMP
