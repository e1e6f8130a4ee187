"""A way of spreading a trainer's steps over the processes of a World (Mode: it makes the engine
and takes each step), and the two that need no more than an engine: one process (Alone) and
data parallel. modes.py names every mode; partitioned.py holds the third."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..backends import make_engine
from ..engines.base import Engine
from ..errors import DataError
from ..precision import DEFAULT as FP32
from .world import World


class Mode(ABC):
    """One way of training over the processes of `world`."""

    def __init__(self, world: World):
        self.world = world

    @abstractmethod
    def engine(self, backend: str, net, optimizer, dtype, executor: str | None, precision=FP32) -> Engine:
        """This process's engine, loaded with `net`, computing in `precision` (genlab.precision)."""

    @abstractmethod
    def step(self, engine: Engine, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """One training step on the whole batch (x, y), which every process is given: the step's
        loss and correct count, the same on every process."""


class Alone(Mode):
    """One process: the engine steps on the whole batch."""

    def engine(self, backend, net, optimizer, dtype, executor, precision=FP32):
        return make_engine(backend, net, optimizer, dtype=dtype, executor=executor, precision=precision)

    def step(self, engine, x, y):
        return engine.step(x, y)


class DataParallel(Alone):
    """Every process holds the whole network and steps on its slice of each batch; gradients,
    statistics, loss and count are summed over the processes before the update (Engine.step with
    replicas), so the replicas stay bit-identical and grow identically."""

    def step(self, engine, x, y):
        n, world = len(y), self.world
        if n < world.size:
            raise DataError(f"a batch of {n} rows cannot be shared by {world.size} processes; use batches of "
                            f"{world.size} rows or more")
        part = world.slice(n)
        return engine.step(x[part], y[part], world.share(part.stop - part.start, n))
