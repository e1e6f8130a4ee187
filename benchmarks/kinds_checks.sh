#!/usr/bin/env bash
# Conv and attention items (cuda/conv.cu, cuda/attention.cu) in one device call of at most 10
# minutes: the kinds bench on a base tree (BASE, a checkout of the commit before the change, when
# given: `git archive REV genlab cuda pyproject.toml benchmarks`) and on this one, the numbered
# variants of benchmarks/kernels/kinds_variants.py on both (VARIANTS, all when not given; each
# checked against the float64 serial engine before it is timed), the kinds' GPU tests and
# compute-sanitizer memcheck and racecheck on them, then the rest of the GPU suite. Logs and JSON
# to $OUT. On the GPU machine:
#   source .device/setup.sh && BASE=base_tree VARIANTS="20 21 22" BASE_VARIANTS=21 bash benchmarks/kinds_checks.sh
# PARTS (default "bench checks suite") runs a part of it: the benches and variants, the kinds' GPU
# tests and sanitizers, the rest of the GPU suite. Every file it writes goes into $OUT/kinds_checks.tgz
# too (the device tool brings back a few files a call).
set -u
OUT=${OUT:-/tmp/kinds_out}
source "$(dirname "$0")/checks_run.sh"  # run NAME SECONDS COMMAND...
VARIANTS=${VARIANTS:-} BASE_VARIANTS=${BASE_VARIANTS:-$VARIANTS} PARTS=${PARTS:-bench checks suite}
SANITIZED="several_samples and 0-3 or statistics and random_image_net-1 or staged_conv_backward and (0 or 3) or two_grids"
if [[ " $PARTS " == *" bench "* ]]; then
    if [ -n "${BASE:-}" ]; then
        BASE=$(cd "$BASE" && pwd)
        (cd "$BASE" && PYTHONPATH="$BASE:${PYTHONPATH:-}" timeout 120 python -m genlab.bench.kinds --no-compile \
            --repeats 20 --out "$OUT/kinds_base.json") > "$OUT/kinds_base.log" 2>&1
        (cd "$BASE/benchmarks/kernels" && PYTHONPATH="$BASE:${PYTHONPATH:-}" timeout 200 python kinds_variants.py \
            ${BASE_VARIANTS:+--variants $BASE_VARIANTS} --json "$OUT/kinds_variants_base.json") \
            > "$OUT/kinds_variants_base.log" 2>&1
    fi
    run kinds_new 120 python -m genlab.bench.kinds --no-compile --repeats 20 --out "$OUT/kinds_new.json"
    (cd benchmarks/kernels && timeout 200 python kinds_variants.py ${VARIANTS:+--variants $VARIANTS} \
        --json "$OUT/kinds_variants.json") > "$OUT/kinds_variants.log" 2>&1
fi
if [[ " $PARTS " == *" checks "* ]]; then
    run kinds_tests 90 python -m pytest -m gpu -q -p no:cacheprovider tests/test_cuda_kinds.py
    run memcheck 90 compute-sanitizer --tool memcheck --error-exitcode 3 python -m pytest -m gpu -q -p no:cacheprovider \
        tests/test_cuda_kinds.py -k "$SANITIZED"
    run racecheck 120 compute-sanitizer --tool racecheck --error-exitcode 3 python -m pytest -m gpu -q -p no:cacheprovider \
        tests/test_cuda_kinds.py -k "$SANITIZED"
    grep -h "ERROR SUMMARY\|RACECHECK SUMMARY" "$OUT"/memcheck.txt "$OUT"/racecheck.txt | sort | uniq -c | tee -a "$OUT/summary.txt"
fi
if [[ " $PARTS " == *" suite "* ]]; then
    run gpu_suite 300 python -m pytest -m gpu -q -p no:cacheprovider tests --ignore=tests/test_cuda_kinds.py
fi
pack kinds_checks
