"""Training steps of a `genlab bench` workload on the level executor, for a profiler to look at
its kernels, or timed as a replayed step graph (--time):

    ncu -k regex:"forward_mid|backward_mid" --launch-skip 20 --launch-count 2 --section SpeedOfLight \\
        python benchmarks/kernels/level_step.py W3
    python benchmarks/kernels/level_step.py W3 --parts 1 --check --time

--parts: the most parts wide.cu's split-K may cut a tile's edges into (SPLIT_PARTS; 1: no split);
--split-tiles: k a part aims at, in tiles (SPLIT_TILES; 2 cuts W3's forward tiles in two too);
--define NAME=VALUE (repeatable): wide.cu built with it (a harness variant). One file's variant at
a time: the task lists' (--parts, --split-tiles) or wide.cu's (--define).
"""

import argparse

import numpy as np

from genlab.bench import WORKLOADS, time_graph
from genlab.engines.cuda import CudaEngine
from genlab.optim import Adam

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("workload")
    p.add_argument("--parts", type=int)
    p.add_argument("--split-tiles", type=int)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--time", action="store_true")
    p.add_argument("--check", action="store_true",
                   help="first, the build against the float64 serial engine on random DAGs of 64 x 64 tiles "
                        "with wide fan-in and fan-out (exit 1 if it differs)")
    p.add_argument("--define", action="append", default=[])
    a = p.parse_args()
    defines = dict(d.split("=") for d in a.define)
    from genlab.engines.cuda import constants

    lists = {name: v for name, v in (("SPLIT_PARTS", a.parts), ("SPLIT_TILES", a.split_tiles)) if v}
    if lists and defines:
        raise SystemExit("--parts or --split-tiles, and --define: one file's variant at a time")
    if lists or defines:
        from harness import use_variant

        if lists:  # the task lists (topology.cu) cut otherwise
            use_variant("topology.cu", "topo_tasks", {}, [(f"#define {name} {getattr(constants, name)}",
                                                           f"#define {name} {v}") for name, v in lists.items()])
            defines = lists
        for kernel in ("forward_mid", "backward_mid", "forward_wide", "backward_wide") if not lists else ():
            use_variant("wide.cu", kernel, defines, [])
    if a.check:
        import harness

        for seed in range(3):  # widths 48-130 (the MT tier and the first), fan-in 4-12, a partial batch tile
            net, x, y = harness.case(seed, levels=3, per_level=8, width=(48, 130), fan_in=(4, 12), batch=200)
            harness.check_passes(net, x, y, f"case {seed}")
        if harness.done():
            raise SystemExit(1)
    _, build, batch = WORKLOADS[a.workload]
    net = build()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(batch, net.n_inputs)).astype(np.float32), rng.integers(0, net.n_outputs, batch)
    engine = CudaEngine(net, Adam(1e-4), executor="level")
    for _ in range(a.steps):
        engine.step(x, y)
    if a.time:
        rows = engine.put_batch(x, y)
        us = [time_graph(engine, lambda: engine.executor.enqueue_step(rows), 200, warmup=20) for _ in range(3)]
        print(f"{a.workload} level, {defines or 'as built'}: {np.median(us):.1f} us a step (median of 3 x 200 replays)")
