#!/usr/bin/env bash
# The wavefront's chunked hand-off (cuda/wavefront.cu: chunk buffers, WF_SELF_SMEM on) on one GPU
# in one device call: its GPU tests, racecheck and memcheck on one pass, the kernel harness's
# variants (each checked against BPTT, then timed beside cuDNN), the recurrence targets' grid,
# digits_rows trained serial and on the wavefront, and the output split's repeat test (its first
# run, at 26dbd90, also timed the split's atomic base: output_split/). Logs and JSON to $OUT.
#   source .device/setup.sh && GENLAB_COMMIT=<hash> bash benchmarks/wavefront_chunk_checks.sh
set -u
OUT=${OUT:-/tmp/chunk_out}
source "$(dirname "$0")/checks_run.sh"  # run NAME SECONDS COMMAND...
echo "${GENLAB_COMMIT:-$(git rev-parse HEAD 2>/dev/null)}" > "$OUT/commit.txt"
run wavefront_tests 120 python -m pytest -m gpu -q -p no:cacheprovider tests/test_cuda_wavefront.py
run racecheck 60 compute-sanitizer --tool racecheck --error-exitcode 3 python -m pytest -m gpu -q -p no:cacheprovider \
    tests/test_cuda_wavefront.py -k "gradients_of_one_pass"
run memcheck 50 compute-sanitizer --tool memcheck --error-exitcode 3 python -m pytest -m gpu -q -p no:cacheprovider \
    tests/test_cuda_wavefront.py -k "gradients_of_one_pass"
run repeats 40 python -m pytest -m gpu -q -p no:cacheprovider tests/test_cuda_engine.py -k repeats_bit_for_bit
run harness 150 python benchmarks/kernels/recurrence.py --quick --variants "${VARIANTS:-1,8,13,14,15}" --json "$OUT/recurrence_kernels.json"
run bench_targets 110 python -m genlab.bench.recurrence --shapes targets --executors wavefront --out "$OUT/recurrence_targets.json"
run train_serial 20 python -m genlab train --dataset digits_rows --seed 0 --json --quiet --backend serial
run train_wavefront 30 python -m genlab train --dataset digits_rows --seed 0 --json --quiet --backend cuda --executor wavefront
(cd "$OUT" && tar czf chunk_checks.tgz --exclude "*.tgz" ./*)
