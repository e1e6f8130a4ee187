"""What the persistent executors share: a grid of as many blocks as the device holds at once,
each taking work items from a global counter, with dependency counters zeroed before each step
(cuda/genlab.cuh: Counters)."""

from __future__ import annotations

import numpy as np

from ....errors import BackendError
from .. import runtime
from ..constants import THREADS, TILE
from . import passes
from .base import Executor


class Persistent(Executor):
    file: str  # the .cu file of its kernel (compiled at first use)
    kernel: str
    tiles_per_slot: bool = True  # counters per (slot, batch tile), else per slot

    def __init__(self, engine):
        super().__init__(engine)
        runtime.load(self.file)
        self.grid = self.resident_blocks()
        self.arguments = runtime.kernels().signatures[self.kernel][0]  # its struct of arguments

    def record(self, **values) -> bytes:
        """The kernel's struct of arguments: each pointer field from the engine's buffer of the
        same name, then `values` (the rest, by field name)."""
        a, b = np.zeros((), self.arguments), self.engine.buffers
        pointers = {name for name in self.arguments.names if self.arguments.fields[name][0] == np.uint64}
        missing = set(self.arguments.names) - (pointers & b.keys()) - values.keys()
        if missing:
            raise BackendError(f"{self.kernel}'s arguments {', '.join(sorted(missing))} have no value")
        for name in pointers & b.keys():
            a[name] = int(b[name])
        for name, value in values.items():
            a[name] = value
        return a.tobytes()

    def resident_blocks(self) -> int:
        """How many blocks of the kernel the device holds at once: its grid (limited by registers,
        shared memory and threads per multiprocessor). A larger grid would still be correct, the
        extra blocks starting as others leave; a smaller one would leave SMs idle."""
        drv, device = self.engine.drv, self.engine.device
        f = runtime.kernels().functions[self.kernel]
        fa, da = drv.function_attribute, drv.device_attribute
        get = device.get_attribute
        regs = max(1, f.get_attribute(fa.NUM_REGS)) * THREADS
        smem = f.get_attribute(fa.SHARED_SIZE_BYTES) + 1024  # the driver reserves 1 KiB per block
        per_sm = min(get(da.MAX_REGISTERS_PER_MULTIPROCESSOR) // regs,
                     get(da.MAX_SHARED_MEMORY_PER_MULTIPROCESSOR) // smem,
                     get(da.MAX_THREADS_PER_MULTIPROCESSOR) // THREADS)
        if per_sm < 1:
            raise BackendError(f"{self.kernel} does not fit on {device.name()}")
        return per_sm * get(da.MULTIPROCESSOR_COUNT)

    def counter_words(self, n_slots: int, batch: int) -> int:
        """The next item, gradients done, then fdone, fready, bdone and bready per (slot, batch
        tile) and gready per slot."""
        tiles = (batch + TILE - 1) // TILE if self.tiles_per_slot else 1
        return 2 + (4 * tiles + 1) * n_slots

    def setup(self, batch: int) -> dict:
        """Zero what the step accumulates (sums, counters, a split output block); return the
        optimizer's fields of the kernel's arguments."""
        e = self.engine
        L = e.layout
        passes.zero_step_sums(e)
        e.mem.fill(e.buffers["counters"], 0, self.counter_words(len(L.groups), batch))
        if L.split_output:
            e.zero_rows(L.output_slot, batch)
        code, s0, s1, s2, n_params, lr, h1, h2, eps = passes.optimizer_args(e)
        return dict(optimizer=code, state0=int(s0), state1=int(s1), state2=int(s2), n_params=n_params, lr=lr,
                    hyper1=h1, hyper2=h2, eps=eps)


    def launch(self, record: bytes) -> None:
        """The step's one launch of the kernel over the resident grid."""
        self.engine.launch(self.kernel, (self.grid, 1), record)
