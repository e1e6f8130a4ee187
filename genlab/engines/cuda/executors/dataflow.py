"""The dataflow executors: one persistent launch runs a whole training step (cuda/dataflow.cu).

Blocks take tasks from a global counter in an order where every task's inputs come from tasks
taken before it: forward tasks (TILE neurons x a batch tile) in level order, the loss, backward
tasks deepest level first, weight and bias gradient tasks, then update chunks once every gradient
is in. A task waits for its inputs on per-(group, batch tile) counters; nothing waits on a grid
barrier.
"""

from __future__ import annotations

from ..constants import SPLIT, TILE
from . import passes
from .base import Activations
from .persistent import Persistent


class Dataflow(Persistent):
    name = "dataflow"
    chunk = TILE
    file, kernel = "dataflow.cu", "dataflow_step"

    def enqueue_step(self, batch: int) -> None:
        e = self.engine
        L = e.layout
        optimizer = self.setup(batch)
        self.launch(self.record(
            fwd_tasks=int(e.buffers["forward_tasks"]), bwd_tasks=e.ptr("backward_tasks", 8 * L.backward_start),
            weight_tasks=int(e.buffers["weight_tasks"]), bias_tasks=int(e.buffers["bias_tasks"]),
            n_fwd=L.n_forward_tasks, n_bwd=L.n_backward_tasks, n_weight=L.n_weight_tasks, n_bias=L.n_bias_tasks,
            batch=batch, ld=e.ld, n_slots=len(L.groups), input_slot=L.input_slot, output_slot=L.output_slot,
            split=SPLIT, **optimizer))
        passes.ranges(e, batch)


class DataflowBatch(Dataflow):
    """The dataflow executor over batch-major activations."""

    name = "dataflow_batch"
    activations = Activations.BATCH
