#!/usr/bin/env bash
# One GPU run for the precisions (genlab.precision): their GPU tests, the whole GPU suite, and the
# precision benchmark (W1-W3 in each precision against PyTorch in the same one). Logs and JSON go
# to $OUT (the device tool brings them back). Usage, on the GPU machine from the project's root:
#   source .device/setup.sh && bash benchmarks/precision_run.sh [pytest -k expression for the suite]
set -u
OUT=${OUT:-/tmp/precision_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
timeout 240 python -m pytest -m gpu -q -x -p no:cacheprovider tests/test_cuda_precision.py > "$OUT/precision_tests.txt" 2>&1
echo "precision tests rc $?" | tee -a "$OUT/summary.txt"
timeout 300 python -m pytest -m gpu -q -p no:cacheprovider tests ${1:+-k "$1"} > "$OUT/gpu_suite.txt" 2>&1
echo "gpu suite rc $?" | tee -a "$OUT/summary.txt"
tail -3 "$OUT/gpu_suite.txt" | tee -a "$OUT/summary.txt"
if [ "${BENCH:-1}" = 1 ]; then
  timeout 240 python -c "
import json, sys
from genlab.bench.precisions import run_precisions
from genlab.bench.report import environment
out = run_precisions(workloads=sys.argv[1].split(','), repeats=50, progress=lambda l: print(l, flush=True))
out['environment'] = environment()
json.dump(out, open(sys.argv[2], 'w'), indent=1)
" "${WORKLOADS:-W1,W2,W3}" "$OUT/precision.json" > "$OUT/bench.txt" 2>&1
  echo "bench rc $?" | tee -a "$OUT/summary.txt"
fi
