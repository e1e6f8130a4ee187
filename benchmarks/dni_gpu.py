"""Synthetic gradients on one GPU: a training step's device time with the backward cut into parts
that run side by side (genlab.DNI on the CUDA engine), against exact backprop on the same
executor (level_push) and on the others, in one run.

For each MLP (depth x width, batch), the step graph of each variant is timed with CUDA events
(genlab.bench.timing.time_graph: the mean of many replays after a warm-up), and engine.step()
from the host (the median, with its upload and read-back):
    exact_<executor>  exact backprop on that executor
    dni_<k>           cut into k parts of equal depth (the cuts after every depth/k layers)
    cdni_<k>          the same, the modules conditioned on the label
    pdni_<k>, pcdni_<k>  the same pipelined over successive batches (every part's forward and
                      backward side by side: genlab.engines.cuda.pipelined)

    python benchmarks/dni_gpu.py --out benchmarks/results/NVIDIA_H200/async/dni_gpu.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import genlab
from genlab.bench.timing import time_graph, time_host
from genlab.engines.cuda.decoupled import DecoupledCudaEngine

EXECUTORS = ("level_push", "level", "dataflow_rows")
SHAPES = ((8, 64, 256), (16, 64, 256), (16, 128, 256), (8, 32, 32))  # depth, width, batch


def variants(net: genlab.Network, depth: int):
    hidden = net.hidden_groups
    for executor in EXECUTORS:
        yield f"exact_{executor}", dict(executor=executor)
    for parts in (2, 4):
        cuts = hidden[depth // parts - 1:-1:depth // parts]
        for conditioned in (False, True):
            for pipelined in (False, True):
                name = f"{'p' if pipelined else ''}{'c' if conditioned else ''}dni_{parts}"
                yield name, dict(decouple=genlab.DNI(cuts, conditioned=conditioned, pipelined=pipelined))


def measure(depth: int, width: int, batch: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    net = genlab.Network.mlp([64, *[width] * depth, 10], seed=0)
    x, y = rng.normal(size=(batch, 64)).astype(np.float32), rng.integers(0, 10, batch)
    out = {}
    for name, options in variants(net, depth):
        t = genlab.Trainer(net.copy(), backend="cuda", lr=1e-3, seed=0, **options)
        e = t.engine
        e.step(x, y)  # buffers sized, kernels loaded
        rows = e.put_batch(x, y)  # uploaded before the capture (a pageable copy cannot be captured)
        device_us = time_graph(e, lambda: e.executor.enqueue_step(rows), repeats)
        host_ms = time_host(lambda: e.step(x, y), repeats, warmup=5)
        parts = len(e.modules.parts) if isinstance(e, DecoupledCudaEngine) else 1
        out[name] = {"device_us": device_us, "step_ms": host_ms, "parts": parts}
        print(f"depth {depth:3d} width {width:4d} batch {batch:4d} {name:20s} {device_us:9.1f} us  "
              f"{host_ms * 1e3:9.1f} us a step ({parts} part(s))", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    import pycuda.driver as drv

    from genlab.engines.cuda import runtime

    runtime.kernels()
    result = {"device": drv.Device(0).name(), "repeats": a.repeats, "shapes": {}}
    for depth, width, batch in SHAPES:
        result["shapes"][f"{depth}x{width}_b{batch}"] = measure(depth, width, batch, a.repeats)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
