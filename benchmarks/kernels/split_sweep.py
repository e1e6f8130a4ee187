"""The output group's split-K (SPLIT: in-edges a forward task of the output group) per executor:
each value checked on a random DAG against the float64 serial engine, then W1-W3's step graphs
timed on every executor that reads it, so that each executor can take its own (Executor.split).

    python benchmarks/kernels/split_sweep.py [--splits 2 4 8] [--json out.json]

The seventh round found the level executor's output forward on W3 at 31.6 us with SPLIT 8 and
13.8 us with 2 (`step_kernels.py --split`); SPLIT was left alone because the dataflow and row
executors read it too; each executor now has its own. Exit status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import harness
from genlab.bench import WORKLOADS, batch_of, time_graph
from genlab.engines.cuda import CudaEngine
from genlab.optim import Adam

TIMED = ("level", "level_batch", "dataflow", "dataflow_rows")


def step_us(name: str, executor: str) -> float:
    net = WORKLOADS[name][1]()
    x, y = batch_of(net, WORKLOADS[name][2])
    engine = CudaEngine(net, Adam(1e-4), executor=executor)
    for _ in range(3):
        engine.step(x, y)
    n = engine.put_batch(x, y)
    return float(np.median([time_graph(engine, lambda: engine.executor.enqueue_step(n), 200, warmup=20)
                            for _ in range(3)]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--splits", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--workloads", nargs="+", default=["W1", "W2", "W3"])
    p.add_argument("--json")
    a = p.parse_args()
    results = []
    for split in a.splits:
        harness.use_split(split)
        for executor in TIMED:
            gpu, _, ok = harness.check_steps(executor)
            print(f"SPLIT {split} {executor}: check {'ok' if ok else 'FAILED'} "
                  f"(output fan-in {gpu.layout.output_fan_in})", flush=True)
            for name in a.workloads:
                us = step_us(name, executor)
                results.append({"split": split, "executor": executor, "workload": name, "step_us": us, "check": ok})
                print(f"  {name}: {us:.1f} us a step", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    raise SystemExit(1 if harness.done() else 0)


if __name__ == "__main__":
    main()
