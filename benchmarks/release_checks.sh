#!/usr/bin/env bash
# The engine's closing checks on one GPU, in parts that each fit one device call of 10 minutes:
#   suite  the GPU suite (every executor and precision against the serial engine)
#   checks compute-sanitizer memcheck and racecheck (memcheck: memcheck alone) over the kernels'
#          representative tests: every
#          executor's forward, backward and statistics on the mid and wide tiers, the row
#          executor's deferred update, many Adam steps, growth on the GPU
#   bench  genlab bench over W1-W5 and the classroom network, every implementation in one run
#          (W5: level, dataflow_rows and PyTorch's level graph), results in $OUT/results/<device>/
#   extra  genlab bench's shape sweep and precisions, in a run of their own ($OUT/extra/<device>/)
# Logs to $OUT, each part's status in $OUT/summary.txt, and all of it in $OUT/release_checks.tgz (the
# loose files are removed then: KEEP=1 keeps them, checks_run.sh's pack).
# On the GPU machine:
#   source .device/setup.sh && GENLAB_COMMIT=<hash> PARTS="suite checks" bash benchmarks/release_checks.sh
# A part cut short by its limit keeps the workloads it finished; the parts' folders make one
# report with `python -m genlab.bench.merge OUT FOLDER...` (genlab/bench/merge.py).
set -u
OUT=${OUT:-/tmp/release_out}
source "$(dirname "$0")/checks_run.sh"  # run NAME SECONDS COMMAND...
PARTS=${PARTS:-suite checks bench}
echo "${GENLAB_COMMIT:-$(git rev-parse HEAD 2>/dev/null)}" > "$OUT/commit.txt"  # GENLAB_COMMIT: a tree copied without its history
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >> "$OUT/commit.txt" 2>/dev/null || true
ENGINE="tests/test_cuda_engine.py"
SANITIZED="(forward_backward_and_statistics_match_serial and (case6 or case7)) or deferred_update_once \
or update_at_the_end or fifty_adam or growth_on_the_gpu_matches_serial or repeats_bit_for_bit"
if [[ " $PARTS " == *" suite "* ]]; then
    run gpu_suite 320 python -m pytest -m gpu -q -p no:cacheprovider tests
fi
if [[ " $PARTS " == *" checks "* || " $PARTS " == *" memcheck "* ]]; then
    run memcheck 200 compute-sanitizer --tool memcheck --error-exitcode 3 python -m pytest -m gpu -q \
        -p no:cacheprovider "$ENGINE" -k "$SANITIZED"
fi
if [[ " $PARTS " == *" checks "* ]]; then
    run racecheck 200 compute-sanitizer --tool racecheck --error-exitcode 3 python -m pytest -m gpu -q \
        -p no:cacheprovider "$ENGINE" -k "(forward_backward_and_statistics_match_serial and case7 and (level-0 or dataflow_rows-0)) \
or deferred_update_once or update_at_the_end or (repeats_bit_for_bit and dataflow)"
fi
if [[ " $PARTS " == *" checks "* || " $PARTS " == *" memcheck "* ]]; then
    grep -h "ERROR SUMMARY\|RACECHECK SUMMARY\|passed\|failed" "$OUT"/memcheck.txt "$OUT"/racecheck.txt 2>/dev/null \
        | tee -a "$OUT/summary.txt"
fi
if [[ " $PARTS " == *" bench "* ]]; then
    run bench 560 python -m genlab bench --workload W1 --workload W2 --workload W3 --workload W4 --workload W5 \
        --workload small --growth-implementation genlab_level --growth-implementation genlab_dataflow_rows \
        --growth-implementation torch_level_graph --out "$OUT/results"
fi
if [[ " $PARTS " == *" extra "* ]]; then
    run extra 560 python -m genlab bench --workload sweep --workload precision --out "$OUT/extra"
fi
pack release_checks
