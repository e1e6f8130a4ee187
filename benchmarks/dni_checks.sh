#!/usr/bin/env bash
# Synthetic gradients on the CUDA engine (cuda/dni.cu, genlab/engines/cuda/decoupled.py), its
# first GPU run in one device call of at most 10 minutes: the GPU tests against the serial DNI
# engine, compute-sanitizer (memcheck; racecheck: the parts' backwards run side by side on their
# own streams), the step times (benchmarks/dni_gpu.py) and the accuracy runs on the GPU
# (benchmarks/dni.py --backend cuda). Logs and JSON to $OUT. On the GPU machine:
#   source .device/setup.sh && bash benchmarks/dni_checks.sh
set -u
OUT=${OUT:-/tmp/dni_out}
source "$(dirname "$0")/checks_run.sh"  # run NAME SECONDS COMMAND...
run dni_tests 120 python -m pytest -m gpu -q -p no:cacheprovider tests/test_dni_cuda.py
run memcheck 90 compute-sanitizer --tool memcheck --error-exitcode 3 python -m pytest -m gpu -q -p no:cacheprovider tests/test_dni_cuda.py -k "skipping and True and adam"
run racecheck 90 compute-sanitizer --tool racecheck --error-exitcode 3 python -m pytest -m gpu -q -p no:cacheprovider tests/test_dni_cuda.py -k "skipping and True and adam"
grep -h "ERROR SUMMARY\|RACECHECK SUMMARY" "$OUT"/memcheck.txt "$OUT"/racecheck.txt | sort | uniq -c | tee -a "$OUT/summary.txt"
run step_times 150 python benchmarks/dni_gpu.py --out "$OUT/dni_gpu.json"
run accuracy 150 python benchmarks/dni.py --backend cuda --epochs 20,3 --out "$OUT/dni_cuda.json"
