#!/usr/bin/env bash
# The deterministic output split (genlab/engines/cuda/executors/output_parts.py) on a GPU, in one
# device call: the GPU suite, memcheck and racecheck (release_checks.sh, PARTS="suite checks"),
# then the output's split-K timed on W1 and W3 (benchmarks/kernels/split_sweep.py, splits 8 and 2)
# for this tree and for a base tree whose output parts are added with atomics (201b4c1, the commit
# before). Logs and JSON to $OUT (all of it in output_split_check.tgz; the checks' in checks/).
# Before the call, here:
#   mkdir -p .device/base && git archive 201b4c1 genlab cuda benchmarks/kernels pyproject.toml | tar -x -C .device/base
# then, with carry [".device"]:
#   source .device/setup.sh && GENLAB_COMMIT=<hash> bash benchmarks/output_split_check.sh
set -u
OUT=${OUT:-/tmp/split_out}
export OUT
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/checks_run.sh"  # run NAME SECONDS COMMAND...
BASE=${BASE:-.device/base}
release_parts checks "suite checks"  # correctness first, into $OUT/checks: the timings may be cut short
(cd "$HERE/kernels" && run split_head 150 python split_sweep.py --splits 8 2 --workloads W1 W3 \
    --json "$OUT/split_head.json")
if [ -d "$BASE" ]; then
    BASE=$(cd "$BASE" && pwd)
    (cd "$BASE/benchmarks/kernels" && PYTHONPATH="/tmp/site:$BASE" GENLAB_COMMIT=201b4c1 timeout 150 python split_sweep.py \
        --splits 8 2 --workloads W1 W3 --json "$OUT/split_base.json") > "$OUT/split_base.txt" 2>&1
    echo "split_base rc $? $(tail -1 "$OUT/split_base.txt")" | tee -a "$OUT/summary.txt"
fi
pack output_split_check
