#!/usr/bin/env bash
# The wavefront kernels' first GPU run, in device calls of at most 10 minutes each:
#   suite   the wavefront's GPU tests, then the rest of the GPU suite
#   checks  their GPU tests, the kernel harness (every variant checked against BPTT, then timed
#           beside cuDNN), compute-sanitizer (memcheck, racecheck) on a few wavefront tests
#   bench   the recurrence bench on the targets' grid and the wide groups, `genlab train` on
#           digits_rows (serial, wavefront, unrolled), the engine x feature matrix and the
#           recurrent GPU tests
# Logs and JSON to $OUT. On the GPU machine:
#   source .device/setup.sh && bash benchmarks/wavefront_checks.sh checks
set -u
OUT=${OUT:-/tmp/wavefront_out}
source "$(dirname "$0")/checks_run.sh"  # run NAME SECONDS COMMAND...
part=${1:-checks}
if [ "$part" = suite ]; then  # the whole GPU suite (every executor against the serial engine), wavefront first
run wavefront_tests 150 python -m pytest -m gpu -x -q -p no:cacheprovider tests/test_cuda_wavefront.py
run gpu_suite 420 python -m pytest -m gpu -q -p no:cacheprovider tests --ignore tests/test_cuda_wavefront.py
elif [ "$part" = checks ]; then
run wavefront_tests 150 python -m pytest -m gpu -x -q -p no:cacheprovider tests/test_cuda_wavefront.py
run harness 200 python benchmarks/kernels/recurrence.py --json "$OUT/recurrence_kernels.json"
SUBSET="gradients_of_one_pass or (steps_match and stack and sgd and (auto or rows1))"
run memcheck 120 compute-sanitizer --tool memcheck --error-exitcode 3 python -m pytest -m gpu -q -p no:cacheprovider tests/test_cuda_wavefront.py -k "$SUBSET"
run racecheck 120 compute-sanitizer --tool racecheck --error-exitcode 3 python -m pytest -m gpu -q -p no:cacheprovider tests/test_cuda_wavefront.py -k "gradients_of_one_pass"
grep -h "ERROR SUMMARY\|RACECHECK SUMMARY" "$OUT"/memcheck.txt "$OUT"/racecheck.txt | sort | uniq -c | tee -a "$OUT/summary.txt"
else
run bench_targets 270 python -m genlab.bench.recurrence --shapes targets --executors wavefront --out "$OUT/recurrence_targets.json"
for engine in "--backend serial" "--backend cuda --executor wavefront" "--backend cuda --executor level"; do
  name=train_$(echo "$engine" | tr -c 'a-z' '_')  # genlab train's wall clock on digits_rows (the issue's target)
  run "$name" 90 python -m genlab train --dataset digits_rows --seed 0 --json --quiet $engine
done
run bench_wide 100 python -m genlab.bench.recurrence --shapes wide --executors wavefront,level --out "$OUT/recurrence_wide.json"
run matrix 200 python -m pytest -m gpu -q -p no:cacheprovider tests/test_engine_features.py tests/test_cuda_recurrence.py
fi
