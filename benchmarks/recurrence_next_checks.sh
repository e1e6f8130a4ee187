#!/usr/bin/env bash
# The wavefront's next GPU call (benchmarks/NOTES.md, recurrence v2, fourth round, "Next"): the
# product's builds not yet timed (WF_CHAINS, WF_SPLIT_K: harness variants 22-24, each checked
# against BPTT before it is timed) beside the default, the wide groups (hidden 256-1024) on this
# kernel, then the engine's shape sweep against PyTorch's level graph (the engine speed issue's
# last unmeasured target), each part within its limit so that the call fits 10 minutes. Logs
# and JSON to $OUT.
#   source .device/setup.sh && GENLAB_COMMIT=<hash> bash benchmarks/recurrence_next_checks.sh
# Then make the winning build the default and run wavefront_chunk_checks.sh (tests, sanitizers,
# targets, digits_rows) on it.
set -u
OUT=${OUT:-/tmp/recurrence_next}
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/checks_run.sh"  # run NAME SECONDS COMMAND...
echo "${GENLAB_COMMIT:-$(git rev-parse HEAD 2>/dev/null)}" > "$OUT/commit.txt"
run harness 170 python "$HERE/kernels/recurrence.py" --quick --variants 1,22,23,24 --json "$OUT/recurrence_kernels.json"
run bench_wide 90 python -m genlab.bench.recurrence --shapes wide --executors wavefront --out "$OUT/recurrence_wide.json"
run sweep 270 python -m genlab bench --workload sweep --out "$OUT/sweep"
pack recurrence_next
