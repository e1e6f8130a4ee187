#!/usr/bin/env bash
# The reference networks beside the growth study (genlab study): how far genlab's kinds reach on
# the real data with a plain chain of groups, one JSON line each into $1 (default references.jsonl).
# The CPU runs (serial engine) go in the background beside the GPU ones.
set -euo pipefail
out=${1:-references.jsonl}
: > "$out"
train() { python3 -m genlab train --quiet --json "$@" >> "$out"; }
train --dataset mnist1d_rows --hidden 128 --epochs 100 --backend serial &
train --dataset mnist1d_rows --hidden 64,64 --epochs 100 --backend serial &
train --dataset fashion_mnist --hidden 256,128 --epochs 20
train --dataset fashion_mnist_images --kind conv --hidden 32,64 --epochs 10
train --dataset mnist1d_images --kind conv --hidden 32,32,32 --epochs 60
wait
