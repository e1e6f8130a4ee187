#!/usr/bin/env bash
# The level executor's 64 x 64 tier on W3 in one device call (a few minutes): each variant of
# benchmarks/kernels/level_step.py checked against the float64 serial engine (--check), then
# timed as a replayed step graph, beside the build as it is and, when BASE is given (a checkout of
# an earlier commit: `git archive REV genlab cuda pyproject.toml benchmarks`), that tree. The
# variants are the ones NOTES.md's seventh round left ready, and the 64 x 64 tier's stages of
# 32 values of k (MID_WK) with and without the 128-register budget of 2 blocks an SM
# (MID_BLOCKS). Output to $OUT/w3_variants.txt, a variant at a time (the likeliest first).
#   source .device/setup.sh && BASE=base_tree bash benchmarks/w3_variants.sh
set -u
OUT=${OUT:-/tmp/w3_out}
mkdir -p "$OUT"
T="$OUT/w3_variants.txt"
STEP=benchmarks/kernels/level_step.py
if [ -n "${BASE:-}" ]; then
    (cd "$BASE" && PYTHONPATH="$PWD:${PYTHONPATH:-}" timeout 120 python "$STEP" W3 --time) >> "$T" 2>&1
fi
for variant in "" "--define MID_WK=32" "--define MID_WK=32 --define MID_BLOCKS=2" "--split-tiles 2" \
        "--define MID_BLOCKS=2" "--define EDGE_TABLE=0" "--parts 1" "--define MID_ACROSS=0"; do
    timeout 150 python "$STEP" W3 --check --time $variant 2>&1 | grep -v "^  ok " >> "$T"
done
cat "$T"
