"""The CUDA engine, in rooms that each hold one idea:

    runtime.py    the sources, the compile cache, kernel signatures parsed from cuda/*.cu, launches
    graph.py      CUDA graphs (capture and replay of a whole step)
    constants.py  the numbers shared with the kernels (cuda/constants.cuh is generated from it)
    memory.py     device allocations, with clear errors when the GPU is full; arenas, packed uploads
    staging.py    rows between host and device; the page-locked buffers a step's batch goes up through
    layout.py     where each group, parameter and edge lives on the device
    records.py    the device state as typed records, each made by one module (engine.dev)
    topology.py   CSR, levels and task lists, built on the GPU
    executors/    one module per schedule of a training step, and their registry
    choice.py     executor="auto": the executor of each shape, by a timed trial cached per GPU
    growth.py     the growth rules on the GPU and the replay of growth and pruning
    deferred.py   work an executor leaves pending, applied before any entry point that reads or
                  replaces parameters (@settled)
    kind_cuda.py  what the engine asks of a kind with kernels of its own (found in the kind's folder)
    engine.py     the engine that composes them (genlab.engines.Engine)
    recurrent.py  a recurrent network through its unrolled DAG; recurrent_wavefront.py: executor
                  "wavefront", the network itself through time in one launch (registered in BY_EXECUTOR)

Importing this package needs no GPU; CudaEngine and runtime.kernels() do.
"""

from .engine import CudaEngine
from .executors import AUTO, DEFAULT, EXECUTORS, executor_class
from .runtime import kernels, source
from . import recurrent_wavefront  # noqa: F401,E402 (registers executor "wavefront" with RecurrentCudaEngine)

__all__ = ["CudaEngine", "AUTO", "DEFAULT", "EXECUTORS", "executor_class", "kernels", "source"]
