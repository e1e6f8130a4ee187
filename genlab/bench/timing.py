"""Timing: CUDA events around many runs after a warm-up (median), host clocks for the serial
engine, CUDA graphs of parts of a step, the device's ceilings, and import times."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time


def time_cuda(fn, repeats: int, warmup: int = 10) -> float:
    """Median milliseconds of fn() over `repeats` runs, each bracketed by CUDA events."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def time_host(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def time_graph(engine, enqueue, repeats: int, warmup: int = 5) -> float:
    """Mean microseconds of one replay of what enqueue() puts on the engine's stream, captured in
    a CUDA graph (CUDA events around `repeats` replays after `warmup`)."""
    import pycuda.driver as drv

    from ..engines.cuda.graph import Graph

    graph = Graph(engine.stream, enqueue)
    for _ in range(warmup):
        graph.launch()
    start, end = drv.Event(), drv.Event()
    start.record(engine.stream)
    for _ in range(repeats):
        graph.launch()
    end.record(engine.stream)
    end.synchronize()
    return start.time_till(end) / repeats * 1e3


def ceilings() -> dict:
    """The device's measured ceilings: copy bandwidth (bytes read + written) and FP32 matmul rate."""
    import torch

    a = torch.empty(2**29, dtype=torch.float32, device="cuda").uniform_()  # 2 GiB
    b = torch.empty_like(a)
    ms = time_cuda(lambda: b.copy_(a), 20, warmup=3)
    bandwidth = 2 * a.numel() * 4 / (ms / 1e3)
    a = b = None  # 4 GiB back before the matmul
    torch.backends.cuda.matmul.allow_tf32 = False
    m = torch.randn(8192, 8192, device="cuda")
    ms = time_cuda(lambda: m @ m, 10, warmup=3)
    return {"copy_bytes_per_s": bandwidth, "fp32_matmul_flops_per_s": 2 * 8192**3 / (ms / 1e3)}


def import_times() -> dict:
    """Seconds to import genlab and load its kernels, with an empty kernel cache and a warm one
    (median of 3), each in a fresh process; and the floor under the warm time: the same process
    importing only numpy and PyCUDA and creating the CUDA context, which genlab cannot avoid."""
    code = ("import time; t = time.perf_counter(); import genlab; from genlab.engines.cuda import kernels; "
            "kernels(); print(time.perf_counter() - t)")
    floor = ("import time; t = time.perf_counter(); import numpy; import pycuda.driver as drv; drv.init(); "
             "c = drv.Device(0).retain_primary_context(); c.push(); print(time.perf_counter() - t); c.pop()")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "GENLAB_CACHE_DIR": cache}
        run = lambda src: float(subprocess.run([sys.executable, "-c", src], env=env, capture_output=True, text=True,
                                               check=True).stdout.split()[-1])
        cold = run(code)
        warm = statistics.median(run(code) for _ in range(3))
        base = statistics.median(run(floor) for _ in range(3))
    return {"cold_s": cold, "warm_s": warm, "numpy_pycuda_context_s": base}
