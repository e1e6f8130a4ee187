"""A small network's step: where a classroom network's time goes (host work and fixed costs).

The network: 50 groups of 16 neurons in 5 levels of 10 (fan-in 4), 64 inputs, 10 classes, batch
32. For every executor and auto: a Trainer.step (checks, the engine's step, the history), the
engine's step alone, and the device's part (the step's graph replayed back to back, CUDA events),
each the median of many after a warm-up, in microseconds.
"""

from __future__ import annotations

from ..network import Network
from .timing import time_host
from .workloads import batch_of

DESCRIPTION = "50 groups of 16 in 5 levels of 10, fan-in 4, batch 32"
TARGET_US = 50.0


def build() -> Network:
    return Network.random_dag(5, 10, 16, 4, seed=0)


def _median_us(fn, repeats: int) -> float:
    return 1e3 * time_host(fn, repeats, warmup=20)


def run_small(repeats: int = 500) -> dict:
    """Per executor (and auto): trainer_step_us, engine_step_us, device_us."""
    import pycuda.driver as drv

    from ..engines.cuda.executors import EXECUTORS
    from ..trainer import Trainer

    net = build()
    x, y = batch_of(net, 32)
    out = {"description": DESCRIPTION, "groups": len(net.groups), "target_us": TARGET_US, "executors": {}}
    for executor in [*EXECUTORS, "auto"]:
        trainer = Trainer(net.copy(), backend="cuda", executor=executor, lr=1e-4)
        engine = trainer.engine
        trainer_us = _median_us(lambda: trainer.step(x, y), repeats)
        engine_us = _median_us(lambda: engine.step(x, y), repeats)
        batch = engine.put_batch(x, y)
        graph = engine._graph(batch)
        start, end = drv.Event(), drv.Event()
        for _ in range(10):
            graph.launch()
        start.record(engine.stream)
        for _ in range(repeats):
            graph.launch()
        end.record(engine.stream)
        end.synchronize()
        engine.flush()
        out["executors"][f"genlab_{executor}"] = {
            "trainer_step_us": trainer_us, "engine_step_us": engine_us,
            "device_us": start.time_till(end) * 1e3 / repeats, "executor": engine.executor.name}
    runs = out["executors"]
    best = min(runs, key=lambda k: runs[k]["trainer_step_us"])
    out["best"], out["trainer_step_us"] = best, runs[best]["trainer_step_us"]
    return out
