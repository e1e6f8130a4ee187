"""Data-parallel steps of the serial engine over CPU processes (gloo), against one process on the
whole batch: how much of the gradients' sum the bucketed overlap hides (genlab.engines.buckets).

    OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 benchmarks/data_parallel_cpu.py \\
        [--widths 784,1024,1024,1024,10] [--batch 256] [--steps 20] [--json out.json]

Each process has one thread (OMP_NUM_THREADS=1), so two processes need two cores. Variants: the
bucket sizes given (MiB; a size above the gradients' is one sum after the backward, no overlap),
each timed as the median of --steps steps after two warm-up steps, a step's time the slower
process's; the one-process time is process 0 on the whole batch while the others wait. On a tree
without buckets the variants are one run of its own sums.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from genlab import Network
from genlab.distributed import World
from genlab.engines import SerialEngine
from genlab.optim import SGD


def median_ms(world: World | None, step, steps: int) -> float:
    times = []
    for i in range(steps + 2):
        if world is not None:
            world.sum(np.zeros(1))  # start together
        t = time.perf_counter()
        step()
        ms = np.array([(time.perf_counter() - t) * 1e3])
        if world is not None:
            world.max(ms)
        if i >= 2:
            times.append(float(ms[0]))
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="784,1024,1024,1024,10")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--buckets", default="1048576,25,4,1", help="MiB per bucket, one variant each")
    parser.add_argument("--json")
    args = parser.parse_args()
    world = World.start("gloo")
    widths = [int(w) for w in args.widths.split(",")]
    net = Network.mlp(widths, seed=0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, widths[0])).astype(np.float32)
    y = rng.integers(0, widths[-1], args.batch)
    part = world.slice(args.batch)
    share = world.share(part.stop - part.start, args.batch)
    params = sum(w.size for w in net.weights.values()) + sum(b.size for b in net.biases.values())

    one = np.zeros(1)
    if world.rank == 0:
        alone = SerialEngine(net.copy(), SGD(lr=0.01))
        one[0] = median_ms(None, lambda: alone.step(x, y), args.steps)
    world.broadcast(one, 0)

    results = {}
    bucketed = hasattr(share, "bucket_bytes") and hasattr(share, "start_sum")
    for mb in (args.buckets.split(",") if bucketed else ["(the tree's own sums)"]):
        engine = SerialEngine(net.copy(), SGD(lr=0.01))
        if bucketed:
            share.bucket_bytes = int(float(mb) * 2**20)
        results[mb] = median_ms(world, lambda: engine.step(x[part], y[part], share), args.steps)

    flat = np.empty(params, np.float32)
    flat[:] = 1.0
    allreduce = median_ms(world, lambda: world.sum(flat), args.steps)
    if world.rank == 0:
        report = {"processes": world.size, "widths": widths, "batch": args.batch, "parameters": int(params),
                  "gradient_mb": 4 * params / 2**20, "threads_per_process": os.environ.get("OMP_NUM_THREADS"),
                  "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                  "one_process_ms": float(one[0]), "data_parallel_ms": results,
                  "speedup": {k: float(one[0]) / v for k, v in results.items()}, "allreduce_ms": allreduce}
        print(json.dumps(report, indent=1))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=1)
    world.close()


if __name__ == "__main__":
    main()
