#!/usr/bin/env bash
# kinds bench over trees alternated (base: .device/base, a: .device/a, head: this tree), the kinds'
# GPU tests on this tree, then W1/W3 bench base/head alternated.
set -u
S=$1; mkdir -p "$S"; ROOT=$PWD
one() {  # tree name timeout command...
    local t=$1 name=$2 limit=$3; shift 3
    local d=$ROOT; [[ $t != head ]] && d=$ROOT/.device/$t
    (cd "$d" && PYTHONPATH=/tmp/site:$d timeout "$limit" "$@" > "$S/$name.txt" 2>&1; echo "$name rc $? $(date +%T)" >> "$S/summary.txt")
}
for i in 1 2; do
    for t in base a head; do one $t kinds_$t$i 75 python -m genlab.bench.kinds --no-compile --repeats 20 --out "$S/kinds_$t$i.json"; done
done
one head kinds_tests 120 python -m pytest -m gpu -q -p no:cacheprovider tests/test_cuda_kinds.py
for i in 1 2; do
    for t in base head; do
        one $t bench_$t$i 70 python -m genlab bench --workload W1 --workload W3 --implementation genlab_level \
            --implementation genlab_dataflow_rows --out "$S/$t$i"
    done
done
