"""Synthetic gradients against the synchronous partitioned run: time a step on two processes.

A pipeline partition of an MLP over the processes of a torchrun (gloo between CPU processes,
NCCL between GPUs); the synchronous run waits at the cut for the later process's dL/dh, DNI and
cDNI do not (genlab.distributed.synthetic). Each is timed over `--steps` steps after `--warmup`,
on random normal inputs; the first process writes the medians and the ratios as JSON.

    torchrun --standalone --nproc-per-node 2 benchmarks/dni_partitioned.py --out dni_partitioned.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

import genlab
from genlab.distributed import World


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", default="512,512,512,512,512,512")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--micro-batches", default="1,4")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    world = World.start()
    hidden = [int(h) for h in a.hidden.split(",")]
    net = genlab.Network.mlp([784, *hidden, 10], seed=0)
    rng = np.random.default_rng(1)  # the same data on every process
    X = rng.normal(size=(a.batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, a.batch)
    out = {"micro_batches": "runs' keys", "hidden": hidden, "batch": a.batch, "processes": world.size, "backend": world.backend,
           "threads_per_process": os.environ.get("OMP_NUM_THREADS"), "machine": platform.node(), "runs": {}}
    from genlab.distributed.partitioned import Partitioned

    for micro in map(int, a.micro_batches.split(",")):
        Partitioned.micro_batches = micro
        runs = out["runs"][str(micro)] = {}
        for name, dec in (("synchronous", None), ("dni", genlab.DNI()), ("cdni", genlab.DNI(conditioned=True))):
            t = genlab.Trainer(net.copy(), backend="serial", distributed="partitioned", world=world, decouple=dec,
                               optimizer="sgd", lr=0.01)
            times = []
            for i in range(a.warmup + a.steps):
                world.sum(np.zeros(1))  # start every step together
                start = time.perf_counter()
                t.step(X, y)
                times.append(time.perf_counter() - start)
            slowest = np.array(times[a.warmup:])
            world.max(slowest)  # a step lasts until its slowest process is done
            runs[name] = {"median_ms": 1e3 * float(np.median(slowest)),
                          "cut_edges": len(t.engine.partition.cut_edges)}
        for r in runs.values():
            r["speedup"] = runs["synchronous"]["median_ms"] / r["median_ms"]
    if world.rank == 0:
        print(json.dumps(out["runs"], indent=1))
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
