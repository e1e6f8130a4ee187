"""Each kernel's share of one training step: a workload's step enqueued eagerly (not as a graph)
under torch.profiler, whose CUPTI trace also sees PyCUDA's kernels (one primary context), then
the device time a step of every kernel name (sum over its launches), its launches a step, and the
step's span on the device (first kernel start to last kernel end, gaps included).

    python benchmarks/kernels/step_kernels.py W3 --executor level --json out.json

Device time only: the gaps between kernels (launch latency when eager) are the span minus the
sum; in a CUDA graph they shrink to ~0.5-1 us each.
"""

import argparse
import collections
import json

import numpy as np

from genlab.bench import WORKLOADS
from genlab.engines.cuda import CudaEngine
from genlab.optim import Adam


def profile(name: str, executor: str, steps: int = 20) -> dict:
    import pycuda.driver as drv
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    _, build, batch = WORKLOADS[name]
    net = build()
    rng = np.random.default_rng(0)
    engine = CudaEngine(net, Adam(), executor=executor)
    x, y = rng.normal(size=(batch, net.n_inputs)).astype(np.float32), rng.integers(0, net.n_outputs, batch)
    engine.step(x, y)  # buffers, labels, compiled kernels
    for _ in range(3):
        engine.executor.enqueue_step(batch)
    drv.Context.synchronize()
    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            engine.executor.enqueue_step(batch)
        drv.Context.synchronize()
        torch.cuda.synchronize()
    total, count = collections.Counter(), collections.Counter()
    starts, ends = [], []
    for ev in prof.events():
        if ev.device_type.name != "CUDA":
            continue
        total[ev.name] += ev.device_time if hasattr(ev, "device_time") else ev.cuda_time
        count[ev.name] += 1
        starts.append(ev.time_range.start)
        ends.append(ev.time_range.end)
    span = (max(ends) - min(starts)) / steps if starts else 0.0
    kernels = {k: {"us_a_step": total[k] / steps, "launches_a_step": count[k] / steps}
               for k, _ in total.most_common()}
    return {"workload": name, "executor": executor,
            "groups": len(engine.layout.groups), "levels": len(engine.layout.forward_levels),
            "span_us_a_step": span, "kernel_us_a_step": sum(v["us_a_step"] for v in kernels.values()),
            "kernels": kernels}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workloads", nargs="+")
    p.add_argument("--executor", action="append", default=None, help="repeatable; default level")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--split", type=int, help="in-edges a forward task of the output group (SPLIT; a variant)")
    p.add_argument("--json")
    a = p.parse_args()
    if a.split:
        from harness import use_split

        use_split(a.split)
    results = []
    for name in a.workloads:
        for executor in a.executor or ["level"]:
            r = profile(name, executor, a.steps)
            r["split"] = a.split or None
            results.append(r)
            print(f"{name} {executor}: span {r['span_us_a_step']:.1f} us a step, kernels {r['kernel_us_a_step']:.1f} us")
            for k, v in r["kernels"].items():
                print(f"  {v['us_a_step']:9.1f} us  {v['launches_a_step']:6.1f} x  {k}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
