#!/usr/bin/env bash
# wide.cu's tiles (the level executors' 64 x 64 and 128 x 128 tiers) in one device call of at most
# 10 minutes: each kernel's device time a step (benchmarks/kernels/step_kernels.py) on W3 and W4
# for a base tree (BASE: `git archive REV genlab cuda pyproject.toml benchmarks`) and this one,
# the output group's split (SPLITS: values of SPLIT to try), genlab bench on W3 beside PyTorch's
# level graph, then the GPU suite and compute-sanitizer memcheck and racecheck on the tiers'
# tests. Logs and JSON to $OUT, and all of it in $OUT/wide_checks.tgz. On the GPU machine:
#   source .device/setup.sh && BASE=base_tree SPLITS="2 4" bash benchmarks/wide_checks.sh
# PARTS (default "bench checks suite") runs a part of it.
set -u
OUT=${OUT:-/tmp/wide_out}
source "$(dirname "$0")/checks_run.sh"  # run NAME SECONDS COMMAND...
PARTS=${PARTS:-bench checks suite} WORKLOADS=${WORKLOADS:-W3 W4}
SANITIZED="forward_backward_and_statistics_match_serial and level- and (case6 or case7)"
if [[ " $PARTS " == *" bench "* ]]; then
    if [ -n "${BASE:-}" ]; then
        BASE=$(cd "$BASE" && pwd)
        (cd "$BASE" && PYTHONPATH="$BASE:${PYTHONPATH:-}" timeout 150 python benchmarks/kernels/step_kernels.py $WORKLOADS \
            --json "$OUT/step_kernels_base.json") > "$OUT/step_kernels_base.txt" 2>&1
    fi
    run step_kernels 150 python benchmarks/kernels/step_kernels.py $WORKLOADS --json "$OUT/step_kernels.json"
    for split in ${SPLITS:-}; do
        run step_kernels_split$split 60 python benchmarks/kernels/step_kernels.py W3 --split "$split" \
            --json "$OUT/step_kernels_split$split.json"
    done
    if [ -n "${BASE:-}" ]; then
        (cd "$BASE" && PYTHONPATH="$BASE:${PYTHONPATH:-}" timeout 120 python -m genlab bench --workload W3 \
            --implementation genlab_level --implementation torch_level_graph --repeats 100 --out "$OUT/bench_base") \
            > "$OUT/bench_base.txt" 2>&1
    fi
    run bench 150 python -m genlab bench --workload W3 --implementation genlab_level --implementation genlab_auto \
        --implementation torch_level_graph --repeats 100 --out "$OUT/bench"
fi
if [[ " $PARTS " == *" checks "* ]]; then
    run memcheck 150 compute-sanitizer --tool memcheck --error-exitcode 3 python -m pytest -m gpu -q -p no:cacheprovider \
        tests/test_cuda_engine.py -k "$SANITIZED"
    run racecheck 150 compute-sanitizer --tool racecheck --error-exitcode 3 python -m pytest -m gpu -q -p no:cacheprovider \
        tests/test_cuda_engine.py -k "$SANITIZED"
    grep -h "ERROR SUMMARY\|RACECHECK SUMMARY\|passed\|failed" "$OUT"/memcheck.txt "$OUT"/racecheck.txt | sort | uniq -c \
        | tee -a "$OUT/summary.txt"
fi
if [[ " $PARTS " == *" suite "* ]]; then
    run gpu_suite 300 python -m pytest -m gpu -q -p no:cacheprovider tests
fi
(cd "$OUT" && tar czf wide_checks.tgz --exclude wide_checks.tgz ./*)
