"""What the persistent executors share: a grid of as many blocks as the device holds at once,
each taking work items from a global counter, with dependency counters zeroed before each step
(cuda/genlab.cuh: Counters)."""

from __future__ import annotations

from ....errors import BackendError
from .. import occupancy, runtime
from ..constants import THREADS, TILE
from . import passes
from .base import Executor


class Persistent(Executor):
    file: str  # the .cu file of its kernel (compiled at first use)
    kernel: str
    tiles_per_slot: bool = True  # counters per (slot, batch tile), else per slot

    def __init__(self, engine):
        super().__init__(engine)
        runtime.load(self.file, precision=engine.precision)
        self.grid = self.resident_blocks()

    def resident_blocks(self) -> int:
        """How many blocks of the kernel the device holds at once: its grid (limited by registers,
        shared memory and threads per multiprocessor). A larger grid would still be correct, the
        extra blocks starting as others leave; a smaller one would leave SMs idle."""
        drv, device = self.engine.drv, self.engine.device
        blocks = occupancy.resident(self.engine.launch.functions[self.kernel], device, drv, THREADS)
        if blocks < 1:
            raise BackendError(f"{self.kernel} does not fit on {device.name()}")
        return blocks

    def counter_words(self, n_slots: int, batch: int) -> int:
        """The next item, gradients done, then fdone, fready, bdone and bready per (slot, batch
        tile) and gready per slot."""
        tiles = (batch + TILE - 1) // TILE if self.tiles_per_slot else 1
        return 2 + (4 * tiles + 1) * n_slots

    def setup(self, batch: int) -> list:
        """Zero what the step accumulates (sums, counters); return the optimizer's arguments."""
        e = self.engine
        L = e.layout
        passes.zero_step_sums(e)
        e.mem.fill(e.dev.rows.counters, 0, self.counter_words(len(L.groups), batch))
        return passes.optimizer_args(e)

    def launch(self, record: bytes) -> None:
        """The step's one launch of the kernel over the resident grid, its arguments one struct
        (the bytes of its runtime.record)."""
        self.engine.launch(self.kernel, (self.grid, 1), record)
