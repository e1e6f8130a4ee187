#!/usr/bin/env bash
# The reference networks beside the growth study (genlab study): how far genlab's kinds reach on
# the real data with a plain chain of groups, one JSON line each appended to $1 (default
# references.jsonl). $2 picks a part: cpu (recurrent, serial engine, side by side), gpu (the rest,
# one at a time) or all (the default: both at once).
set -euo pipefail
out=${1:-references.jsonl}
part=${2:-all}
train() { python3 -m genlab train --quiet --json "$@" >> "$out"; }
if [ "$part" != gpu ]; then
  train --dataset mnist1d_rows --hidden 128 --epochs 100 --backend serial &
  train --dataset mnist1d_rows --hidden 64,64 --epochs 100 --backend serial &
fi
if [ "$part" != cpu ]; then
  train --dataset fashion_mnist --hidden 256,128 --epochs 20
  train --dataset fashion_mnist_images --kind conv --hidden 32,64 --epochs 10
  train --dataset mnist1d_images --kind conv --hidden 32,32,32 --epochs 60
fi
wait
