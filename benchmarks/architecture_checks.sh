#!/usr/bin/env bash
# The import and registry changes of the architecture work on one GPU in one device call: the
# GPU suite on this tree, then `genlab bench` of W1, W3 and W5 (growth) with the executors the
# workloads choose, on this tree and on the base tree before the change (.device/base: `git
# archive <base> | tar -x -C .device/base`), one after the other on the same machine. Logs and
# JSON to $OUT.
#   source .device/setup.sh && GENLAB_COMMIT=<hash> BASE_COMMIT=<hash> bash benchmarks/architecture_checks.sh
set -u
OUT=${OUT:-/tmp/architecture_out}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
source "$HERE/checks_run.sh"  # run NAME SECONDS COMMAND...
echo "${GENLAB_COMMIT:-unknown} base ${BASE_COMMIT:-unknown}" > "$OUT/commit.txt"
run gpu_suite 300 python -m pytest -m gpu -q -p no:cacheprovider tests
BENCH=(--workload W1 --workload W3 --workload W5 --implementation genlab_level --implementation genlab_dataflow_rows
       --implementation torch_level_graph --growth-implementation genlab_level --growth-implementation genlab_dataflow_rows)
run bench_head 150 python -m genlab bench "${BENCH[@]}" --out "$OUT/head"
(cd "$ROOT/.device/base" && GENLAB_COMMIT=${BASE_COMMIT:-base} PYTHONPATH=/tmp/site:$PWD \
  timeout 150 python -m genlab bench "${BENCH[@]}" --out "$OUT/base" > "$OUT/bench_base.txt" 2>&1; \
  echo "bench_base rc $? $(tail -1 "$OUT/bench_base.txt")" | tee -a "$OUT/summary.txt")
pack architecture_checks
