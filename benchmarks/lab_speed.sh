#!/usr/bin/env bash
# The dashboard's speed as a student meets it: the live browser test (JupyterLab + headless
# Chromium) measures a Step click and Run N of 500 steps, and writes them here.
set -euo pipefail
cd "$(dirname "$0")/.."
GENLAB_LAB_TIMINGS=benchmarks/results/cpu/lab_speed.json python3 -m pytest -q -s tests/test_lab_live.py
