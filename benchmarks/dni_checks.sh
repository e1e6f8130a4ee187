#!/usr/bin/env bash
# Synthetic gradients on the CUDA engine (cuda/dni.cu; genlab/engines/cuda/decoupled.py and
# pipelined.py) in one device call of at most 10 minutes: the GPU tests against the serial DNI
# engines, compute-sanitizer (memcheck; racecheck: the parts run side by side on their own
# streams) and the step times (benchmarks/dni_gpu.py). Logs and JSON to $OUT. On the GPU machine:
#   source .device/setup.sh && bash benchmarks/dni_checks.sh
# The accuracy runs on the GPU: python benchmarks/dni.py --backend cuda --datasets digits --epochs 20
set -u
OUT=${OUT:-/tmp/dni_out}
source "$(dirname "$0")/checks_run.sh"  # run NAME SECONDS COMMAND...
run dni_tests 150 python -m pytest -m gpu -q -p no:cacheprovider tests/test_dni_cuda.py tests/test_dni_pipeline.py
run memcheck 90 compute-sanitizer --tool memcheck --error-exitcode 3 python -m pytest -m gpu -q -p no:cacheprovider tests/test_dni_cuda.py tests/test_dni_pipeline.py -k "skipping and True and adam"
run racecheck 120 compute-sanitizer --tool racecheck --error-exitcode 3 python -m pytest -m gpu -q -p no:cacheprovider tests/test_dni_cuda.py tests/test_dni_pipeline.py -k "skipping and True and adam"
grep -h "ERROR SUMMARY\|RACECHECK SUMMARY" "$OUT"/memcheck.txt "$OUT"/racecheck.txt | sort | uniq -c | tee -a "$OUT/summary.txt"
run step_times 200 python benchmarks/dni_gpu.py --repeats 100 --out "$OUT/dni_gpu.json"
