#!/bin/bash
# Growth events before and after a change, in one run on one GPU: W5 (`genlab bench --workload W5`,
# the event with the next step's extra) and profile_growth.py --phases for level and dataflow_rows,
# on this tree and on an older one, each with an empty executor cache (auto's trials on both).
#
#   git archive <base commit> | (mkdir -p benchmarks/scratch/base && tar -x -C benchmarks/scratch/base)
#   OUT=results_dir bash benchmarks/growth_before_after.sh [benchmarks/scratch/base]
#
# The older tree is measured with this tree's W5 code and profiler (genlab/bench/growth_run.py,
# targets.py, benchmarks/profile_growth.py are copied into it), so that both sides count the same.
# Writes $OUT/growth_{after,before}.json (W5's result) and $OUT/phases_<executor>_{after,before}.json.
set -u
root=$(pwd)
base=${1:-$root/benchmarks/scratch/base}
cp genlab/bench/growth_run.py genlab/bench/targets.py "$base/genlab/bench/"
cp benchmarks/profile_growth.py "$base/benchmarks/"
impls="--implementation genlab_level --implementation genlab_dataflow_rows --implementation genlab_auto"
impls="$impls --implementation torch_level_graph"
for side in after before; do
  tree=$root
  [ $side = before ] && tree=$base
  (
    cd "$tree" || exit 1
    export PYTHONPATH=${SITE:-/tmp/site}:$tree GENLAB_CACHE_DIR=/tmp/genlab_cache_$side
    python3 -m genlab bench --workload W5 $impls --out "/tmp/bench_$side" > "/tmp/w5_$side.log" 2>&1
    echo "$side: W5 exit $?"
    python3 -c "import json, sys; json.dump(json.load(open(sys.argv[1]))['workloads']['W5'], open(sys.argv[2], 'w'), indent=1)" \
      /tmp/bench_$side/*/details.json "$OUT/growth_$side.json"
    for executor in level dataflow_rows; do
      python3 benchmarks/profile_growth.py cuda $executor --phases --json "$OUT/phases_${executor}_$side.json" > /dev/null 2>&1
      echo "$side: profile $executor exit $?"
    done
  )
done
