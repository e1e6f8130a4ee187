#!/usr/bin/env bash
# The precisions' GPU checks: their tests, the whole GPU suite, and compute-sanitizer (memcheck,
# racecheck) on a subset of the precision tests. Logs to $OUT. On the GPU machine:
#   source .device/setup.sh && bash benchmarks/precision_checks.sh
set -u
OUT=${OUT:-/tmp/precision_out}
source "$(dirname "$0")/checks_run.sh"  # run NAME SECONDS COMMAND...
run precision_tests 200 python -m pytest -m gpu -q -p no:cacheprovider tests/test_cuda_precision.py
run gpu_suite 240 python -m pytest -m gpu -q -p no:cacheprovider tests --deselect tests/test_cuda_precision.py
SUBSET="whole_steps or (one_product and 300) or (same_precision and case1 and (level- or dataflow-))"
run memcheck 150 compute-sanitizer --tool memcheck --error-exitcode 3 python -m pytest -m gpu -q -p no:cacheprovider tests/test_cuda_precision.py -k "$SUBSET"
run racecheck 150 compute-sanitizer --tool racecheck --error-exitcode 3 python -m pytest -m gpu -q -p no:cacheprovider tests/test_cuda_precision.py -k "whole_steps or (one_product and 300 and level-)"
grep -h "ERROR SUMMARY\|RACECHECK SUMMARY" "$OUT"/memcheck.txt "$OUT"/racecheck.txt | sort | uniq -c | tee -a "$OUT/summary.txt"
