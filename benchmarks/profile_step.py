"""Time the parts of one genlab training step on a workload (CUDA events, graph replays).

    python benchmarks/profile_step.py W1

The level executor.
"""

import sys

import numpy as np

from genlab.bench import WORKLOADS, time_graph
from genlab.engines.cuda import CudaEngine
from genlab.operations import Noise
from genlab.optim import Adam


def main(name="W1", repeats=200):
    from genlab.engines.cuda.executors import passes

    _, build, batch = WORKLOADS[name]
    net = build()
    rng = np.random.default_rng(0)
    engine = CudaEngine(net, Adam())
    x, y = rng.normal(size=(batch, net.n_inputs)).astype(np.float32), rng.integers(0, net.n_outputs, batch)
    engine.step(x, y)
    L, d = engine.layout, engine.dev
    given = {"batch": np.int32(batch), "ld": np.int32(engine.ld)}
    parts = {
        "forward (all levels)": lambda: passes.forward(engine, batch),
        "loss + backward + grads": lambda: passes.backward(engine, batch),
        "update": lambda: passes.update(engine),
        "weight_grad alone": lambda: engine.launch.named(
            "weight_grad", (L.n_weight_tasks, 1), d.by_name,
            {"tasks": d.tasks.first.weight_tasks, "gradsq": d.sums.gradsq, **given}) if L.n_weight_tasks else None,
        "whole step": lambda: engine.executor.enqueue_step(batch),
    }
    forward_levels = list(passes.level_launches(engine, batch, passes.FORWARD))
    for level, launches in forward_levels[-3:]:
        for kernel, grid, tasks, extra in launches:  # as passes.forward launches them
            arguments = {"tasks": tasks, "output_slot": np.int32(L.output_slot), **given, **extra}
            parts[f"level {level}: {kernel} of {grid[0]} tasks"] = \
                lambda kernel=kernel, grid=grid, arguments=arguments: engine.launch.named(kernel, grid, d.by_name,
                                                                                         arguments)
    print(f"{name}: {len(L.groups)} groups, {L.n_edges} edges, {L.n_params} parameters, "
          f"{len(L.forward_levels)} levels, {L.n_weight_tasks} weight tasks")
    for label, enqueue in parts.items():
        print(f"  {label:<32} {time_graph(engine, enqueue, repeats):8.1f} us")


def time_growth(name="W1", events=4, repeats=5):
    """Wall time of one growth step of `events` width-wise duplications: the host rules on the
    network description plus the engine's apply_growth (index, GPU topology build, parameter
    initialisation)."""
    import time

    from genlab.growth import duplicate_width

    _, build, batch = WORKLOADS[name]
    net = build()
    engine = CudaEngine(net, Adam())
    rng = np.random.default_rng(0)
    times = {"rules": [], "apply_growth": []}
    for step in range(repeats):
        t0 = time.perf_counter()
        work = net.copy()
        log = [Noise(0, step)]
        for g in rng.choice(work.hidden_groups[:100], size=events, replace=False):
            duplicate_width(work, int(g), step, 0, log=log)
        t1 = time.perf_counter()
        engine.apply_growth(work, log)
        t2 = time.perf_counter()
        net = work
        times["rules"].append((t1 - t0) * 1e3)
        times["apply_growth"].append((t2 - t1) * 1e3)
    print(f"{name} growth step of {events} width duplications: " +
          ", ".join(f"{k} {np.median(v):.1f} ms" for k, v in times.items()))


if __name__ == "__main__":
    main(*sys.argv[1:])
    time_growth(*sys.argv[1:])
