#!/usr/bin/env bash
# Conv and attention items (cuda/conv.cu, cuda/attention.cu) in one device call of at most 10
# minutes: the kinds bench on a base tree (BASE, a checkout of the commit before the change, when
# given) and on this one, the numbered variants of benchmarks/kernels/kinds_variants.py (each
# checked against the float64 serial engine before it is timed), the kinds' GPU tests and
# compute-sanitizer memcheck and racecheck on them, then the rest of the GPU suite. Logs and JSON
# to $OUT. On the GPU machine:
#   source .device/setup.sh && BASE=base_tree bash benchmarks/kinds_checks.sh
set -u
OUT=${OUT:-/tmp/kinds_out}
source "$(dirname "$0")/checks_run.sh"  # run NAME SECONDS COMMAND...
if [ -n "${BASE:-}" ]; then
    (cd "$BASE" && PYTHONPATH="$PWD:${PYTHONPATH:-}" timeout 240 python -m genlab.bench.kinds --repeats 20 \
        --out "$OUT/kinds_base.json") > "$OUT/kinds_base.log" 2>&1  # (trees before 21a6d1f have no --no-compile)
fi
run kinds_new 120 python -m genlab.bench.kinds --no-compile --repeats 20 --out "$OUT/kinds_new.json"
(cd benchmarks/kernels && timeout 200 python kinds_variants.py --json "$OUT/kinds_variants.json") > "$OUT/kinds_variants.log" 2>&1
run kinds_tests 90 python -m pytest -m gpu -q -p no:cacheprovider tests/test_cuda_kinds.py
run memcheck 60 compute-sanitizer --tool memcheck --error-exitcode 3 python -m pytest -m gpu -q -p no:cacheprovider tests/test_cuda_kinds.py -k "several_samples and 0-3 or statistics and random_image_net-1"
run racecheck 60 compute-sanitizer --tool racecheck --error-exitcode 3 python -m pytest -m gpu -q -p no:cacheprovider tests/test_cuda_kinds.py -k "several_samples and 0-3 or statistics and random_image_net-1"
grep -h "ERROR SUMMARY\|RACECHECK SUMMARY" "$OUT"/memcheck.txt "$OUT"/racecheck.txt | sort | uniq -c | tee -a "$OUT/summary.txt"
run gpu_suite 200 python -m pytest -m gpu -q -p no:cacheprovider tests --ignore=tests/test_cuda_kinds.py
